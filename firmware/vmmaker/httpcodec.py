# HTTP/1.1 message codec. No sockets here: requests become bytes, and responses are
# read from any object with readline()/read(n) (a socket stream or io.BytesIO).
from .errors import ProtocolError, BodyTooLarge, ConfigError

MAX_LINE = 4096
MAX_HEADERS = 64
MAX_HEAD = 8192  # status line and every header together
MAX_INTERIM = 5


def split_url(url):
    """'https://host:port/path?q' -> (scheme, host, port, path). Relative paths are not URLs."""
    i = url.find("://")
    if i < 0:
        raise ConfigError("not an absolute URL: %r" % url)
    scheme = url[:i].lower()
    if scheme not in ("http", "https"):
        raise ConfigError("unsupported URL scheme %r: use http or https" % scheme)
    rest = url[i + 3:]
    j = rest.find("/")
    hostport, path = (rest, "/") if j < 0 else (rest[:j], rest[j:])
    q = hostport.find("?")
    if q >= 0:  # "https://h?x" has its query before any slash
        hostport, path = hostport[:q], "/" + hostport[q:]
    if "@" in hostport:
        raise ConfigError("credentials in URLs are not supported")
    port = 443 if scheme == "https" else 80
    c = hostport.rfind(":")
    if c >= 0:
        try:
            port = int(hostport[c + 1:])
        except ValueError:
            raise ConfigError("bad port in URL %r" % url)
        hostport = hostport[:c]
    if not hostport:
        raise ConfigError("URL has no host: %r" % url)
    return scheme, hostport.lower(), port, path


def request_head(method, host, path, headers, body):
    """The request line and headers as one str (MicroPython sockets take str as is)."""
    for s in (method, path):  # a redirect's Location must not smuggle a second request
        if "\r" in s or "\n" in s or " " in s:
            raise ConfigError("request line part %r contains a space or line break" % s[:60])
    # Sized up front: growing a list reallocates it on every doubling.
    parts = [None] * (4 * len(headers) + 7)
    parts[0] = method
    parts[1] = " "
    parts[2] = path
    parts[3] = " HTTP/1.1\r\nHost: "
    parts[4] = host
    n = 5
    for k in headers:
        v = headers[k]
        if "\r" in k or "\n" in k or "\r" in v or "\n" in v:
            raise ConfigError("header %r contains a line break" % k)
        parts[n] = "\r\n"
        parts[n + 1] = k
        parts[n + 2] = ": "
        parts[n + 3] = v
        n += 4
    parts[n] = "\r\n" if body is None else "\r\nContent-Length: %d\r\n" % len(body)
    parts[n + 1] = "Connection: close\r\n\r\n"
    return "".join(parts)  # n + 2 == len(parts): every slot is filled


def encode_request(method, host, path, headers, body):
    return request_head(method, host, path, headers, body).encode()


def parse_status_line(line):
    # b"HTTP/1.1 200 OK\r\n" -> 200
    return _status(line, 0, len(line))


def _status(b, start, end):
    # The status line is b[start:end]; digits are read as ints, without slicing.
    if end <= start:
        raise ProtocolError("server closed the connection before answering")
    if not b.startswith(b"HTTP/1.", start) or end - start < 12 or b[start + 8] != 32:
        raise ProtocolError("not an HTTP/1.x status line: %r" % b[start:min(end, start + 40)])
    code = 0
    for i in (9, 10, 11):
        d = b[start + i] - 48
        if d < 0 or d > 9:
            raise ProtocolError("bad status code in %r" % b[start:min(end, start + 40)])
        code = code * 10 + d
    if end - start > 12 and b[start + 12] not in b" \r\n":
        raise ProtocolError("bad status code in %r" % b[start:min(end, start + 40)])
    if code < 100 or code > 599:
        raise ProtocolError("status code out of range: %d" % code)
    return code


def _ascii(b):
    # b decoded when it is pure ASCII (then str and bytes offsets agree), else None.
    try:
        s = b.decode()
    except UnicodeError:
        return None
    return s if len(s) == len(b) else None


def parse_header_line(line):
    # b"Name: value\r\n" -> ("name", "value"); obsolete line folding is refused.
    return _header(line, _ascii(line), 0, len(line))


def _header(b, s, start, end):
    """The header line b[start:end] -> (name, value); s is b decoded (ASCII) or None."""
    i = b.find(b":", start, end)
    if i <= start or b[start] in b" \t":
        raise ProtocolError("malformed header line %r" % b[start:min(end, start + 40)])
    if s is None:
        # Non-ASCII: trim SP/HTAB and lower-case ASCII only, on bytes, because str.strip()
        # and str.lower() treat other characters differently on CPython and MicroPython.
        try:
            return (b[start:i].strip(b" \t").lower().decode(),
                    b[i + 1:end].strip(b" \t\r\n").decode())
        except UnicodeError:
            raise ProtocolError("header line is not text: %r" % b[start:min(end, start + 40)])
    # Find the value's bounds on the bytes (ints, no allocation), then slice once.
    j, e = i + 1, end
    while e > j and b[e - 1] in b" \t\r\n":
        e -= 1
    while j < e and b[j] in b" \t":
        j += 1
    return s[start:i].strip(" \t").lower(), s[j:e]  # strip/lower return the same str if unchanged


def _add(headers, k, v):
    if len(headers) >= MAX_HEADERS:
        raise ProtocolError("more than %d response headers" % MAX_HEADERS)
    if k in headers and k != "set-cookie":
        if k == "content-length":
            if headers[k] != v:
                raise ProtocolError("conflicting Content-Length headers")
        else:
            v = headers[k] + ", " + v
    headers[k] = v


def parse_head(block, start=0, end=None):
    """A whole response head, status line to blank line, in block[start:end] -> (status,
    headers). One decode for the whole block instead of one per line, and no copy of the
    head: a board's heap sees a few allocations per response, not several per header.
    """
    if end is None:
        end = len(block)
    if end - start > MAX_HEAD:
        raise ProtocolError("response head larger than %d bytes" % MAX_HEAD)
    s = _ascii(block)  # offsets of s and block agree only when all of block is ASCII
    eol = block.find(b"\n", start, end)
    if eol < 0:
        _status(block, start, end)  # raises: nothing came, or not a status line
        raise ProtocolError("connection closed inside the response headers")
    if eol + 1 - start > MAX_LINE:
        raise ProtocolError("response line longer than %d bytes" % MAX_LINE)
    status = _status(block, start, eol + 1)
    headers = {}
    pos = eol + 1
    while True:
        eol = block.find(b"\n", pos, end)
        if eol < 0:
            raise ProtocolError("connection closed inside the response headers")
        if eol + 1 - pos > MAX_LINE:
            raise ProtocolError("response line longer than %d bytes" % MAX_LINE)
        if eol == pos or (eol == pos + 1 and block[pos] == 13):
            return status, headers
        k, v = _header(block, s, pos, eol + 1)
        _add(headers, k, v)
        pos = eol + 1


def body_framing(method, status, headers):
    """('none'|'length'|'chunked'|'close', length) as RFC 9112 section 6.3 decides."""
    if method == "HEAD" or status < 200 or status in (204, 304):
        return "none", 0
    te = headers.get("transfer-encoding")
    if te is not None:
        if te.lower().split(",")[-1].strip(" \t") != "chunked":
            raise ProtocolError("unsupported Transfer-Encoding %r" % te)
        return "chunked", 0
    cl = headers.get("content-length")
    if cl is not None:
        # 1*DIGIT only: int() would also take "+5", "1_0" and " 5".
        if not cl or cl.strip("0123456789"):
            raise ProtocolError("bad Content-Length %r" % cl)
        return "length", int(cl)
    return "close", 0


def parse_chunk_size(line):
    s = line.split(b";")[0].strip()
    if not s or s.strip(b"0123456789abcdefABCDEF"):  # int(s, 16) takes "0x1", "-1", "1_0"
        raise ProtocolError("bad chunk size line %r" % line[:40])
    return int(s, 16)


def _line(stream):
    # readline(n) reserves n bytes up front on MicroPython: ask for small pieces so a
    # fragmented board heap never needs a 4 KB block for a 30-byte header line.
    line = stream.readline(128)
    while line and line[-1] != 10 and len(line) <= MAX_LINE:
        more = stream.readline(128)
        if not more:
            break
        line += more
    if len(line) > MAX_LINE:
        raise ProtocolError("response line longer than %d bytes" % MAX_LINE)
    return line


def _exact(stream, n, out=None):
    # Read exactly n bytes (appended to the bytearray `out` when given); a peer holding the
    # connection open after them is fine. Reads may come in pieces: each is bounded.
    first = stream.read(n) if n else b""
    if out is None and len(first) == n:
        return first  # the usual case: no copy
    acc = bytearray(first) if out is None else out
    if out is not None:
        acc += first
    got = len(first)
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            raise ProtocolError("connection closed after %d of %d body bytes" % (got, n))
        acc += chunk
        got += len(chunk)
    return acc if out is not None else bytes(acc)


def read_head(stream):
    """Status line and headers -> (status, headers dict with lower-case names).

    A stream with readhead(limit) hands over the whole head at once, as (bytes, start, end),
    or None when it is too long; any other stream (io.BytesIO, a file) is read line by line.
    """
    rh = getattr(stream, "readhead", None)
    if rh is not None:
        got = rh(MAX_HEAD)
        if got is not None:
            return parse_head(got[0], got[1], got[2])
    line = _line(stream)
    status = parse_status_line(line)
    headers = {}
    size = len(line)
    while True:
        line = _line(stream)
        size += len(line)
        if size > MAX_HEAD:
            raise ProtocolError("response head larger than %d bytes" % MAX_HEAD)
        if line in (b"\r\n", b"\n"):
            return status, headers
        if not line:
            raise ProtocolError("connection closed inside the response headers")
        k, v = parse_header_line(line)
        _add(headers, k, v)


def read_body(stream, mode, length, max_body):
    if mode == "none":
        return b""
    if mode == "length":
        if length > max_body:
            raise BodyTooLarge("body of %d bytes exceeds max_body=%d" % (length, max_body))
        return _exact(stream, length)
    out = bytearray()  # grows in place: no copy of the whole body per piece
    if mode == "chunked":
        while True:
            n = parse_chunk_size(_line(stream))
            if n == 0:
                for _ in range(MAX_HEADERS + 1):
                    if _line(stream) in (b"\r\n", b"\n", b""):
                        return bytes(out)  # trailers are read and dropped
                raise ProtocolError("more than %d trailer lines" % MAX_HEADERS)
            if len(out) + n > max_body:
                raise BodyTooLarge("chunked body exceeds max_body=%d" % max_body)
            _exact(stream, n, out)
            if _line(stream) not in (b"\r\n", b"\n"):
                raise ProtocolError("chunk not followed by CRLF")
    while True:  # close-delimited
        chunk = stream.read(512)
        if not chunk:
            return bytes(out)
        if len(out) + len(chunk) > max_body:
            raise BodyTooLarge("body exceeds max_body=%d" % max_body)
        out += chunk


def read_response(stream, method, max_body, upgrade=False):
    """-> (status, headers, body). A few interim 1xx answers are skipped; a 101 answers
    only a request that asked to upgrade (upgrade=True), and the stream then belongs to the
    new protocol (no body is read)."""
    for _ in range(MAX_INTERIM + 1):
        status, headers = read_head(stream)
        if status == 101:
            if upgrade:
                return status, headers, b""
            raise ProtocolError("unexpected 101 Switching Protocols: the request asked for no upgrade")
        if status >= 200:
            mode, n = body_framing(method, status, headers)
            return status, headers, read_body(stream, mode, n, max_body)
    raise ProtocolError("more than %d interim (1xx) answers" % MAX_INTERIM)
