# CPython-only transport over `requests`, for host tools and services that already use
# it. It lives on the host side (a board has no `requests`), next to the simulator. Same send()
# contract as transport.SocketTransport: the Client still does redirects, failover and
# credentials; this only moves one request and maps errors to vmmaker's, with .sent set.
import time

from vmmaker.errors import (ConfigError, ConnectError, RequestTimeout, TLSError, ProtocolError,
                     BodyTooLarge, VMMakerError)


def _requests():
    # Imported on first use, so importing vmmaker never needs `requests`.
    import requests
    return requests


class RequestsTransport:
    """Client(transport=RequestsTransport(...)): no 'ca' needed in the Client config.

    ca: PEM text of the CA to trust instead of the system/certifi bundle (as the device
    config's 'ca'); verify: True (default bundle), False (no verification; tests only) or a
    CA bundle path, as in requests.
    """

    def __init__(self, session=None, ca=None, verify=True, connect_timeout_ms=5000,
                 read_timeout_ms=10000, max_body=16384):
        requests = _requests()
        self._own_session = session is None
        self.session = session if session is not None else requests.Session()
        self.verify = verify
        self.connect_timeout_ms = connect_timeout_ms
        self.read_timeout_ms = read_timeout_ms
        self.max_body = max_body
        if ca is not None:
            if verify is False:
                raise ConfigError("RequestsTransport: 'ca' given but verify=False")
            self.session.mount("https://", _pinned_adapter(ca))
            self.verify = True

    def close(self):
        if self._own_session:
            self.session.close()

    def __repr__(self):
        return "<vmmaker.RequestsTransport>"

    def send(self, scheme, host, port, method, path, headers, body, left_ms):
        """-> (status, headers with lower-case names, body). Raises with .sent set."""
        requests = _requests()
        exc = requests.exceptions
        if left_ms <= 0:
            raise _sent(RequestTimeout("deadline reached before talking to %s" % host), False)
        default = 443 if scheme == "https" else 80
        netloc = host if port in (None, default) else "%s:%d" % (host, port)
        url = "%s://%s%s" % (scheme, netloc, path)
        t0 = time.monotonic()
        timeout = (min(self.connect_timeout_ms, left_ms) / 1000, min(self.read_timeout_ms, left_ms) / 1000)
        resp = None
        try:
            resp = self.session.request(method, url, headers=headers, data=body, timeout=timeout,
                                        allow_redirects=False, stream=True, verify=self.verify)
            rh = {k.lower(): v for k, v in resp.headers.items()}
            cl = rh.get("content-length", "")
            if cl.isdigit() and int(cl) > self.max_body:
                raise BodyTooLarge("body of %s bytes exceeds max_body=%d" % (cl, self.max_body))
            content = b""
            for chunk in resp.iter_content(1024):
                content += chunk
                if len(content) > self.max_body:
                    raise BodyTooLarge("body exceeds max_body=%d" % self.max_body)
                if (time.monotonic() - t0) * 1000 > left_ms:
                    raise RequestTimeout("deadline reached reading the answer of %s" % host)
            return resp.status_code, rh, content
        except VMMakerError as e:
            raise _sent(e, True)
        except exc.SSLError as e:
            raise _sent(TLSError("TLS handshake with %s failed (certificate or host name not "
                                 "trusted): %s" % (host, _short(e))), False)
        except exc.ConnectTimeout:
            raise _sent(ConnectError("connect to %s timed out" % host), False)
        except exc.ReadTimeout:
            raise _sent(RequestTimeout("no answer from %s within %d ms"
                                       % (host, self.read_timeout_ms)), True)
        except exc.ConnectionError as e:
            raise _connection_error(e, host)
        except (exc.ChunkedEncodingError, exc.ContentDecodingError) as e:
            raise _sent(ProtocolError("malformed answer from %s: %s" % (host, _short(e))), True)
        except exc.InvalidHeader:
            # requests quotes the offending value, which may be the key: name nothing.
            raise _sent(ConfigError("cannot send to %s: a header name or value is invalid "
                                    "(line breaks or leading spaces)" % host), False)
        except exc.InvalidURL as e:
            raise _sent(ConfigError("cannot send to %s: %s" % (host, _short(e))), False)
        except exc.RequestException as e:
            raise _sent(ConnectError("request to %s failed: %s" % (host, _short(e))), True)
        finally:
            if resp is not None:
                resp.close()


def _connection_error(e, host):
    """requests.ConnectionError covers 'never connected' and 'broke after sending'."""
    import http.client
    from urllib3 import exceptions as u3
    reason = e.args[0] if e.args else None
    reason = getattr(reason, "reason", reason)  # MaxRetryError wraps the real cause
    if isinstance(reason, (u3.NewConnectionError, u3.ConnectTimeoutError)):
        return _sent(ConnectError("cannot connect to %s: %s" % (host, _short(reason))), False)
    if isinstance(reason, u3.ReadTimeoutError):
        return _sent(RequestTimeout("no answer from %s in time" % host), True)
    inner = reason.args[-1] if isinstance(reason, u3.ProtocolError) and reason.args else None
    if isinstance(inner, http.client.HTTPException) and not isinstance(inner, http.client.RemoteDisconnected):
        return _sent(ProtocolError("%s did not answer in HTTP/1.1: %s" % (host, _short(inner))), True)
    # Unknown cause: assume the request may have left, so a write is not blindly repeated.
    return _sent(ConnectError("connection to %s failed: %s" % (host, _short(e))), True)


def _pinned_adapter(ca):
    """An HTTPS adapter that trusts exactly the given CA (PEM), nothing from certifi."""
    import ssl
    from requests.adapters import HTTPAdapter

    ctx = ssl.create_default_context(cadata=ca.decode() if isinstance(ca, bytes) else ca)

    class PinnedCA(HTTPAdapter):
        def init_poolmanager(self, *args, **kw):
            kw["ssl_context"] = ctx
            return super().init_poolmanager(*args, **kw)

        def cert_verify(self, conn, url, verify, cert):
            super().cert_verify(conn, url, verify, cert)
            conn.ca_certs = None  # requests would add its default bundle to our context
            conn.ca_cert_dir = None

    return PinnedCA()


def _sent(err, sent):
    err.sent = sent
    return err


def _short(e):
    s = str(e).strip() or type(e).__name__
    return s[:160]
