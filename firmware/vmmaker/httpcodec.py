# HTTP/1.1 message codec. No sockets here: requests become bytes, and responses are
# read from any object with readline()/read(n) (a socket stream or io.BytesIO).
from .errors import ProtocolError, BodyTooLarge, ConfigError

MAX_LINE = 4096
MAX_HEADERS = 64


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
    if not line:
        raise ProtocolError("server closed the connection before answering")
    if not line.startswith(b"HTTP/1.") or len(line) < 12 or line[8] != 32:
        raise ProtocolError("not an HTTP/1.x status line: %r" % line[:40])
    code = 0
    for i in (9, 10, 11):  # three ASCII digits, read without slicing (no allocation)
        d = line[i] - 48
        if d < 0 or d > 9:
            raise ProtocolError("bad status code in %r" % line[:40])
        code = code * 10 + d
    if len(line) > 12 and line[12] not in b" \r\n":
        raise ProtocolError("bad status code in %r" % line[:40])
    if code < 100 or code > 599:
        raise ProtocolError("status code out of range: %d" % code)
    return code


def parse_header_line(line):
    # b"Name: value\r\n" -> ("name", "value"); obsolete line folding is refused.
    i = line.find(b":")
    if i <= 0 or line[0] in b" \t":
        raise ProtocolError("malformed header line %r" % line[:40])
    try:
        s = line.decode()
    except UnicodeError:
        raise ProtocolError("header line is not text: %r" % line[:40])
    if len(s) != len(line):
        # Non-ASCII: trim SP/HTAB and lower-case ASCII only, on bytes, because str.strip()
        # and str.lower() treat other characters differently on CPython and MicroPython.
        return line[:i].strip(b" \t").lower().decode(), line[i + 1:].strip(b" \t\r\n").decode()
    # Find the value's bounds on the bytes (ints, no allocation), then slice once.
    j, e = i + 1, len(line)
    while e > j and line[e - 1] in b" \t\r\n":
        e -= 1
    while j < e and line[j] in b" \t":
        j += 1
    name = s[:i]
    return name.strip(" \t").lower(), s[j:e]  # both return `name` itself when unchanged


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


def _exact(stream, n):
    # Read exactly n bytes; a peer holding the connection open after them is fine.
    buf = stream.read(n) if n else b""
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            raise ProtocolError("connection closed after %d of %d body bytes" % (len(buf), n))
        buf += chunk
    return buf


def read_head(stream):
    """Status line and headers -> (status, headers dict with lower-case names)."""
    status = parse_status_line(_line(stream))
    headers = {}
    while True:
        line = _line(stream)
        if line in (b"\r\n", b"\n"):
            return status, headers
        if not line:
            raise ProtocolError("connection closed inside the response headers")
        if len(headers) >= MAX_HEADERS:
            raise ProtocolError("more than %d response headers" % MAX_HEADERS)
        k, v = parse_header_line(line)
        if k in headers and k != "set-cookie":
            if k == "content-length" and headers[k] != v:
                raise ProtocolError("conflicting Content-Length headers")
            v = headers[k] + ", " + v if k != "content-length" else v
        headers[k] = v


def read_body(stream, mode, length, max_body):
    if mode == "none":
        return b""
    if mode == "length":
        if length > max_body:
            raise BodyTooLarge("body of %d bytes exceeds max_body=%d" % (length, max_body))
        return _exact(stream, length)
    if mode == "chunked":
        out = b""
        while True:
            n = parse_chunk_size(_line(stream))
            if n == 0:
                while _line(stream) not in (b"\r\n", b"\n", b""):
                    pass  # trailers are read and dropped
                return out
            if len(out) + n > max_body:
                raise BodyTooLarge("chunked body exceeds max_body=%d" % max_body)
            out += _exact(stream, n)
            if _line(stream) not in (b"\r\n", b"\n"):
                raise ProtocolError("chunk not followed by CRLF")
    out = b""
    while True:  # close-delimited
        chunk = stream.read(512)
        if not chunk:
            return out
        if len(out) + len(chunk) > max_body:
            raise BodyTooLarge("body exceeds max_body=%d" % max_body)
        out += chunk


def read_response(stream, method, max_body):
    """-> (status, headers, body). Interim 1xx answers are skipped."""
    while True:
        status, headers = read_head(stream)
        if status >= 200 or status == 101:
            break
    mode, n = body_framing(method, status, headers)
    return status, headers, read_body(stream, mode, n, max_body)
