#!/usr/bin/env python3
"""SCAN benchmark: `iotsec scan` against nmap 7.93 in the same run (issue 6).

1. Full-port connect sweep of 127.0.0.1 (no probes):
       iotsec scan 127.0.0.1 --ports all --no-probe --json
   against
       nmap -sT -n -p1-65535 127.0.0.1
   interleaved, RUNS runs each (order alternates), median wall time of the whole process.
   Both only connect; neither sends data.

2. Identification of five IoT listeners this script starts: Mosquitto plain + anonymous on
   1883, Mosquitto TLS on 8883, an HTTP server on 8080, and Mosquitto plain and TLS on two
   free non-standard ports:
       iotsec scan 127.0.0.1 --ports <those five> --json
   against
       nmap -sV -n -p <those five> 127.0.0.1
   Probes go only to the ports this script opened. A port counts as identified when the
   service is named (iotsec: not `unknown`/`tls`; nmap: not `unknown`, `tcpwrapped`, `ssl/unknown`
   or ending in `?`).

Usage (from the repository root; 1883, 8883 and 8080 must be free):
    nice -n 10 python3 crates/iotsec-scan/bench/nmap.py [RUNS]
"""

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
BIN = os.path.join(ROOT, "target", "release", "iotsec")
STANDARD = [1883, 8883, 8080]


def need(tool):
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin")
    if not path:
        sys.exit(f"{tool} is required (Debian: apt-get install {tool})")
    return path


def wall(cmd):
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - t, out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_listening(port):
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listening on {port}")


def iotsec_identified(report):
    return {
        p["port"]: p["service"]["name"]
        for p in report["ports"]
        if p["service"]["name"] not in ("unknown", "tls", "not_probed")
    }


def nmap_services(out):
    found = {}
    for m in re.finditer(r"^(\d+)/tcp\s+open\s+(\S+)", out, re.M):
        found[int(m.group(1))] = m.group(2)
    return found


def nmap_identified(services):
    bad = {"unknown", "tcpwrapped", "ssl/unknown"}
    return {p: s for p, s in services.items() if s not in bad and not s.endswith("?")}


def main():
    nmap = need("nmap")
    mosquitto = need("mosquitto")
    openssl = need("openssl")
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "iotsec-cli", "--bin", "iotsec"],
                   cwd=ROOT, check=True)
    nmap_version = subprocess.run([nmap, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    print(f"# {nmap_version}; {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}; runs={RUNS}")

    # 1. Full-port sweep.
    ours, theirs = [], []
    for i in range(RUNS):
        pair = [("iotsec", [BIN, "scan", "127.0.0.1", "--ports", "all", "--no-probe", "--json", "-q"]),
                ("nmap", [nmap, "-sT", "-n", "-p1-65535", "127.0.0.1"])]
        if i % 2:
            pair.reverse()
        for name, cmd in pair:
            t, out = wall(cmd)
            if name == "iotsec":
                open_ports = len(json.loads(out)["ports"])
                ours.append(t)
            else:
                open_ports = len(nmap_services(out))
                theirs.append(t)
            print(f"sweep run {i + 1} {name}: {t:.3f} s, {open_ports} open")
    m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
    print(f"SWEEP median: iotsec {m_ours:.3f} s, nmap {m_theirs:.3f} s, ratio {m_ours / m_theirs:.3f}")

    # 2. Identification of five IoT listeners.
    busy = [p for p in STANDARD if not port_free(p)]
    if busy:
        sys.exit(f"ports {busy} are in use; the identification benchmark needs 1883, 8883 and 8080")
    tmp = tempfile.mkdtemp()
    os.chmod(tmp, 0o755)
    procs = []
    try:
        # Test PKI: EC P-256 CA and server certificate for 127.0.0.1 (throwaway; world-readable on
        # purpose because Mosquitto drops to its own user before reading them).
        def run_openssl(*args):
            subprocess.run([openssl, *args], check=True, capture_output=True)
        ca_key, ca, key, csr, cert = (os.path.join(tmp, n) for n in ("ca.key", "ca.pem", "s.key", "s.csr", "s.pem"))
        run_openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=bench CA")
        run_openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", csr, "-subj", "/CN=broker.bench")
        ext = os.path.join(tmp, "ext.cnf")
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        run_openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
                    "-out", cert, "-days", "2", "-extfile", ext)
        for f in os.listdir(tmp):
            os.chmod(os.path.join(tmp, f), 0o644)
        odd_plain, odd_tls = free_port(), free_port()
        conf = os.path.join(tmp, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(
                "per_listener_settings true\npersistence false\n"
                f"listener 1883 127.0.0.1\nallow_anonymous true\n"
                f"listener 8883 127.0.0.1\nallow_anonymous true\ncertfile {cert}\nkeyfile {key}\n"
                f"listener {odd_plain} 127.0.0.1\nallow_anonymous true\n"
                f"listener {odd_tls} 127.0.0.1\nallow_anonymous true\ncertfile {cert}\nkeyfile {key}\n"
            )
        os.chmod(conf, 0o644)
        procs.append(subprocess.Popen([mosquitto, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen([sys.executable, "-m", "http.server", "8080", "--bind", "127.0.0.1"],
                                      cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        ports = [1883, 8883, 8080, odd_plain, odd_tls]
        for p in ports:
            wait_listening(p)
        spec = ",".join(map(str, ports))
        ours, theirs = [], []
        ours_found = theirs_found = None
        for i in range(RUNS):
            pair = [("iotsec", [BIN, "scan", "127.0.0.1", "--ports", spec, "--json", "-q"]),
                    ("nmap", [nmap, "-sV", "-n", "-p", spec, "127.0.0.1"])]
            if i % 2:
                pair.reverse()
            for name, cmd in pair:
                t, out = wall(cmd)
                if name == "iotsec":
                    report = json.loads(out)
                    ours_found = {p["port"]: p["label"] for p in report["ports"]}
                    n = len(iotsec_identified(report))
                    ours.append(t)
                else:
                    theirs_found = nmap_services(out)
                    n = len(nmap_identified(theirs_found))
                    theirs.append(t)
                print(f"identify run {i + 1} {name}: {t:.3f} s, {n}/5 identified")
        m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
        print(f"iotsec services: {ours_found}")
        print(f"nmap services:   {theirs_found}")
        print(f"IDENTIFY median: iotsec {m_ours:.3f} s, nmap {m_theirs:.3f} s, "
              f"nmap/iotsec {m_theirs / m_ours:.1f}x; ports {spec} (non-standard: {odd_plain}, {odd_tls})")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
