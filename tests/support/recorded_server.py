#!/usr/bin/python3
"""Serves recorded HTTP responses on 127.0.0.1 for tests of how clients treat what a
server says. Routes come from a JSON file:
  {"GET /path": {"status": 200, "headers": {"Content-Type": "..."}, "body": "...",
                 "body_repeat": N}}
"@PORT@" in bodies and headers is replaced by the bound port. Prints the port on the
first line of stdout, then serves until killed."""
import http.server
import json
import sys


def main():
    routes_file = sys.argv[1]
    with open(routes_file, encoding="utf-8") as f:
        routes = json.load(f)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), None)
    port = server.server_address[1]

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, send_body):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            route = routes.get(self.command + " " + self.path)
            if route is None and self.command == "HEAD":
                route = routes.get("GET " + self.path)
            if route is None:
                route = {"status": 404, "headers": {"Content-Type": "text/plain"}, "body": "no route"}
            body = route.get("body", "").replace("@PORT@", str(port)) * int(route.get("body_repeat", 1))
            data = body.encode("utf-8")
            self.send_response(route.get("status", 200))
            for name, value in route.get("headers", {}).items():
                self.send_header(name, value.replace("@PORT@", str(port)))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if send_body:
                self.wfile.write(data)

        def do_GET(self):
            self.answer(True)

        def do_POST(self):
            self.answer(True)

        def do_HEAD(self):
            self.answer(False)

    server.RequestHandlerClass = Handler
    print(port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
