#!/usr/bin/env python3
"""Writes N realistic 8-field telemetry payloads (JSON lines) for the MSG benchmark.

Usage: gen_payloads.py N [v2]   (v2: fewer fields, the envelope adds v/kid/ts/seq)
Values are a deterministic pseudo-random mix of what Python devices send: short strings,
integers, 2-decimal floats and full-precision floats (17 significant digits).
"""
import json
import random
import sys

n = int(sys.argv[1])
v2 = len(sys.argv) > 2 and sys.argv[2] == "v2"
rng = random.Random(42)
out = sys.stdout
for i in range(n):
    d = {
        "device": "greenhouse-north-sensor-%05d" % (i % 5000),
        "temp": round(rng.uniform(-10, 40), 2),
        "hum": rng.uniform(20, 90),
        "batt": round(rng.uniform(3.0, 4.2), 3),
        "rssi": rng.randint(-100, -30),
        "status": rng.choice(["nominal", "nominal", "nominal", "low-battery", "door-open"]),
    }
    if not v2:
        d["ts"] = 1700000000000 + i * 1000
        d["seq"] = i
    out.write(json.dumps(d) + "\n")
