# The socket path of the codec on the device: port.Stream (MicroPython: its own recv
# buffer, readhead parsed in place; CPython: a buffered file) must give exactly what the
# line-by-line path gives for io.BytesIO, whatever sizes the bytes arrive in.
import io
from casekit import case, eq, run
from vmmaker import httpcodec, port
from vmmaker.errors import ProtocolError


class FakeSocket:
    """recv() hands out at most `step` bytes at a time, like a network delivering packets."""

    def __init__(self, data, step):
        self.data = data
        self.pos = 0
        self.step = step
        self.recvs = 0

    def recv(self, n):
        self.recvs += 1
        piece = self.data[self.pos:self.pos + min(n, self.step)]
        self.pos += len(piece)
        return piece

    def read(self, n):  # MicroPython's blocking read: all n bytes unless the stream ends
        piece = self.data[self.pos:self.pos + n]
        self.pos += len(piece)
        return piece

    def makefile(self, mode):
        return io.BytesIO(self.data)

    def settimeout(self, t):
        pass

    def write(self, b):
        pass

    def close(self):
        pass


def outcome(stream, method="GET", cap=256):
    try:
        return httpcodec.read_response(stream, method, cap)
    except ProtocolError as e:
        return type(e).__name__


def via_stream(raw, step, method="GET", cap=256):
    sock = FakeSocket(raw, step)
    s = port.Stream(sock, sock)
    s.arm(port.ticks_add(port.ticks_ms(), 60000), 60000)
    return outcome(s, method, cap), sock


def same_as_bytesio(raw, method="GET", cap=256):
    want = outcome(io.BytesIO(raw), method, cap)
    for step in (1, 2, 3, 7, 64, 512):
        got, _ = via_stream(raw, step, method, cap)
        eq(got, want, "%r delivered %d bytes at a time" % (raw[:30], step))


CORPUS = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-VMM-Server: tr/api/backup\r\n\r\nOKextra",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n1\r\nf\r\n0\r\nT: 1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\r\nclose-delimited body",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
    b"HTTP/1.1 302 Found\nLocation: /v1/x\nContent-Length: 0\n\n",
    b"HTTP/1.1 200 OK\r\nX-A:  spaced \t\r\nx-a: 2\r\nSet-Cookie: a\r\nSet-Cookie: b\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-U: \xc3\xa4\xc3\xb6\r\nContent-Length: 3\r\n\r\n\xe2\x82\xac",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
    b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\nab",
    b"HTTP/1.1 200 OK\r\nBad header\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-Bin: \xff\xfe\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"HTTP/1.1 2x0 OK\r\n\r\n",
    b"garbage\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-A: 1\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"X-Long: " + b"v" * 5000 + b"\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(70)) + b"\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"p" * 600 + b"\r\nContent-Length: 2\r\n\r\nOK",
    b"",
    b"\r\n\r\n",
    b"HTTP/1.1 200 OK\n\nbody \n\r\n with a blank line inside",
]


@case("corpus_same_as_bytesio")
def _():
    for raw in CORPUS:
        same_as_bytesio(raw)


@case("head_method_and_large_body_cap")
def _():
    same_as_bytesio(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK", "HEAD")
    same_as_bytesio(b"HTTP/1.1 200 OK\r\nContent-Length: 400\r\n\r\n" + b"x" * 400, "GET", 100)


def lcg(seed):
    # The same pseudo-random sequence on both interpreters (their `random` modules differ).
    state = [seed]

    def nxt(n):
        state[0] = (state[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return state[0] % n
    return nxt


@case("mutated_corpus_same_as_bytesio")
def _():
    rnd = lcg(20261203)
    alphabet = b"\r\n: \t0123456789aAzZ-;\x00\xff"
    for i in range(150):
        raw = CORPUS[rnd(6)]
        for _ in range(1 + rnd(4)):
            op = rnd(3)
            at = rnd(len(raw) + 1)
            byte = alphabet[rnd(len(alphabet)):][:1]
            if op == 0:  # drop a byte
                raw = raw[:at] + raw[at + 1:]
            elif op == 1:  # insert one
                raw = raw[:at] + byte + raw[at:]
            else:  # replace one
                raw = raw[:at] + byte + raw[at + 1:]
        same_as_bytesio(raw)


@case("few_recv_calls_for_a_small_response")
def _():
    # The point of the buffer: a response in one packet is read with a couple of recv()
    # calls, not one per byte.
    _, sock = via_stream(CORPUS[1], 512)
    if port.MICROPYTHON:
        eq(sock.recvs <= 2, True, "recv calls: %d" % sock.recvs)


run()
