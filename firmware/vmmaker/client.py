# The device-facing client: config in, requests-style calls out, failover inside.
import json as _json
from . import port
from . import endpoints
from . import httpcodec
from . import policy as _policy
from . import auth as _auth
from .response import Response
from .transport import SocketTransport
from .errors import ConfigError, AuthError, RedirectError, RequestTimeout, CircuitOpen, with_history

VERSION = "0.1.0"
_AGENT = "vmmaker-sdk/" + VERSION
REDIRECTS = (301, 302, 303, 307, 308)

# Every key a config may hold, with its default; anything else is a typo worth reporting.
DEFAULTS = {
    "region": None, "service": "api", "api_key": None, "token": None, "token_provider": None,
    "ca": None, "insecure_http": False, "hosts": None, "backups": None, "alternates": None,
    "allow_hosts": (), "connect_timeout": 5.0, "timeout": 10.0, "deadline": 30.0,
    "max_attempts": 4, "backoff_base": 0.2, "backoff_cap": 5.0, "retry_after_max": 30.0,
    "max_body": 16384, "max_redirects": 5, "breaker_threshold": 5, "breaker_reset": 30.0,
    "retry_budget": 10, "transport": None, "trace": None, "wifi": None, "clock": None,
    "rand": None,
}


def load_config(path):
    try:
        with open(path) as f:
            return _json.load(f)
    except OSError:
        raise ConfigError("device config %r not found: copy it to the board (README: deploy "
                          "to a real board)" % path)
    except ValueError:
        raise ConfigError("device config %r is not valid JSON" % path)


def _ms(cfg, key):
    v = cfg[key]
    if not isinstance(v, (int, float)) or v < 0:
        raise ConfigError("%s must be a number of seconds >= 0, not %r" % (key, v))
    return int(v * 1000)


class Client:
    def __init__(self, config=None, **options):
        cfg = dict(DEFAULTS)
        given = dict(config or {})
        given.update(options)
        for k in given:
            if k not in DEFAULTS:
                raise ConfigError("unknown config key %r (known: %s)" % (k, ", ".join(sorted(DEFAULTS))))
        cfg.update(given)
        if not cfg["region"]:
            raise ConfigError("config has no 'region': use one of %s" % ", ".join(endpoints.REGIONS))
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
            deadline_ms=_ms(cfg, "deadline"), backoff_base_ms=_ms(cfg, "backoff_base"),
            backoff_cap_ms=_ms(cfg, "backoff_cap"), retry_after_max_ms=_ms(cfg, "retry_after_max"),
            breaker_threshold=cfg["breaker_threshold"], breaker_reset_ms=_ms(cfg, "breaker_reset"),
            budget=cfg["retry_budget"], wall=getattr(clock, "wall_time", port.wall_time))
        self.transport = cfg["transport"] or SocketTransport(
            cfg["hosts"], cfg["ca"], _ms(cfg, "connect_timeout"), _ms(cfg, "timeout"), cfg["max_body"])

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
        method = method.upper()
        hdrs = {"User-Agent": _AGENT}
        keyed = False
        if headers:
            for k in headers:
                hdrs[k] = headers[k]
                keyed = keyed or k.lower() == "idempotency-key"
        body = data
        if json is not None:
            body = _json.dumps(json)
            hdrs.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        if method in ("POST", "PATCH") and not keyed:
            # One key for every retry and failover of this call: the server de-duplicates.
            hdrs["Idempotency-Key"] = _hex(port.random_bytes(16))
            keyed = True
        plan, path, fixed = self._target(url)
        call = self.policy.start(plan, method, keyed)
        if timeout is not None:
            clock = self.policy.clock  # the policy's clock, which may be injected
            call.deadline = clock.ticks_add(clock.ticks_ms(), int(timeout * 1000))
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
            except (RedirectError, ConfigError):
                raise
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
        if "://" not in url:
            path = url if url.startswith("/") else "/v1/" + url
            return self.plan, path, None
        scheme, host, portno, path = httpcodec.split_url(url)
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
        for hop in range(self.max_redirects + 1):
            if hop and (scheme, host, portno) != origin and h is hdrs:
                h = {}
                for k in hdrs:
                    if k.lower() not in _auth.CREDENTIAL_HEADERS:
                        h[k] = hdrs[k]  # caller's own credentials never follow a host change
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
    if "://" in loc:
        return httpcodec.split_url(loc)
    if loc.startswith("//"):
        return httpcodec.split_url(scheme + ":" + loc)
    if not loc.startswith("/"):
        raise RedirectError("unsupported relative redirect %r" % loc[:60])
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
