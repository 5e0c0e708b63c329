"""HTTP to the control plane: kept-alive connections (one per thread), TLS
verified against the system's CAs and the pool's own, a server too busy
to take a request waited out, and failures turned into DspoolErrors that
say what to do."""

import http.client
import random
import socket
import ssl
import threading
import time
import urllib.parse

from .errors import DspoolError, UnreachableError, from_answer

USER_AGENT = "dspool-python"
# How long requests are sent again while the server says it is busy (503
# with Retry-After), as the Go client does.
BUSY_FOR = 60.0


class Transport:
    def __init__(self, server, token, ca=None, ca_from="", timeout=60.0):
        u = urllib.parse.urlsplit(server)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise DspoolError("%r is not a server URL: give http(s)://HOST:PORT, as `dspool up` prints it" % (server,),
                              field="server", code="invalid")
        self.server = server.rstrip("/")
        self.https = u.scheme == "https"
        self.host = u.hostname
        self.port = u.port or (443 if self.https else 80)
        self.base = u.path.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.ssl = None
        if self.https:
            self.ssl = ssl.create_default_context()
            if ca:
                try:
                    self.ssl.load_verify_locations(cafile=ca)
                except (OSError, ssl.SSLError) as e:
                    raise DspoolError("%s: cannot load %s as certificates to trust: %s" % (ca_from or "ca", ca, e),
                                      field=ca_from or "ca", code="invalid") from None
        self._local = threading.local()

    def _connect(self, timeout):
        if self.https:
            return _HTTPSConnection(self.host, self.port, timeout=timeout, context=self.ssl)
        return _HTTPConnection(self.host, self.port, timeout=timeout)

    def _headers(self, body):
        h = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        if body is not None:
            h["Content-Type"] = "application/json"
        return h

    def _send(self, conn, method, path, body, timeout):
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        conn.request(method, self.base + path, body=body, headers=self._headers(body))
        return conn.getresponse()

    def request(self, method, path, body=None, timeout=None):
        """Sends a request on this thread's kept-alive connection and returns
        (status, body) of a success; raises the DspoolError of a failure."""
        timeout = timeout or self.timeout
        until = time.monotonic() + BUSY_FOR
        window = 0.25
        while True:
            status, headers, data = self._roundtrip(method, path, body, timeout)
            if status < 400:
                return status, data
            wait = _busy(status, headers)
            if wait is None or time.monotonic() + wait > until:
                raise from_answer(status, data)
            # Sent again after what the server asked plus a random share
            # of a growing window, so that the clients it turned away
            # together do not come back together.
            time.sleep(wait + random.uniform(0, window))
            window = min(window * 2, 5.0)

    def _roundtrip(self, method, path, body, timeout):
        conn = getattr(self._local, "conn", None)
        reused = conn is not None
        if conn is None:
            conn = self._local.conn = self._connect(timeout)
        try:
            resp = self._send(conn, method, path, body, timeout)
            data = resp.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.BadStatusLine) as e:
            # A kept-alive connection the server had closed: once more on a
            # new one (every request the SDK sends may be sent twice).
            conn.close()
            self._local.conn = None
            if not reused:
                raise self._unreachable(e) from None
            return self._roundtrip(method, path, body, timeout)
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            self._local.conn = None
            raise self._unreachable(e) from None
        if resp.will_close:
            conn.close()
            self._local.conn = None
        return resp.status, resp.headers, data

    def stream(self, method, path, timeout=None):
        """Opens a request whose answer comes as a stream (logs), on a
        connection of its own, and returns the response and the connection
        to close."""
        conn = self._connect(timeout)
        try:
            resp = self._send(conn, method, path, None, timeout)
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise self._unreachable(e) from None
        if resp.status >= 400:
            data = resp.read()
            conn.close()
            raise from_answer(resp.status, data)
        return resp, conn

    def close(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _unreachable(self, e):
        if isinstance(e, ssl.SSLCertVerificationError):
            if getattr(e, "verify_code", 0) == 62 or "match" in str(e):  # X509_V_ERR_HOSTNAME_MISMATCH
                return UnreachableError("the dspool server's certificate does not name this address: %s (use a server "
                                        "address the certificate holds)" % (e.verify_message or e,))
            return UnreachableError("the dspool server's certificate is not signed by an authority this machine "
                                    "trusts: %s (give the CA's or the server's certificate in DSPOOL_CA=FILE)"
                                    % (e.verify_message or e,))
        if isinstance(e, socket.timeout):
            return UnreachableError("the dspool server at %s did not answer in time (%s)" % (self.server, e))
        return UnreachableError("cannot reach the dspool server at %s: %s (is `dspool up` or `dspool server` "
                                "running? check DSPOOL_SERVER)" % (self.server, e))


class _HTTPConnection(http.client.HTTPConnection):
    # http.client writes a request's headers and body apart: without
    # TCP_NODELAY the body waits for the headers' ACK (Nagle), which costs
    # a request more than the server takes to answer it.
    def connect(self):
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _HTTPSConnection(http.client.HTTPSConnection):
    def connect(self):
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _busy(status, headers):
    """How long a 503 with Retry-After asks to wait; None for any other
    answer."""
    if status != 503:
        return None
    try:
        secs = int(headers.get("Retry-After", ""))
    except ValueError:
        return None
    return float(secs) if 0 <= secs <= 60 else None
