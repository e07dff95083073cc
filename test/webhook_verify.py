#!/usr/bin/env python3
"""An independent verifier of Standard Webhooks signatures (written from the
scheme at standardwebhooks.com, not from txoutbox's code).

    webhook_verify.py --secret whsec_... --log SINK_LOG [--path /p] [--tolerance 300]

Checks every request the sink (http_sink.py) logged (to --path when given):
  - webhook-id, webhook-timestamp and webhook-signature are present;
  - the timestamp is an integer within --tolerance seconds of when the
    request was received;
  - one of the space-separated "v1,<base64>" signatures equals
    base64(HMAC-SHA256(base64decode(secret without "whsec_"),
                       id + "." + timestamp + "." + raw body)).
Prints "ok <id>" or "FAIL <id>: <why>" per request and "checked N", exits
1 when any failed or none were found.
"""
import argparse
import base64
import hashlib
import hmac
import json
import sys


def expected_signature(secret, msg_id, timestamp, body):
    if not secret.startswith("whsec_"):
        raise ValueError("secret must start with whsec_")
    key = base64.b64decode(secret[len("whsec_"):], validate=True)
    to_sign = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    return base64.b64encode(hmac.new(key, to_sign, hashlib.sha256).digest()).decode()


def verify(secret, headers, body, received_at, tolerance):
    """None when the request verifies, else why not."""
    h = {k.lower(): v for k, v in headers}
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        if name not in h:
            return "missing header " + name
    ts = h["webhook-timestamp"]
    if not ts.isdigit():
        return "timestamp is not an integer"
    if abs(int(ts) - received_at) > tolerance:
        return "timestamp outside tolerance"
    want = expected_signature(secret, h["webhook-id"], ts, body)
    for sig in h["webhook-signature"].split(" "):
        version, _, value = sig.partition(",")
        if version == "v1" and hmac.compare_digest(value, want):
            return None
    return "no matching v1 signature"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--secret", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--path")
    p.add_argument("--tolerance", type=int, default=300)
    a = p.parse_args()
    checked = failed = 0
    with open(a.log) as f:
        for line in f:
            ev = json.loads(line)
            if ev.get("event") != "request" or (a.path and ev["path"] != a.path):
                continue
            body = ev["body"].encode("utf-8", "surrogateescape")
            why = verify(a.secret, ev["headers"], body, ev["t"], a.tolerance)
            msg_id = dict((k.lower(), v) for k, v in ev["headers"]).get("webhook-id", "?")
            checked += 1
            if why:
                failed += 1
                print("FAIL %s: %s" % (msg_id, why))
            else:
                print("ok %s" % msg_id)
    print("checked %d" % checked)
    sys.exit(1 if failed or checked == 0 else 0)


if __name__ == "__main__":
    main()
