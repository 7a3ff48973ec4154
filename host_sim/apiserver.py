"""Loopback servers for the simulator: real sockets on 127.0.0.1, ephemeral ports, real TLS.

- `LoopbackServer`: accept loop; every connection is served in its own daemon thread, every
  socket has a timeout, `stop()` closes the listener and every live connection, then joins.
- `ScriptedServer`: hands each (possibly TLS-wrapped) connection to a test's `handler(conn)`,
  for odd behaviours (chunked bodies, holding connections open, never answering).
- `ApiServer`: one VM Maker host. A small HTTP/1.1 server (one request per connection,
  `Connection: close`, always a Content-Length) that records every request and asks an `app`
  callable for the answer. Besides normal serving it has the raw failure modes of MODES.
"""

import email.utils
import http
import json
import socket
import threading
import time

from host_sim.ca import self_signed_context

LOOPBACK = "127.0.0.1"
POLL_S = 0.05  # how often blocked loops look at the stop flag
MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024

# normal: serve; refuse: listener closed (port kept, connect refused); blackhole: accept and
# never send a byte; bad-tls-*: present a self-signed leaf / a CA leaf for the wrong name.
MODES = ("normal", "refuse", "blackhole", "bad-tls-selfsigned", "bad-tls-wronghost")


def _shutdown(sock):
    """Wake whoever is blocked on `sock` in another thread, without touching its TLS state."""
    try:
        fd = sock.fileno()
        if fd < 0:
            return
        twin = socket.socket(fileno=socket.dup(fd))
        try:
            twin.shutdown(socket.SHUT_RDWR)
        finally:
            twin.close()
    except OSError:
        pass


class ConnectionRecord:
    """One accepted TCP connection: when, from where, in which mode, how it ended."""

    __slots__ = ("time", "peer", "mode", "sock", "error")

    def __init__(self, peer, mode):
        self.time = time.time()
        self.peer = peer
        self.mode = mode
        self.sock = None
        self.error = None

    def __repr__(self):
        return "<Connection %s:%s mode=%s error=%s>" % (self.peer + (self.mode, self.error))


class LoopbackServer:
    """Listens on 127.0.0.1 and serves each accepted connection in a daemon thread."""

    mode = "normal"

    def __init__(self, port=0, io_timeout=5.0):
        self.port = port
        self.io_timeout = io_timeout
        self.connections = []
        self._listener = None
        self._accept_thread = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._live = {}  # thread -> ConnectionRecord

    @property
    def address(self):
        return (LOOPBACK, self.port)

    @property
    def listening(self):
        return self._listener is not None

    def start(self):
        self._stopping.clear()
        self._listen()
        return self

    def request_stop(self):
        """Begin stopping (no join); lets many servers stop in parallel."""
        self._stopping.set()

    def stop(self, timeout=2.0):
        self.request_stop()
        self._unlisten()
        with self._lock:
            live = list(self._live.items())
        for _thread, record in live:
            if record.sock is not None:
                _shutdown(record.sock)
        deadline = time.monotonic() + timeout
        for thread, _record in live:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _listen(self):
        if self._listener is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # REUSEADDR lets a 'refuse'd server come back on the same port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, self.port))
        sock.listen(64)
        sock.settimeout(POLL_S)
        self.port = sock.getsockname()[1]
        self._listener = sock
        self._accept_thread = threading.Thread(
            target=self._accept_loop, args=(sock,), name="accept:%d" % self.port, daemon=True
        )
        self._accept_thread.start()

    def _unlisten(self):
        sock, thread = self._listener, self._accept_thread
        if sock is None:
            return
        self._listener = None
        thread.join()
        sock.close()

    def _accept_loop(self, listener):
        while self._listener is listener and not self._stopping.is_set():
            try:
                raw, peer = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            raw.settimeout(self.io_timeout)
            record = ConnectionRecord(peer, self.mode)
            record.sock = raw
            thread = threading.Thread(
                target=self._run_connection, args=(raw, record), daemon=True
            )
            with self._lock:
                self.connections.append(record)
                self._live[thread] = record
            thread.start()

    def _run_connection(self, raw, record):
        try:
            self.handle_connection(raw, record)
        except Exception as exc:  # a broken client must not kill the server
            record.error = "%s: %s" % (type(exc).__name__, exc)
        finally:
            for sock in (record.sock, raw):  # raw is detached (a no-op) once TLS-wrapped
                try:
                    sock.close()
                except OSError:
                    pass
            with self._lock:
                self._live.pop(threading.current_thread(), None)

    def handle_connection(self, raw, record):
        raise NotImplementedError

    def _hold_open(self, sock):
        """Read and discard until the peer goes away or the server stops; never write."""
        sock.settimeout(POLL_S)
        while not self._stopping.is_set():
            try:
                if not sock.recv(4096):
                    return
            except socket.timeout:
                continue
            except OSError:
                return

    @staticmethod
    def _wrap_tls(raw, record, context):
        conn = context.wrap_socket(raw, server_side=True)
        record.sock = conn
        return conn


class ScriptedServer(LoopbackServer):
    """Calls `handler(conn)` in a thread for every connection (TLS-wrapped if a context is given).

    `connections` holds a ConnectionRecord per connection (`.sock` is the conn handed over,
    `.error` what the handler or the handshake raised). The conn is closed after the handler.
    """

    def __init__(self, handler, tls_context=None, io_timeout=5.0):
        super().__init__(io_timeout=io_timeout)
        self.handler = handler
        self.tls_context = tls_context

    @property
    def stopping(self):
        """For handlers that hold a connection: poll this to give up when the server stops."""
        return self._stopping.is_set()

    def handle_connection(self, raw, record):
        conn = self._wrap_tls(raw, record, self.tls_context) if self.tls_context else raw
        self.handler(conn)


# -- HTTP -------------------------------------------------------------------------------


class HttpError(Exception):
    """A request the server cannot parse: answered with `status` and reason `reason`."""

    def __init__(self, status, reason, message):
        super().__init__(message)
        self.status = status
        self.reason = reason


class ClientGone(Exception):
    """The peer closed the connection before sending a whole request."""


class Headers(dict):
    """Header dict with lower-case keys and case-insensitive lookup."""

    def __getitem__(self, name):
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name):
        return dict.__contains__(self, name.lower())

    def get(self, name, default=None):
        return dict.get(self, name.lower(), default)


class RequestRecord:
    """One request as received: `raw_headers` keeps names, order and duplicates as sent."""

    def __init__(self, method, target, raw_headers, body, peer):
        self.time = time.time()
        self.method = method
        self.target = target
        self.path, _, self.query = target.partition("?")
        self.raw_headers = raw_headers
        self.headers = Headers((name.lower(), value) for name, value in raw_headers)
        self.body = body
        self.peer = peer
        self.status = None  # filled in once answered
        self.reason = None  # X-VMM-Reason of the answer, if any

    def json(self):
        return json.loads(self.body.decode("utf-8")) if self.body else None

    def __repr__(self):
        return "<Request %s %s -> %s %s>" % (self.method, self.target, self.status, self.reason)


class _Reader:
    """Buffered reads from a socket with size caps."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(16384)
        if not chunk:
            raise ClientGone("peer closed the connection mid-request")
        self.buf += chunk

    def until(self, delimiter, limit, what):
        while True:
            at = self.buf.find(delimiter)
            if at >= 0:
                out, self.buf = self.buf[:at], self.buf[at + len(delimiter):]
                return out
            if len(self.buf) > limit:
                raise HttpError(431 if what == "head" else 400, "bad-request", what + " too long")
            self._fill()

    def exactly(self, size):
        while len(self.buf) < size:
            self._fill()
        out, self.buf = self.buf[:size], self.buf[size:]
        return out

    def chunked(self, limit):
        body = b""
        while True:
            line = self.until(b"\r\n", 1024, "chunk size line")
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise HttpError(400, "bad-request", "bad chunk size") from None
            if size == 0:
                while self.until(b"\r\n", 8192, "trailer"):
                    pass
                return body
            if len(body) + size > limit:
                raise HttpError(413, "too-large", "body over %d bytes" % limit)
            body += self.exactly(size)
            if self.exactly(2) != b"\r\n":
                raise HttpError(400, "bad-request", "chunk not followed by CRLF")


def read_request(sock, peer):
    """Parse one HTTP/1.x request from `sock` into a RequestRecord (raises HttpError)."""
    reader = _Reader(sock)
    head = reader.until(b"\r\n\r\n", MAX_HEAD, "head").decode("latin-1")
    lines = head.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1].startswith("/"):
        raise HttpError(400, "bad-request", "bad request line %r" % lines[0][:100])
    method, target, _version = parts
    raw_headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, "bad-request", "bad header line %r" % line[:100])
        raw_headers.append((name, value.strip()))
    headers = Headers((n.lower(), v) for n, v in raw_headers)
    encoding = headers.get("transfer-encoding")
    length = headers.get("content-length")
    if encoding is not None:
        if encoding.lower() != "chunked":
            raise HttpError(501, "bad-request", "unsupported transfer-encoding %r" % encoding)
        body = reader.chunked(MAX_BODY)
    elif length is not None:
        if not length.isdigit():
            raise HttpError(400, "bad-request", "bad content-length %r" % length)
        if int(length) > MAX_BODY:
            raise HttpError(413, "too-large", "body over %d bytes" % MAX_BODY)
        body = reader.exactly(int(length))
    else:
        body = b""
    return RequestRecord(method, target, raw_headers, body, peer)


class Response:
    """An HTTP response; `body` is bytes. Headers keep the case they were given."""

    def __init__(self, status, body=b"", headers=None):
        self.status = status
        self.body = body
        self.headers = dict(headers or {})

    @classmethod
    def json(cls, status, obj, headers=None):
        response = cls(status, json.dumps(obj).encode("utf-8"), headers)
        response.headers.setdefault("Content-Type", "application/json")
        return response

    @classmethod
    def error(cls, status, reason, message, headers=None):
        """An error answer as the wire contract wants: X-VMM-Reason plus a JSON body."""
        response = cls.json(status, {"error": reason, "message": message}, headers)
        response.headers["X-VMM-Reason"] = reason
        return response

    def copy(self):
        return Response(self.status, self.body, self.headers)

    def to_bytes(self):
        try:
            phrase = http.HTTPStatus(self.status).phrase
        except ValueError:
            phrase = "Unknown"
        lines = ["HTTP/1.1 %d %s" % (self.status, phrase)]
        lines += ["%s: %s" % item for item in self.headers.items()]
        lines += [
            "Content-Length: %d" % len(self.body),
            "Date: %s" % email.utils.formatdate(usegmt=True),
            "Connection: close",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


class ApiServer(LoopbackServer):
    """One VM Maker host (`region`/`service`/`role`) on a loopback port.

    `app(server, request) -> Response` decides the answer; this class adds `X-VMM-Server` to
    every response and records every parsed request in `requests`. `events` is where the
    world writes what happened to this server (e.g. a backup's "notify failover").
    With `ca=None` it speaks plain HTTP (and cannot do the bad-TLS modes).
    """

    def __init__(self, host, region, service, role, app, ca=None, io_timeout=5.0):
        super().__init__(io_timeout=io_timeout)
        self.host = host
        self.region = region
        self.service = service
        self.role = role
        self.app = app
        self.requests = []
        self.events = []
        self.mode = "normal"
        self.response_delay_s = 0.0
        self._ca = ca
        self._tls_contexts = {"normal": ca.server_context([host])} if ca else {}

    @property
    def label(self):
        return "%s/%s/%s" % (self.region, self.service, self.role)

    @property
    def scheme(self):
        return "https" if self._ca else "http"

    def start(self):
        super().start()
        if self.mode == "refuse":  # bind once anyway, so the port is known
            self._unlisten()
        return self

    def set_mode(self, mode):
        if mode not in MODES:
            raise ValueError("unknown mode %r (one of %s)" % (mode, ", ".join(MODES)))
        if mode.startswith("bad-tls") and not self._ca:
            raise ValueError("%s serves plain HTTP: no TLS to break" % self.host)
        self.mode = mode
        if mode == "refuse":
            self._unlisten()
        elif self.port and not self._stopping.is_set():
            self._listen()

    def clear_records(self):
        del self.requests[:]
        del self.events[:]
        del self.connections[:]

    def _tls_context(self, mode):
        if mode not in self._tls_contexts:  # made on first use: keeps start-up fast
            if mode == "bad-tls-selfsigned":
                self._tls_contexts[mode] = self_signed_context([self.host])
            else:
                self._tls_contexts[mode] = self._ca.wrong_host_context()
        return self._tls_contexts[mode]

    def handle_connection(self, raw, record):
        mode = record.mode = self.mode
        if mode == "blackhole":
            self._hold_open(raw)
            return
        conn = self._wrap_tls(raw, record, self._tls_context(mode)) if self._ca else raw
        try:
            request = read_request(conn, record.peer)
        except HttpError as exc:
            response = Response.error(exc.status, exc.reason, str(exc))
        else:
            self.requests.append(request)
            response = self._answer(request)
        response.headers["X-VMM-Server"] = self.label
        if self.response_delay_s and self._stopping.wait(self.response_delay_s):
            return  # stopped while "slow": a dead server does not answer after all
        conn.sendall(response.to_bytes())

    def _answer(self, request):
        try:
            response = self.app(self, request)
        except Exception as exc:  # surface app bugs as a 500 the test can see
            response = Response.error(500, "internal", "%s: %s" % (type(exc).__name__, exc))
        request.status = response.status
        request.reason = response.headers.get("X-VMM-Reason")
        return response
