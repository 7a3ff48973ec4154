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
        return json.loads(self.content)

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
