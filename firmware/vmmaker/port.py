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
    """A connected socket seen as readline/read/write, every read bounded by a deadline.

    MicroPython sockets are streams already; CPython needs a buffered file.
    """

    def __init__(self, raw, wrapped):
        self.raw = raw
        self.sock = wrapped
        self._f = wrapped if MICROPYTHON else wrapped.makefile("rb")
        self.deadline = None
        self.limit_ms = 0
        self._armed = None

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

    def write(self, data):
        if MICROPYTHON:
            self.sock.write(data)  # str has the buffer protocol here: no encoded copy
        else:
            self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def readline(self, limit):
        self._rearm()
        return self._f.readline(limit)

    def read(self, n):
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
    return isinstance(exc, OSError) and exc.args and exc.args[0] in (110, 116, "timed out")


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
