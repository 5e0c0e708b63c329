"""A stand-in for a Jupyter server in the proxy tests: it takes the options
dspool gives Jupyter, checks the token, and appends every request it
receives (method, path, body length) to $HOME/requests.log."""
import http.server
import os
import sys

opts = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
port = int(opts["ServerApp.port"])
base = opts["ServerApp.base_url"]
token = os.environ["JUPYTER_TOKEN"]
log = os.path.join(os.environ["HOME"], "requests.log")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.headers.get("Authorization") != "token " + token:
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if not self.path.endswith("api/status"):
            with open(log, "a") as f:
                f.write("%s %s %d\n" % (self.command, self.path, len(body)))
        out = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = handle_any

    def log_message(self, *args):
        pass


assert base.startswith("/user/")
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
