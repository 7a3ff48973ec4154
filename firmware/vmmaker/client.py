# The device-facing client: config in, requests-style calls out, failover inside.
import json as _json
from . import port
from . import endpoints
from . import httpcodec
from . import policy as _policy
from . import auth as _auth
from .response import Response
from .transport import SocketTransport
from .errors import (ConfigError, AuthError, RedirectError, RequestTimeout, CircuitOpen,
                     ProtocolError, BodyTooLarge, with_history)

VERSION = "0.1.0"
_AGENT = "vmmaker-sdk/" + VERSION
REDIRECTS = (301, 302, 303, 307, 308)

# Headers the SDK writes itself: a caller's copy would be sent twice or contradict it.
_OWN_HEADERS = ("host", "content-length", "transfer-encoding", "connection", "x-api-key",
                "authorization", "x-vmm-attempt")


def load_config(path):
    from . import config
    return config.load(path)


class Client:
    def __init__(self, config=None, **options):
        import sys
        from . import config as _config
        cfg = _config.merge(config, options)  # durations come back as whole ms
        # Checked once: the checking code need not stay in a board's RAM, nor be alive
        # when the TLS context below needs a few KB in one piece.
        del _config
        sys.modules.pop("vmmaker.config", None)
        self.region = cfg["region"]
        self.service = cfg["service"]
        self.plan = endpoints.plan(self.region, self.service, cfg["backups"], cfg["alternates"])
        self.auth = _auth.from_config(cfg)
        self.allow = endpoints.allow_list(cfg["allow_hosts"])
        for e in self.plan:
            self.allow.add(e.host)
        self.scheme = "http" if cfg["insecure_http"] else "https"
        if self.scheme == "https" and not cfg["ca"] and cfg["transport"] is None:
            raise ConfigError("config has no 'ca' (PEM of the CA that signs VM Maker servers); "
                              "plain HTTP needs 'insecure_http': true")
        self.max_redirects = cfg["max_redirects"]
        self.trace = cfg["trace"]
        clock = cfg["clock"] or port
        self.sleep_ms = getattr(clock, "sleep_ms", port.sleep_ms)
        self.policy = _policy.Policy(
            clock, cfg["rand"] or port.random_unit, max_attempts=cfg["max_attempts"],
            deadline_ms=cfg["deadline"], backoff_base_ms=cfg["backoff_base"],
            backoff_cap_ms=cfg["backoff_cap"], retry_after_max_ms=cfg["retry_after_max"],
            breaker_threshold=cfg["breaker_threshold"], breaker_reset_ms=cfg["breaker_reset"],
            budget=cfg["retry_budget"], wall=getattr(clock, "wall_time", port.wall_time))
        self.transport = cfg["transport"] or SocketTransport(
            cfg["hosts"], cfg["ca"] if self.scheme == "https" else None,
            cfg["connect_timeout"], cfg["timeout"], cfg["max_body"])

    @classmethod
    def from_file(cls, path="vmmaker.json", **options):
        return cls(load_config(path), **options)

    def __repr__(self):
        return "<vmmaker.Client %s/%s>" % (self.region, self.service)

    def get(self, url, **kw):
        return self.request("GET", url, **kw)

    def post(self, url, **kw):
        return self.request("POST", url, **kw)

    def put(self, url, **kw):
        return self.request("PUT", url, **kw)

    def delete(self, url, **kw):
        return self.request("DELETE", url, **kw)

    def request(self, method, url, headers=None, data=None, json=None, timeout=None):
        """Send one call with failover. `url` is '/v1/x', 'x' (-> /v1/x) or a full VM Maker URL."""
        if not isinstance(method, str) or not method:
            raise ConfigError("method must be a string such as 'GET', not %r" % (method,))
        method = method.upper()
        hdrs = {"User-Agent": _AGENT}
        keyed = False
        if headers:
            if not isinstance(headers, dict):
                raise ConfigError("headers must be a dict of str to str")
            for k in headers:
                v = headers[k]
                if not isinstance(k, str) or not isinstance(v, str):
                    raise ConfigError("header %r: names and values must be str, not %s"
                                      % (k, type(v).__name__))
                lk = k.lower()
                if lk == "idempotency-key" and not v.strip():
                    raise ConfigError("an Idempotency-Key header must not be empty (leave it out "
                                      "and the SDK makes one)")
                if lk in _OWN_HEADERS:
                    raise ConfigError("header %r is set by the SDK (credentials come from the "
                                      "config)" % k)
                hdrs[k] = v
                keyed = keyed or lk == "idempotency-key"
        body = data
        if json is not None:
            if data is not None:
                raise ConfigError("pass data= or json=, not both")
            try:
                body = _json.dumps(json)
            except (TypeError, ValueError) as e:
                raise ConfigError("json= value cannot be encoded as JSON: %s" % e)
            hdrs.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        elif body is not None and not isinstance(body, (bytes, bytearray)):
            raise ConfigError("data must be bytes or str, not %s (use json= for a dict or list)"
                              % type(body).__name__)
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not 0 < timeout <= 86400):
            raise ConfigError("timeout must be a number of seconds from 0.001 to 86400, not %r"
                              % (timeout,))
        if method in ("POST", "PATCH") and not keyed:
            # One key for every retry and failover of this call: the server de-duplicates.
            hdrs["Idempotency-Key"] = _hex(port.random_bytes(16))
            keyed = True
        plan, path, fixed = self._target(url)
        call = self.policy.start(plan, method, keyed)
        if timeout is not None:
            call.set_deadline(int(timeout * 1000))
        try:
            return self._run(call, method, plan, path, fixed, hdrs, body)
        finally:
            call.close()  # a half-open probe this call did not settle is given back

    def _run(self, call, method, plan, path, fixed, hdrs, body):
        last = None
        while True:
            step = call.next()
            if step is None:
                break
            ep, sleep = step
            if sleep:
                if self.trace:
                    self.trace("wait %d ms" % sleep)
                self.sleep_ms(sleep)
            try:
                resp = self._send(method, fixed or (self.scheme, ep.host, None), path, hdrs, body, call)
            except RedirectError as e:
                raise with_history(e, call.history)  # refused by policy: failing over cannot help
            except ConfigError:
                raise
            except BodyTooLarge as e:
                # The device's own limit, not the server's fault: no failover, no blame.
                raise with_history(e, call.history)
            except Exception as e:
                kind = _kind(e)
                if kind is None:
                    raise
                if self.trace:
                    self.trace("attempt %d %s (%s): %s" % (call.attempts, ep.host, ep.role, kind))
                last = e
                if call.on_error(ep.host, kind, getattr(e, "sent", True)) == "raise":
                    raise with_history(e, call.history)
                continue
            resp.endpoint = _answered(plan, ep, resp)
            action = call.on_response(resp.endpoint.host, resp.status_code, resp.reason,
                                      resp.headers.get("retry-after"))
            if self.trace:
                self.trace("attempt %d %s (%s): %d%s" % (call.attempts, resp.endpoint.host,
                                                         resp.endpoint.role, resp.status_code,
                                                         " " + resp.reason if resp.reason else ""))
            resp.attempts = call.attempts
            resp.history = call.history
            if action == _policy.DONE:
                return resp
            if action == _policy.AUTH:
                raise AuthError("%s rejected the credentials (HTTP %d, %s): check the %s in the "
                                "device config" % (resp.endpoint.host, resp.status_code,
                                                   resp.reason or "no reason",
                                                   "token" if self.service == "own" else "api_key"),
                                resp)
            if action == _policy.REFRESH and not self.auth.refresh():
                raise AuthError("JWT expired and no token_provider is configured", resp)
            last = resp
        if isinstance(last, Response):
            return last  # the last server's own answer (e.g. a 503) is more useful than an error
        if last is None:
            raise CircuitOpen("no attempt made: %s" % call.stop)
        raise with_history(type(last)("%s; gave up: %s" % (last, call.stop)), call.history)

    def _target(self, url):
        """-> (plan, path, fixed (scheme, host, port) or None)."""
        if not isinstance(url, str) or not url:
            raise ConfigError("url must be a path such as '/v1/status' or a VM Maker URL, not %r"
                              % (url,))
        if "://" not in url:
            path = url if url.startswith("/") else "/v1/" + url
            return self.plan, path, None
        scheme, host, portno, path = httpcodec.split_url(url)
        if scheme == "http" and self.scheme == "https":
            raise ConfigError("refusing to send credentials over plain http (%s): use https, or "
                              "set 'insecure_http' for a local test server" % host)
        if host not in self.allow:
            raise ConfigError("%s is not a VM Maker host; add it to 'allow_hosts' to send "
                              "credentials there" % host)
        ep = None
        for e in self.plan:
            if e.host == host:
                ep = e
        return [ep or endpoints.Endpoint(None, self.service, "explicit", host)], path, (scheme, host, portno)

    def _send(self, method, target, path, hdrs, body, call):
        """One attempt: send, then follow redirects within the call's deadline."""
        scheme, host, portno = target
        portno = portno or (443 if scheme == "https" else 80)
        origin = (scheme, host, portno)
        h = hdrs  # copied only when a redirect must change it: a 303 or a new origin
        stripped = False
        for hop in range(self.max_redirects + 1):
            if hop and not stripped and (scheme, host, portno) != origin:
                stripped = True
                keep = {}
                for k in h:
                    if k.lower() not in _auth.CREDENTIAL_HEADERS:
                        keep[k] = h[k]  # caller's own credentials never follow a host change
                h = keep
            if host in self.allow:
                self.auth.apply(h)
            else:
                self.auth.remove(h)
            left = call.left_ms()
            if left <= 0:
                raise RequestTimeout("deadline reached after %d redirects" % hop)
            call.sent += 1
            h["X-VMM-Attempt"] = str(call.sent)
            status, rh, content = self.transport.send(scheme, host, portno, method, path, h, body, left)
            loc = rh.get("location")
            if status not in REDIRECTS or not loc:
                return Response(status, rh, content, scheme, host, path)
            nscheme, nhost, nport, npath = _resolve(loc, scheme, host, portno)
            if scheme == "https" and nscheme == "http":
                raise RedirectError("refused redirect from https to http (%s)" % nhost)
            if nhost not in self.allow:
                raise RedirectError("refused redirect to %s: not a VM Maker host (allow_hosts)" % nhost)
            call.history.append((host, status))
            if self.trace:
                self.trace("redirect %d -> %s" % (status, nhost))
            if status == 303 and method != "HEAD":
                method, body = "GET", None
                if h is hdrs:
                    h = dict(hdrs)  # the 303 changes this attempt only, not later failovers
                for k in list(h):
                    if k.lower().startswith("content-"):
                        del h[k]
            scheme, host, portno, path = nscheme, nhost, nport, npath
        raise RedirectError("more than %d redirects" % self.max_redirects)


def _resolve(loc, scheme, host, portno):
    # The Location comes from the server: a malformed one is the server's fault (a
    # ProtocolError, so the call fails over), never a ConfigError for the device owner.
    for c in loc:
        if not "!" <= c <= "~":
            raise ProtocolError("%s sent a redirect Location with spaces, control or non-ASCII "
                                "characters: %r" % (host, loc[:60]))
    try:
        if "://" in loc:
            return httpcodec.split_url(loc)
        if loc.startswith("//"):
            return httpcodec.split_url(scheme + ":" + loc)
    except ConfigError as e:
        raise ProtocolError("%s sent an unusable redirect Location: %s" % (host, e))
    if not loc.startswith("/"):
        raise ProtocolError("%s sent an unsupported relative redirect %r" % (host, loc[:60]))
    return scheme, host, portno, loc


def _answered(plan, tried, resp):
    # After a redirect the answer may come from another planned server (the backup).
    for e in plan:
        if e.host == resp.host:
            return e
    if resp.host != tried.host:
        return endpoints.Endpoint(tried.region, tried.service, "redirect", resp.host)
    return tried


def _kind(e):
    from . import errors
    if isinstance(e, errors.TLSError):
        return "tls"
    if isinstance(e, errors.RequestTimeout):
        return "timeout"
    if isinstance(e, errors.ConnectError):
        return "connect"
    if isinstance(e, errors.ProtocolError):
        return "protocol"
    return None


def _hex(b):
    import binascii
    return binascii.hexlify(b).decode()
