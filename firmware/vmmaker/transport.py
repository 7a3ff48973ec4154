# Socket transport: one request per connection, every read bounded by the read
# timeout and by the call's deadline, the socket closed on every path.
from . import port
from . import httpcodec
from .errors import ConnectError, RequestTimeout, TLSError, ProtocolError, VMMakerError


class SocketTransport:
    def __init__(self, hosts=None, ca=None, connect_timeout_ms=5000, read_timeout_ms=10000,
                 max_body=16384):
        self.hosts = hosts or {}
        self._ca = ca
        self._ctx = None
        self.connect_timeout_ms = connect_timeout_ms
        self.read_timeout_ms = read_timeout_ms
        self.max_body = max_body

    def _tls(self):
        if self._ctx is None:
            self._ctx = port.tls_context(self._ca)
        return self._ctx

    def send(self, scheme, host, portno, method, path, headers, body, left_ms):
        """-> (status, headers, body). Raises with .sent saying whether bytes left."""
        addr = self.hosts.get(host)
        addr = (addr[0], addr[1]) if addr else (host, portno)
        t0 = port.ticks_ms()

        def budget(limit):
            left = left_ms - port.ticks_diff(port.ticks_ms(), t0)
            if left <= 0:
                raise RequestTimeout("deadline reached talking to %s" % host)
            return min(limit, left) / 1000

        stream = None
        sent = False
        try:
            try:
                stream = port.open_stream(host, addr, self._tls() if scheme == "https" else None,
                                          budget(self.connect_timeout_ms))
            except (VMMakerError, MemoryError):
                raise  # out of RAM is not a network failure: no failover would help
            except Exception as e:
                if port.is_tls_error(e):
                    raise TLSError("TLS handshake with %s failed (certificate or host name "
                                   "not trusted): %s" % (host, _short(e)))
                if port.is_timeout(e):
                    raise ConnectError("connect to %s timed out" % host)
                raise ConnectError("cannot connect to %s (%s:%s): %s" % (host, addr[0], addr[1], _short(e)))
            stream.settimeout(budget(self.read_timeout_ms))
            stream.write(httpcodec.encode_request(method, host, path, headers, None if body is None else body))
            if body:
                stream.write(body)
            sent = True
            return httpcodec.read_response(_Bounded(stream, budget, self.read_timeout_ms),
                                           method, self.max_body)
        except VMMakerError as e:
            e.sent = sent
            raise
        except MemoryError:
            raise
        except Exception as e:
            if port.is_timeout(e):
                err = RequestTimeout("no answer from %s within %d ms" % (host, self.read_timeout_ms))
            elif port.is_tls_error(e):
                err = TLSError("TLS error with %s: %s" % (host, _short(e)))
            else:
                err = ConnectError("connection to %s failed: %s" % (host, _short(e)))
            err.sent = sent
            raise err
        finally:
            if stream is not None:
                stream.close()


class _Bounded:
    """Re-arms the socket timeout before each read so the deadline also bounds slow drips."""

    def __init__(self, stream, budget, limit):
        self.s = stream
        self.budget = budget
        self.limit = limit

    def readline(self, limit):
        self.s.settimeout(self.budget(self.limit))
        return self.s.readline(limit)

    def read(self, n):
        self.s.settimeout(self.budget(self.limit))
        return self.s.read(n)


def _short(e):
    s = str(e).strip() or type(e).__name__
    return s[:120]
