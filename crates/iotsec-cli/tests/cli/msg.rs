//! `iotsec msg`: key files, sign/verify round trips, interoperability with the Python reference
//! recipe (run by python3 from the recipe text itself), `--jsonl`, v2 and bad input.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use iotsec_testkit::{Output, TestDir};

use crate::iotsec;

/// The reference key (32 ASCII bytes).
const REF_KEY: &[u8] = b"your-32-byte-secret-key-here!!!!";

/// The reference recipe, verbatim: `sign KEYFILE` (a JSON object on stdin -> the signed message)
/// and `verify KEYFILE` (a signed message on stdin -> `json.dumps(d)` or `NONE`).
const RECIPE: &str = r#"
import hashlib, hmac, json, sys

def sign(payload_dict, key):
    body = json.dumps(payload_dict, sort_keys=True).encode()
    sig = hmac.new(key, body, hashlib.sha256).hexdigest()
    payload_dict['sig'] = sig
    return json.dumps(payload_dict)

def verify(msg, key):
    try:
        d = json.loads(msg)
        s = d.pop('sig')
        expected = hmac.new(key, json.dumps(d, sort_keys=True).encode(), hashlib.sha256).hexdigest()
        return d if hmac.compare_digest(s, expected) else None
    except Exception:
        return None

key = open(sys.argv[2], 'rb').read()
text = sys.stdin.read()
if sys.argv[1] == 'sign':
    print(sign(json.loads(text), key))
else:
    d = verify(text, key)
    print('NONE' if d is None else json.dumps(d))
"#;

fn ok(out: &Output) {
    assert_eq!(
        out.code, 0,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
}

/// A bad-input failure: exit 2, exactly one line on stderr naming the problem.
fn refused(out: &Output, needle: &str) {
    assert_eq!(
        out.code, 2,
        "expected exit 2; stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "stderr: {}", out.stderr);
    assert!(
        out.stderr.contains(needle),
        "stderr {:?} lacks {needle:?}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

/// Runs `cmd` with `input` on stdin (written from a thread, so large inputs cannot deadlock
/// against the output pipes).
fn with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        // The child may exit before reading everything (an error); that is its answer.
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `iotsec ARGS` in `dir` with `input` on stdin.
fn iotsec_in(dir: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_iotsec"));
    cmd.current_dir(dir).args(args);
    with_stdin(&mut cmd, input)
}

/// The reference recipe in python3 (`sign` or `verify`) with the key file `key`.
fn python(dir: &Path, op: &str, key: &str, input: &[u8]) -> String {
    let mut cmd = Command::new("python3");
    cmd.current_dir(dir).args(["-c", RECIPE, op, key]);
    let out = with_stdin(&mut cmd, input);
    assert_eq!(
        out.code, 0,
        "python3 failed (install it, e.g. `apt-get install python3`): {}",
        out.stderr
    );
    out.stdout.trim_end_matches('\n').to_string()
}

fn ref_key(dir: &TestDir) {
    std::fs::write(dir.join("ref.key"), REF_KEY).unwrap();
}

/// Realistic telemetry (the flat fast path) and values only the general path handles.
const PAYLOADS: &[&str] = &[
    r#"{"device": "greenhouse-north-sensor-00001", "temp": 26.82, "hum": 67.36896411960379, "batt": 4.071, "rssi": -89, "status": "door-open", "ts": 1700000001000, "seq": 1}"#,
    r#"{"b": [1, 2.50, {"z": null, "a": true}], "a": "\u00e9\ud83d\ude00", "c": 1e16, "d": -0, "e": 1E-5}"#,
    r#"{"only": 0.1}"#,
    r#"{}"#,
];

#[test]
fn keygen_writes_32_bytes_0600_and_refuses_to_overwrite() {
    let dir = TestDir::new();
    ok(&iotsec(dir.path(), &["msg", "keygen", "--out", "k.key"]));
    let key = std::fs::read(dir.join("k.key")).unwrap();
    assert_eq!(key.len(), 32);
    let mode = std::fs::metadata(dir.join("k.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");

    refused(
        &iotsec(dir.path(), &["msg", "keygen", "--out", "k.key"]),
        "k.key",
    );
    assert_eq!(std::fs::read(dir.join("k.key")).unwrap(), key, "file kept");

    ok(&iotsec(
        dir.path(),
        &["msg", "keygen", "--out", "k.key", "--force"],
    ));
    let new = std::fs::read(dir.join("k.key")).unwrap();
    assert_eq!(new.len(), 32);
    assert_ne!(new, key, "a new random key");
    // nothing else left behind (temporary files of the atomic write)
    assert_eq!(crate::tree(dir.path()), vec!["k.key".to_string()]);
}

#[test]
fn sign_verify_round_trip_with_the_reference_key() {
    let dir = TestDir::new();
    ref_key(&dir);
    for payload in PAYLOADS {
        let signed = iotsec_in(
            dir.path(),
            &["msg", "sign", "--key-file", "ref.key"],
            payload.as_bytes(),
        );
        ok(&signed);
        assert!(signed.stdout.contains("\"sig\": \""), "{}", signed.stdout);
        let verified = iotsec_in(
            dir.path(),
            &["msg", "verify", "--key-file", "ref.key"],
            signed.stdout.as_bytes(),
        );
        ok(&verified);
        // the payload as json.dumps(d) prints it: what Python's dumps of the input is
        let python_dumps = python_json_dumps(dir.path(), payload);
        assert_eq!(verified.stdout.trim_end(), python_dumps, "{payload}");
    }
}

/// `json.dumps(json.loads(text))` by python3.
fn python_json_dumps(dir: &Path, text: &str) -> String {
    let mut cmd = Command::new("python3");
    cmd.current_dir(dir).args([
        "-c",
        "import json, sys; print(json.dumps(json.loads(sys.stdin.read())))",
    ]);
    let out = with_stdin(&mut cmd, text.as_bytes());
    assert_eq!(out.code, 0, "python3: {}", out.stderr);
    out.stdout.trim_end().to_string()
}

#[test]
fn python_signed_verifies_in_iotsec_and_iotsec_signed_in_python() {
    let dir = TestDir::new();
    ref_key(&dir);
    for payload in PAYLOADS {
        // Python signs, iotsec verifies and prints what Python's verify returns.
        let py_signed = python(dir.path(), "sign", "ref.key", payload.as_bytes());
        let verified = iotsec_in(
            dir.path(),
            &["msg", "verify", "--key-file", "ref.key"],
            py_signed.as_bytes(),
        );
        ok(&verified);
        let py_payload = python(dir.path(), "verify", "ref.key", py_signed.as_bytes());
        assert_ne!(py_payload, "NONE");
        assert_eq!(verified.stdout.trim_end(), py_payload, "{payload}");

        // iotsec signs exactly what Python signs, and Python verifies it.
        let signed = iotsec_in(
            dir.path(),
            &["msg", "sign", "--key-file", "ref.key"],
            payload.as_bytes(),
        );
        ok(&signed);
        assert_eq!(signed.stdout.trim_end(), py_signed, "{payload}");
        let back = python(dir.path(), "verify", "ref.key", signed.stdout.as_bytes());
        assert_eq!(back, py_payload);
    }
}

#[test]
fn a_tampered_message_exits_1_with_the_reason() {
    let dir = TestDir::new();
    ref_key(&dir);
    let signed = python(dir.path(), "sign", "ref.key", PAYLOADS[0].as_bytes());
    let tampered = signed.replace("\"temp\": 26.82", "\"temp\": 26.83");
    assert_ne!(tampered, signed);
    let out = iotsec_in(
        dir.path(),
        &["msg", "verify", "--key-file", "ref.key"],
        tampered.as_bytes(),
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.stdout, "", "nothing printed for a rejected message");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("bad_signature"), "{}", out.stderr);
    // Python agrees.
    assert_eq!(
        python(dir.path(), "verify", "ref.key", tampered.as_bytes()),
        "NONE"
    );

    let out = iotsec_in(
        dir.path(),
        &["msg", "verify", "--key-file", "ref.key"],
        br#"{"temp": 1}"#,
    );
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("missing_sig"), "{}", out.stderr);
}

#[test]
fn jsonl_prints_one_result_per_line_and_a_summary_by_reason() {
    let dir = TestDir::new();
    ref_key(&dir);
    let good: Vec<String> = (0..3)
        .map(|i| {
            let p = format!(r#"{{"device": "d{i}", "temp": 2{i}.5, "seq": {i}}}"#);
            python(dir.path(), "sign", "ref.key", p.as_bytes())
        })
        .collect();
    let tampered = good[1].replace("21.5", "21.6");
    let input = [
        good[0].as_str(),
        "",
        tampered.as_str(),
        "{not json",
        good[1].as_str(),
        r#"{"temp": 1}"#,
        good[2].as_str(),
    ]
    .join("\n"); // no newline after the last line: it still counts
    let out = iotsec_in(
        dir.path(),
        &["msg", "verify", "--jsonl", "--key-file", "ref.key"],
        input.as_bytes(),
    );
    assert_eq!(out.code, 1, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{}", out.stdout);
    assert_eq!(lines[0], r#"{"device": "d0", "temp": 20.5, "seq": 0}"#);
    assert_eq!(lines[1], "null");
    assert_eq!(lines[2], "null");
    assert_eq!(lines[3], r#"{"device": "d1", "temp": 21.5, "seq": 1}"#);
    assert_eq!(lines[4], "null");
    assert_eq!(lines[5], r#"{"device": "d2", "temp": 22.5, "seq": 2}"#);
    assert_eq!(
        out.stderr.trim_end(),
        "accepted 3, rejected 3 (bad_signature: 1, malformed: 1, missing_sig: 1)"
    );

    // Signing line by line gives what Python gives, and a clean run exits 0.
    let payloads: Vec<String> = (0..3)
        .map(|i| format!(r#"{{"device": "d{i}", "temp": 2{i}.5, "seq": {i}}}"#))
        .collect();
    let signed = iotsec_in(
        dir.path(),
        &["msg", "sign", "--jsonl", "--key-file", "ref.key"],
        (payloads.join("\n") + "\n").as_bytes(),
    );
    ok(&signed);
    assert_eq!(signed.stdout.lines().collect::<Vec<_>>(), good);
    let out = iotsec_in(
        dir.path(),
        &["msg", "verify", "--jsonl", "--key-file", "ref.key"],
        signed.stdout.as_bytes(),
    );
    ok(&out);
    assert_eq!(out.stderr.trim_end(), "accepted 3, rejected 0");
}

#[test]
fn jsonl_handles_input_larger_than_its_read_buffer() {
    let dir = TestDir::new();
    ref_key(&dir);
    // ~3 MB of messages (several 1 MiB reads, lines cut at the buffer edges) and one 1.5 MB
    // line (the buffer grows; the message is over the 64 KiB limit).
    let n = 12_000;
    let payloads: String = (0..n)
        .map(|i| {
            format!(
                "{{\"device\": \"dev-{i:05}\", \"temp\": {}.25, \"pad\": \"{}\"}}\n",
                i % 50,
                "x".repeat(i % 300)
            )
        })
        .collect();
    let signed = iotsec_in(
        dir.path(),
        &["msg", "sign", "--jsonl", "--key-file", "ref.key"],
        payloads.as_bytes(),
    );
    ok(&signed);
    assert_eq!(signed.stdout.lines().count(), n);
    let big = format!(
        "{{\"x\": \"{}\", \"sig\": \"{}\"}}",
        "y".repeat(1_500_000),
        "0".repeat(64)
    );
    let input = format!(
        "{}{big}\n{}",
        signed.stdout,
        signed.stdout.lines().next().unwrap()
    );
    let out = iotsec_in(
        dir.path(),
        &["msg", "verify", "--jsonl", "--key-file", "ref.key"],
        input.as_bytes(),
    );
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim_end(),
        format!("accepted {}, rejected 1 (too_large: 1)", n + 1)
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), n + 2);
    assert_eq!(lines[n], "null");
    let first = payloads.lines().next().unwrap();
    assert_eq!(lines[0], first);
    assert_eq!(lines[n + 1], first);
    assert_eq!(lines[n - 1], payloads.lines().last().unwrap());
}

#[test]
fn v2_signed_messages_verify_with_the_derived_key() {
    let dir = TestDir::new();
    std::fs::write(dir.join("master.key"), b"fleet master key for the msg test").unwrap();
    let derive = |device: &str| {
        let out = iotsec(
            dir.path(),
            &[
                "msg",
                "derive-key",
                "--master-file",
                "master.key",
                "--device",
                device,
            ],
        );
        ok(&out);
        out.stdout.trim_end().to_string()
    };
    let key = derive("dev-7");
    assert_eq!(key.len(), 64);
    assert!(
        key.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(derive("dev-7"), key, "derivation is deterministic");
    assert_ne!(derive("dev-8"), key, "another device, another key");
    // with --key-version, another key
    let v2 = iotsec(
        dir.path(),
        &[
            "msg",
            "derive-key",
            "--master-file",
            "master.key",
            "--device",
            "dev-7",
            "--key-version",
            "2",
        ],
    );
    ok(&v2);
    assert_ne!(v2.stdout.trim_end(), key);

    let ts = "1700000000000";
    let payloads = "{\"temp\": 21.5}\n{\"temp\": 21.75, \"hum\": 40}\n";
    let signed = iotsec_in(
        dir.path(),
        &[
            "msg",
            "sign",
            "--jsonl",
            "--v2",
            "--device",
            "dev-7",
            "--seq",
            "5",
            "--ts",
            ts,
            "--key-hex",
            &key,
        ],
        payloads.as_bytes(),
    );
    ok(&signed);
    let msgs: Vec<&str> = signed.stdout.lines().collect();
    assert_eq!(msgs.len(), 2);
    assert!(
        msgs[0].starts_with(
            r#"{"temp": 21.5, "v": 2, "kid": "dev-7:1", "ts": 1700000000000, "seq": 5, "sig": ""#
        ),
        "{}",
        msgs[0]
    );
    assert!(msgs[1].contains(r#""seq": 6"#), "{}", msgs[1]);

    // Verified in v2 mode from the master key; a replay of the first is refused.
    let input = format!("{}\n{}\n{}\n", msgs[0], msgs[1], msgs[0]);
    let verify = |device: &str, now: &str| {
        iotsec_in(
            dir.path(),
            &[
                "msg",
                "verify",
                "--jsonl",
                "--v2",
                "--master-file",
                "master.key",
                "--device",
                device,
                "--now",
                now,
            ],
            input.as_bytes(),
        )
    };
    let out = verify("dev-7", ts);
    assert_eq!(out.code, 1, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        vec![
            r#"{"temp": 21.5, "v": 2, "kid": "dev-7:1", "ts": 1700000000000, "seq": 5}"#,
            r#"{"temp": 21.75, "hum": 40, "v": 2, "kid": "dev-7:1", "ts": 1700000000000, "seq": 6}"#,
            "null",
        ]
    );
    assert_eq!(
        out.stderr.trim_end(),
        "accepted 2, rejected 1 (replayed: 1)"
    );
    // Another sender, or a clock far away: refused.
    assert!(verify("dev-8", ts).stderr.contains("wrong_sender: 3"));
    assert!(
        verify("dev-7", "1700000900000")
            .stderr
            .contains("clock_skew: 3")
    );
    // The Python reference verifies a v2 message given the device key.
    let key_bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&key[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    std::fs::write(dir.join("dev.key"), key_bytes).unwrap();
    assert_eq!(
        python(dir.path(), "verify", "dev.key", msgs[0].as_bytes()),
        lines[0]
    );
}

#[test]
fn a_bad_key_file_exits_2_with_one_line() {
    let dir = TestDir::new();
    let msg = br#"{"a": 1}"#;
    refused(
        &iotsec_in(
            dir.path(),
            &["msg", "sign", "--key-file", "missing.key"],
            msg,
        ),
        "missing.key",
    );
    std::fs::write(dir.join("empty.key"), b"").unwrap();
    refused(
        &iotsec_in(
            dir.path(),
            &["msg", "verify", "--key-file", "empty.key"],
            msg,
        ),
        "empty.key",
    );
    refused(
        &iotsec_in(dir.path(), &["msg", "sign", "--key-hex", "zz"], msg),
        "hex",
    );
    refused(
        &iotsec(
            dir.path(),
            &[
                "msg",
                "derive-key",
                "--master-file",
                "missing.key",
                "--device",
                "d",
            ],
        ),
        "missing.key",
    );
}
