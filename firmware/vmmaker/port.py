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


def pem_certs(pem):
    """Each certificate of a PEM text (a bundle, text around the blocks allowed) as DER.

    mbedTLS on MicroPython takes one DER certificate per load_verify_locations() call; the
    base64 is cut out by position (a2b_base64 skips the line breaks itself), so no list of
    lines is built at the moment the heap is tightest. Bytes without a PEM block are DER.
    """
    if isinstance(pem, str):
        pem = pem.encode()
    import binascii
    i = pem.find(b"-----BEGIN CERTIFICATE-----")
    if i < 0:
        yield pem
        return
    while i >= 0:
        start = pem.find(b"\n", i)
        end = pem.find(b"-----END CERTIFICATE-----", start)
        if start < 0 or end < 0:
            raise ValueError("a PEM certificate block has no END line")
        yield binascii.a2b_base64(pem[start + 1:end])
        i = pem.find(b"-----BEGIN CERTIFICATE-----", end)


def resolve(host, port):
    return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1]


def tls_context(ca):
    if ssl is None:
        raise OSError("this firmware has no ssl module; TLS is unavailable")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # MicroPython's client context does not verify unless told to.
    ctx.verify_mode = ssl.CERT_REQUIRED
    if MICROPYTHON:
        for der in pem_certs(ca):  # every CA of a bundle is trusted (CA rotation)
            ctx.load_verify_locations(cadata=der)
    else:
        ctx.check_hostname = True
        ctx.load_verify_locations(cadata=ca.decode() if isinstance(ca, bytes) else ca)
    return ctx


class Stream:
    """A connected socket seen as readline/readhead/read/write.

    Every read is one recv() bounded by the read timeout and by the call's deadline, which
    is checked again before each recv(): a server dripping a byte at a time cannot hold a
    call past its deadline. (MicroPython's readline() reads a byte per call and its read()
    waits for a full buffer, each wait with a fresh timeout; CPython's buffered files too.)
    """

    def __init__(self, raw, wrapped):
        self.raw = raw
        self.sock = wrapped
        self.deadline = None
        self.limit_ms = 0
        self._armed = None
        self._data = b""  # what recv() gave and no reader has taken yet, from _lo on
        self._lo = 0

    def arm(self, deadline, limit_ms):
        """Each later read waits at most limit_ms, and never past the deadline tick."""
        self.deadline = deadline
        self.limit_ms = limit_ms
        self._armed = None

    def _recv(self, n):
        left = ticks_diff(self.deadline, ticks_ms())
        if left <= 0:
            raise OSError(110, "deadline reached")
        ms = left if left < self.limit_ms else self.limit_ms
        if ms != self._armed:  # settimeout only when the bound changes: it allocates a float
            self._armed = ms
            # On MicroPython the TLS socket reads through the raw one, which holds the timeout.
            (self.raw if MICROPYTHON else self.sock).settimeout(ms / 1000)
        return self.sock.recv(n)

    def _more(self):
        # Append what the socket has now; False at end of stream.
        chunk = self._recv(512)
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
        """A whole response head (through its blank line) -> (bytes, start, end), parsed in
        place by the codec: no copy. At end of stream, what there is (the codec says what
        is missing); past `limit` bytes, as much as that (the codec refuses it)."""
        while True:
            d = self._data
            a = d.find(b"\n\r\n", self._lo)  # the first blank line ends the head
            b = d.find(b"\n\n", self._lo)
            end = a + 3 if a >= 0 and (b < 0 or a < b) else (b + 2 if b >= 0 else -1)
            if end >= 0:
                break
            if len(d) - self._lo > limit or not self._more():
                end = len(self._data)
                break
        start = self._lo
        self._lo = end
        return self._data, start, end

    def read(self, n):
        """Up to n bytes (at least one unless the stream ended)."""
        d = self._data
        if self._lo < len(d):  # what the line reader already holds comes first
            end = min(len(d), self._lo + n)
            piece = d if (self._lo == 0 and end == len(d)) else d[self._lo:end]
            self._lo = end
            return piece
        return self._recv(min(n, 2048))

    def close(self):
        for s in (self.sock, self.raw):
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
