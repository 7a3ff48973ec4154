# The answer a call returns: requests-style fields plus where and how it was obtained.
import json


class Response:
    def __init__(self, status, headers, content, scheme, host, path):
        self.status_code = status
        self.headers = headers          # lower-case names
        self.content = content
        self._where = (scheme, path)    # url is built only if someone asks for it
        self.host = host                # host name that sent this answer
        self.endpoint = None            # Endpoint that answered
        self.attempts = 1
        self.history = None             # [(host, status or error kind), ...] of the whole call

    @property
    def url(self):
        return self._where[0] + "://" + self.host + self._where[1]

    @property
    def server(self):
        return self.headers.get("x-vmm-server")

    @property
    def region(self):
        return self.endpoint.region if self.endpoint else None

    @property
    def role(self):
        return self.endpoint.role if self.endpoint else None

    @property
    def temporary(self):
        # Flow 6: a backup answering on cached auth says so; the data may be stale.
        return bool(self.headers.get("x-vmm-temporary"))

    @property
    def reason(self):
        return self.headers.get("x-vmm-reason")

    @property
    def ok(self):
        return self.status_code < 400

    @property
    def text(self):
        return self.content.decode()

    def json(self):
        body = self.content
        if b"\\ud" in body or b"\\uD" in body:
            body = _join_surrogates(body)
        return json.loads(body)

    def raise_for_status(self):
        if self.status_code >= 400:
            from .errors import VMMakerError
            raise VMMakerError("HTTP %d (%s) from %s" % (self.status_code, self.reason or "no reason",
                                                         self.server or self.url))

    def close(self):
        # The socket was closed when the body was read; drop the body to free RAM early.
        self.content = b""

    def __repr__(self):
        return "<Response [%d] %s>" % (self.status_code, self.server or self.url)


def _join_surrogates(body):
    # JSON writers escape characters beyond U+FFFF (emoji) as a surrogate pair "\ud83d\udcf6";
    # MicroPython's json turns each half into its own invalid UTF-8. Write such pairs as the
    # UTF-8 bytes of the character itself (valid JSON, the same value everywhere).
    out = bytearray()
    i = 0
    n = len(body)
    while True:
        j = body.find(b"\\u", i)
        if j < 0 or j + 12 > n:
            break
        k = j
        while k > 0 and body[k - 1] == 92:  # "\\ud83d" is a backslash, then text
            k -= 1
        hi = _hex4(body, j + 2)
        if (j - k) % 2 == 0 and 0xD800 <= hi < 0xDC00 and body[j + 6:j + 8] == b"\\u":
            lo = _hex4(body, j + 8)
            if 0xDC00 <= lo < 0xE000:
                cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                out += body[i:j]
                out += chr(cp).encode()
                i = j + 12
                continue
        out += body[i:j + 2]
        i = j + 2
    out += body[i:]
    return bytes(out)


def _hex4(b, at):
    try:
        return int(b[at:at + 4], 16)
    except ValueError:
        return -1
