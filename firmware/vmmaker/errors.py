# Exceptions a device application can catch. Messages name what to fix and never
# contain a secret (keys and tokens are not passed to these constructors).


class VMMakerError(Exception):
    pass


class ConfigError(VMMakerError):
    """The device config is wrong: unknown region/service, missing key, bad value."""


class AuthError(VMMakerError):
    """The server rejected the credentials (401/403 without a failover reason)."""

    def __init__(self, msg, response=None):
        super().__init__(msg)  # MicroPython exceptions have no VMMakerError.__init__
        self.response = response


class ProtocolError(VMMakerError):
    """The server's bytes are not valid HTTP/1.1 (or exceed a limit)."""


class BodyTooLarge(ProtocolError):
    pass


class ConnectError(VMMakerError):
    """A server could not be reached: refused, unreachable, or the connect timed out."""


class RequestTimeout(VMMakerError):
    """A read timed out, or the whole call ran past its deadline."""


class TLSError(VMMakerError):
    """The TLS handshake failed: bad certificate, wrong host name, untrusted CA."""


class RedirectError(VMMakerError):
    """A redirect was refused (host not allow-listed, https to http, hop limit)."""


class CircuitOpen(VMMakerError):
    """Every endpoint is isolated by its circuit breaker or retry budget; try later."""


def with_history(exc, history):
    # The final error of a call keeps its class; the attempts are attached for diagnosis.
    exc.history = history
    return exc
