#!/usr/bin/env python3
"""The reference signing recipe iotsec-msg must match byte for byte (standard library only).

Usage: reference.py COMMAND [ARGS]; reads one message per line on stdin, each line the hex of
the message's UTF-8 bytes (so any text survives the trip), and writes one line per message:
the hex of the result, or ERR / NONE.

  canon                json.dumps(json.loads(m), sort_keys=True)
  dumps                json.dumps(json.loads(m))
  sign KEYHEX          the reference sign() of json.loads(m)
  verify KEYHEX        json.dumps(verify(m)) or NONE
  sign-v2 MASTERHEX    lines are "KID TS SEQ PAYLOADHEX": payload.update(v, kid, ts, seq),
                       signed with HKDF-SHA256(master, salt, info=kid)
  derive MASTERHEX     lines are kid hex: the derived device key (hex)
  bench KEYHEX FILE    verify every line of FILE (raw JSON lines) N times; print
                       "<accepted> <seconds>" (pure verification time, file already in memory)
"""

import hashlib
import hmac
import json
import sys
import time

DEVICE_KEY_SALT = b"iotsec-msg/v2/device-key"


def sign(payload_dict, key):
    body = json.dumps(payload_dict, sort_keys=True).encode()
    sig = hmac.new(key, body, hashlib.sha256).hexdigest()
    payload_dict["sig"] = sig
    return json.dumps(payload_dict)


def verify(msg, key):
    try:
        d = json.loads(msg)
        s = d.pop("sig")
        expected = hmac.new(key, json.dumps(d, sort_keys=True).encode(), hashlib.sha256).hexdigest()
        if hmac.compare_digest(s, expected):
            return d
        return None
    except Exception:
        return None


def hkdf_sha256(ikm, salt, info, length=32):
    # RFC 5869 section 2.2 and 2.3
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, t, i = b"", b"", 1
    while len(okm) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        okm += t
        i += 1
    return okm[:length]


def text(line):
    return bytes.fromhex(line).decode("utf-8")


def out(s):
    sys.stdout.write(s.encode("utf-8").hex() + "\n")


def main():
    cmd = sys.argv[1]
    if cmd == "bench":
        key = bytes.fromhex(sys.argv[2])
        with open(sys.argv[3], "rb") as f:
            lines = f.read().splitlines()
        start = time.perf_counter()
        ok = 0
        for m in lines:
            if verify(m, key) is not None:
                ok += 1
        print(ok, time.perf_counter() - start)
        return
    for line in sys.stdin:
        line = line.strip()
        try:
            if cmd == "canon":
                out(json.dumps(json.loads(text(line)), sort_keys=True))
            elif cmd == "dumps":
                out(json.dumps(json.loads(text(line))))
            elif cmd == "sign":
                out(sign(json.loads(text(line)), bytes.fromhex(sys.argv[2])))
            elif cmd == "verify":
                d = verify(text(line), bytes.fromhex(sys.argv[2]))
                if d is None:
                    sys.stdout.write("NONE\n")
                else:
                    out(json.dumps(d))
            elif cmd == "sign-v2":
                kid, ts, seq, payload = line.split(" ")
                d = json.loads(text(payload))
                d.update(v=2, kid=kid, ts=int(ts), seq=int(seq))
                key = hkdf_sha256(bytes.fromhex(sys.argv[2]), DEVICE_KEY_SALT, kid.encode())
                out(sign(d, key))
            elif cmd == "derive":
                key = hkdf_sha256(bytes.fromhex(sys.argv[2]), DEVICE_KEY_SALT, bytes.fromhex(line))
                sys.stdout.write(key.hex() + "\n")
            else:
                sys.exit("unknown command " + cmd)
        except Exception:
            sys.stdout.write("ERR\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
