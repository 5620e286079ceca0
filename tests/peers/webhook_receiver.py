"""A webhook receiver for the tests: an HTTP server on 127.0.0.1:PORT that answers the first
FAIL requests with 500 and every later one with 204, and writes each request it gets, before
answering, as one JSON line to LOG: {"n", "status", "path", "headers", "body"} (the raw body as
text). Usage: webhook_receiver.py PORT LOG FAIL"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, LOG, FAIL = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
lock = threading.Lock()
seen = 0


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global seen
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace")
        with lock:
            seen += 1
            status = 500 if seen <= FAIL else 204
            with open(LOG, "a", encoding="utf-8") as f:
                f.write(json.dumps({"n": seen, "status": status, "path": self.path,
                                    "headers": {k.lower(): v for k, v in self.headers.items()},
                                    "body": body}) + "\n")
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
