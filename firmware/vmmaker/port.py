# The one platform adapter: everything that differs between an ESP32, the
# MicroPython unix port and CPython lives here, so no other module checks.
import sys
import socket
import os

MICROPYTHON = sys.implementation.name == "micropython"

try:
    import ssl
except ImportError:  # a build without TLS can still talk plain HTTP to a local server
    ssl = None

if MICROPYTHON:
    import time
    ticks_ms = time.ticks_ms
    ticks_diff = time.ticks_diff
    ticks_add = time.ticks_add
    sleep_ms = time.sleep_ms
else:
    import time

    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

    def ticks_add(a, b):
        return a + b

    def sleep_ms(ms):
        time.sleep(ms / 1000)


def wall_time():
    # Seconds since 1970 (MicroPython's epoch may be 2000; Retry-After dates need Unix time).
    t = time.time()
    if MICROPYTHON and time.gmtime(0)[0] == 2000:
        t += 946684800
    return t


def random_bytes(n):
    return os.urandom(n)


def random_unit():
    # Uniform float in [0, 1) for jittered backoff.
    b = os.urandom(4)
    return ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) / 4294967296


def pem_to_der(pem):
    # mbedTLS on MicroPython accepts DER only; the config carries the CA as PEM text.
    if isinstance(pem, str):
        pem = pem.encode()
    if not pem.lstrip().startswith(b"-----"):
        return pem
    import binascii
    lines = [l.strip() for l in pem.split(b"\n")]
    body = b"".join(l for l in lines if l and not l.startswith(b"-----"))
    return binascii.a2b_base64(body)


def resolve(host, port):
    return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1]


def tls_context(ca):
    if ssl is None:
        raise OSError("this firmware has no ssl module; TLS is unavailable")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # MicroPython's client context does not verify unless told to.
    ctx.verify_mode = ssl.CERT_REQUIRED
    if MICROPYTHON:
        ctx.load_verify_locations(cadata=pem_to_der(ca))
    else:
        ctx.check_hostname = True
        ctx.load_verify_locations(cadata=ca.decode() if isinstance(ca, bytes) else ca)
    return ctx


class Stream:
    """A connected socket seen as readline/readhead/read/write, every read bounded by a
    deadline. MicroPython sockets are buffered here; CPython's by a buffered file.
    """

    def __init__(self, raw, wrapped):
        self.raw = raw
        self.sock = wrapped
        self.deadline = None
        self.limit_ms = 0
        self._armed = None
        if MICROPYTHON:
            # MicroPython's readline() reads one byte per call (one syscall or TLS read per
            # byte), and its read()/readinto() wait for a full buffer: keep what recv() gave.
            self._data = b""
            self._lo = 0
            self._f = wrapped
        else:
            self._f = wrapped.makefile("rb")

    def arm(self, deadline, limit_ms):
        """Each later read waits at most limit_ms, and never past the deadline tick."""
        self.deadline = deadline
        self.limit_ms = limit_ms
        self._armed = None

    def _rearm(self):
        left = ticks_diff(self.deadline, ticks_ms())
        if left <= 0:
            raise OSError(110, "deadline reached")
        ms = left if left < self.limit_ms else self.limit_ms
        if ms != self._armed:  # settimeout only when the bound changes: it allocates a float
            self._armed = ms
            # On MicroPython the TLS socket reads through the raw one, which holds the timeout.
            (self.raw if MICROPYTHON else self.sock).settimeout(ms / 1000)

    def _more(self):
        # MicroPython only: append what the socket has now; False at end of stream.
        self._rearm()
        chunk = self.sock.recv(512)
        if not chunk:
            return False
        if self._lo < len(self._data):
            self._data = self._data[self._lo:] + chunk
        else:
            self._data = chunk
        self._lo = 0
        return True

    def write(self, data):
        if MICROPYTHON:
            self.sock.write(data)  # str has the buffer protocol here: no encoded copy
        else:
            self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def readline(self, limit):
        """Up to and including b"\\n", at most `limit` bytes; b"" at end of stream."""
        if not MICROPYTHON:
            self._rearm()
            return self._f.readline(limit)
        while True:
            d = self._data
            nl = d.find(b"\n", self._lo)
            if nl >= 0 or len(d) - self._lo >= limit or not self._more():
                end = len(d) if nl < 0 else nl + 1
                end = min(end, self._lo + limit)
                line = d[self._lo:end]
                self._lo = end
                return line

    def readhead(self, limit):
        """A whole response head (through its blank line) -> (bytes, start, end).

        None when it is longer than `limit`: the caller then reads it line by line.
        """
        if not MICROPYTHON:
            lines = []
            size = 0
            while size <= limit:
                self._rearm()
                line = self._f.readline(limit + 1 - size)
                lines.append(line)
                size += len(line)
                if not line or (len(lines) > 1 and line in (b"\r\n", b"\n")):
                    break
            head = b"".join(lines)
            return head, 0, len(head)
        while True:
            d = self._data
            a = d.find(b"\n\r\n", self._lo)  # the first blank line ends the head
            b = d.find(b"\n\n", self._lo)
            end = a + 3 if a >= 0 and (b < 0 or a < b) else (b + 2 if b >= 0 else -1)
            if end >= 0:
                break
            if len(d) - self._lo > limit:
                return None
            if not self._more():
                end = len(self._data)  # end of stream: the parser says what is missing
                break
        start = self._lo
        self._lo = end
        return self._data, start, end  # the parser reads the head in place: no copy

    def read(self, n):
        if MICROPYTHON and self._lo < len(self._data):
            d = self._data  # what the line reader already holds comes first
            end = min(len(d), self._lo + n)
            piece = d if (self._lo == 0 and end == len(d)) else d[self._lo:end]
            self._lo = end
            return piece
        self._rearm()
        return self._f.read(n)

    def close(self):
        for s in (self._f, self.sock, self.raw):
            try:
                s.close()
            except Exception:
                pass


def open_stream(host, sockaddr, tls_ctx, connect_timeout):
    """Connect to sockaddr, optionally TLS with SNI=host; the socket is closed on failure."""
    raw = socket.socket()
    try:
        raw.settimeout(connect_timeout)
        raw.connect(sockaddr)
        wrapped = raw
        if tls_ctx is not None:
            wrapped = tls_ctx.wrap_socket(raw, server_hostname=host)
        return Stream(raw, wrapped)
    except BaseException:
        raw.close()
        raise


def is_timeout(exc):
    if not MICROPYTHON and isinstance(exc, socket.timeout):
        return True
    # 110 ETIMEDOUT (Linux), 116 (lwIP on ESP32); 11 EAGAIN is how the unix port's recv()
    # reports its socket timeout running out.
    return isinstance(exc, OSError) and exc.args and exc.args[0] in (11, 110, 116, "timed out")


def is_tls_error(exc):
    if ssl is not None and not MICROPYTHON and isinstance(exc, ssl.SSLError):
        return True
    if MICROPYTHON:
        # mbedTLS reports negative codes as OSError and host-name mismatch as ValueError.
        if isinstance(exc, ValueError):
            return True
        if isinstance(exc, OSError) and exc.args and isinstance(exc.args[0], int) and exc.args[0] < 0:
            return True
    return False
