"""A legacy device: the widely copied Python recipe (paho-mqtt + HMAC-SHA256 over
json.dumps(sort_keys=True)), publishing over mutual TLS. Used by the TRANSPORT interop test.

usage: legacy_device.py HOST PORT CA CERT KEY KEYFILE DEVICE_ID [--tamper]
Publishes one signed reading (tampered after signing with --tamper) at QoS 1 and exits 0
once the broker acknowledged it.
"""
import hashlib
import hmac
import json
import ssl
import sys

import paho.mqtt.client as mqtt

host, port, ca, cert, key, keyfile, device = sys.argv[1:8]
tamper = "--tamper" in sys.argv[8:]
SECRET_KEY = open(keyfile, "rb").read()


def sign_payload(payload_dict):
    body = json.dumps(payload_dict, sort_keys=True).encode()
    sig = hmac.new(SECRET_KEY, body, hashlib.sha256).hexdigest()
    payload_dict["sig"] = sig
    return json.dumps(payload_dict)


payload = {"temp": 23.5, "hum": 55.2, "device": device}
message = sign_payload(payload.copy())
if tamper:
    d = json.loads(message)
    d["temp"] = 99.9
    message = json.dumps(d)

if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt 2.x
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device + "-legacy")
else:  # paho-mqtt 1.x
    client = mqtt.Client(client_id=device + "-legacy")
client.tls_set(ca_certs=ca, certfile=cert, keyfile=key, tls_version=ssl.PROTOCOL_TLS_CLIENT)
client.tls_insecure_set(False)
client.connect(host, int(port))
client.loop_start()
info = client.publish("devices/%s/telemetry" % device, message, qos=1)
info.wait_for_publish(timeout=10)
ok = info.is_published()
client.disconnect()
client.loop_stop()
sys.exit(0 if ok else 1)
