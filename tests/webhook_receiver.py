#!/usr/bin/env python3
"""A webhook receiver for the watch tests, on loopback inside a lab namespace.

    webhook_receiver.py --port P --log FILE          append each POST body (one line) to FILE, answer 204
    webhook_receiver.py --port P --log FILE --hang   accept connections and never answer (a hung server)

Prints "ready" once listening.
"""
import argparse
import http.server
import socket
import sys
import threading
import time


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--hang", action="store_true")
    a = p.parse_args()
    if a.hang:
        srv = socket.create_server(("127.0.0.1", a.port))
        print("ready", flush=True)
        held = []
        while True:
            conn, _ = srv.accept()
            held.append(conn)                  # read nothing, answer nothing
            with open(a.log, "a") as f:
                f.write(f"connection {time.monotonic():.3f}\n")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with open(a.log, "a") as f:
                f.write(body.decode() + "\n")
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    print("ready", flush=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
