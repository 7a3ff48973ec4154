# Socket transport: one request per connection, every read bounded by the read
# timeout and by the call's deadline, the socket closed on every path.
from . import port
from . import httpcodec
from .errors import ConnectError, RequestTimeout, TLSError, ConfigError, VMMakerError


class SocketTransport:
    def __init__(self, hosts=None, ca=None, connect_timeout_ms=5000, read_timeout_ms=10000,
                 max_body=16384):
        self.hosts = hosts or {}
        self._ctx = None
        if ca is not None:
            try:  # now, so a bad CA is a config error at start-up, not a failover later
                self._ctx = port.tls_context(ca)
            except MemoryError:
                raise
            except Exception as e:
                raise ConfigError("ca is not a usable CA certificate: %s" % _short(e))
        self._addrs = {}
        self.connect_timeout_ms = connect_timeout_ms
        self.read_timeout_ms = read_timeout_ms
        self.max_body = max_body

    def _tls(self):
        if self._ctx is None:
            raise ConfigError("https needs the CA certificate: set 'ca' in the config")
        return self._ctx

    def _sockaddr(self, host, portno):
        # Addresses from the hosts map never change: resolve once. Real DNS names are
        # resolved per connection, so a DNS-level failover is seen.
        a = self._addrs.get(host)
        if a is not None:
            return a
        m = self.hosts.get(host)
        if m is None:
            return port.resolve(host, portno)
        a = self._addrs[host] = port.resolve(m[0], m[1])
        return a

    def send(self, scheme, host, portno, method, path, headers, body, left_ms):
        """-> (status, headers, body). Raises with .sent saying whether bytes left."""
        deadline = port.ticks_add(port.ticks_ms(), left_ms)
        stream = None
        sent = False
        try:
            try:
                addr = self._sockaddr(host, portno)
                stream = port.open_stream(host, addr, self._tls() if scheme == "https" else None,
                                          min(self.connect_timeout_ms, left_ms) / 1000)
            except (VMMakerError, MemoryError):
                raise  # out of RAM is not a network failure: no failover would help
            except Exception as e:
                if not isinstance(e, OSError) and not port.is_tls_error(e):
                    raise  # a bug, not the network: failing over would hide it
                if port.is_tls_error(e):
                    raise TLSError("TLS handshake with %s failed (certificate or host name "
                                   "not trusted): %s" % (host, _short(e)))
                if port.is_timeout(e):
                    raise ConnectError("connect to %s timed out" % host)
                raise ConnectError("cannot connect to %s: %s" % (host, _short(e)))
            stream.arm(deadline, self.read_timeout_ms)
            stream.write(httpcodec.request_head(method, host, path, headers, body))
            if body:
                stream.write(body)
            sent = True
            return httpcodec.read_response(stream, method, self.max_body)
        except VMMakerError as e:
            e.sent = sent
            raise
        except MemoryError:
            raise
        except Exception as e:
            if not isinstance(e, OSError) and not port.is_tls_error(e):
                raise  # a bug, not the network: failing over would hide it
            if port.is_timeout(e):
                err = RequestTimeout("no answer from %s within the read timeout (%d ms) or the "
                                     "call's deadline" % (host, self.read_timeout_ms))
            elif port.is_tls_error(e):
                err = TLSError("TLS error with %s: %s" % (host, _short(e)))
            else:
                err = ConnectError("connection to %s failed: %s" % (host, _short(e)))
            err.sent = sent
            raise err
        finally:
            if stream is not None:
                stream.close()


def _short(e):
    s = str(e).strip() or type(e).__name__
    return s[:120]
