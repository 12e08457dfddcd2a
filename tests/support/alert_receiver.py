"""A webhook receiver for kmsd's alert tests (Python standard library only).

Every POST is written to DIR/NNNN.json as {"mac_ok": bool, "headers": {...}, "body": ...}: the
X-Kms-Signature-256 header is checked against HMAC-SHA256 of the raw body under the key in
KEY_FILE (compared in constant time). The answer depends on the file DIR/mode, read at each
request: "ok" (or absent) 200; "fail" 500; "hold": DIR/holding is created and the answer waits
until DIR/release exists (60 s at most), then 200, DIR/held-seconds saying how long it waited.

usage: alert_receiver.py PORT KEY_FILE DIR   (writes DIR/ready once listening)
"""
import hashlib
import hmac
import http.server
import json
import os
import sys
import threading
import time

PORT, KEY_FILE, DIR = int(sys.argv[1]), sys.argv[2], sys.argv[3]
LOCK = threading.Lock()
COUNT = [0]


def mode():
    try:
        with open(os.path.join(DIR, "mode")) as f:
            return f.read().strip()
    except FileNotFoundError:
        return "ok"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        with open(KEY_FILE, "rb") as f:
            key = f.read().strip()
        expected = "sha256=" + hmac.new(key, raw, hashlib.sha256).hexdigest()
        given = self.headers.get("X-Kms-Signature-256", "")
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with LOCK:
            COUNT[0] += 1
            name = os.path.join(DIR, "%04d.json" % COUNT[0])
        record = {"mac_ok": hmac.compare_digest(expected, given), "headers": dict(self.headers), "body": body}
        with open(name + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(name + ".tmp", name)
        m = mode()
        if m == "hold":
            open(os.path.join(DIR, "holding"), "w").close()
            start = time.monotonic()
            while not os.path.exists(os.path.join(DIR, "release")) and time.monotonic() < start + 60:
                time.sleep(0.05)
            with open(os.path.join(DIR, "held-seconds"), "w") as f:
                f.write("%.1f" % (time.monotonic() - start))
        status = 500 if m == "fail" else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):
        sys.stderr.write("alert_receiver: " + (fmt % args) + "\n")


server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
open(os.path.join(DIR, "ready"), "w").close()
server.serve_forever()
