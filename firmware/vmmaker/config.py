# Device config: the defaults, and the checks that turn a wrong value into a ConfigError
# saying what to write. Only Client() needs this, once; it imports the module for that and
# drops it again, so a board does not keep this code in RAM afterwards.
import json
from .errors import ConfigError
from .endpoints import REGIONS, SERVICES

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

# Durations in seconds: (smallest allowed). An ESP32's ticks wrap after ~12 days and
# ticks_diff() is right for half of that, hence one day at most.
SECONDS = {"connect_timeout": 0.001, "timeout": 0.001, "deadline": 0.001, "backoff_base": 0,
           "backoff_cap": 0, "retry_after_max": 0, "breaker_reset": 0}
MAX_SECONDS = 86400
# Counts: (smallest allowed).
COUNTS = {"max_attempts": 1, "max_redirects": 0, "breaker_threshold": 1, "retry_budget": 0,
          "max_body": 0}


def load(path):
    try:
        with open(path) as f:
            cfg = json.load(f)
    except OSError:
        raise ConfigError("device config %r not found: copy it to the board (README: deploy "
                          "to a real board)" % path)
    except ValueError:
        raise ConfigError("device config %r is not valid JSON" % path)
    if not isinstance(cfg, dict):
        raise ConfigError("device config %r must be a JSON object {...}, not %s"
                          % (path, type(cfg).__name__))
    return cfg


def seconds_ms(key, v, least=0.001):
    """A duration in seconds -> whole ms, or ConfigError naming the key and the range."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v < least \
            or v > MAX_SECONDS:
        raise ConfigError("%s must be a number of seconds from %s to %d, not %r"
                          % (key, least, MAX_SECONDS, v))
    return int(v * 1000)


def _fail(key, want, v):
    # The value itself is shown only for keys that hold no secret.
    shown = "" if key in ("api_key", "token", "wifi") else ", not %r" % (v,)
    raise ConfigError("%s must be %s%s" % (key, want, shown))


def _token(key, v):
    # API keys and JWTs are printable ASCII without spaces; a stray newline or space
    # would break the header (and must not end up in an error message).
    if not isinstance(v, str) or not v:
        _fail(key, "a non-empty string", v)
    for c in v:
        if not "!" <= c <= "~":
            _fail(key, "printable ASCII without spaces or line breaks (check for a stray "
                  "newline or space)", v)


def _strings(key, v):
    if not isinstance(v, (list, tuple)):
        _fail(key, "a list of strings", v)
    for x in v:
        if not isinstance(x, str):
            _fail(key, "a list of strings", v)


def _mapping(key, v, check):
    if not isinstance(v, dict):
        _fail(key, "an object {...}", v)
    for k in v:
        if not isinstance(k, str):
            _fail(key, "an object with string keys", v)
        check(k, v[k])


def _host_addr(host, a):
    if not (isinstance(a, (list, tuple)) and len(a) == 2 and isinstance(a[0], str)
            and isinstance(a[1], int) and not isinstance(a[1], bool) and 0 < a[1] < 65536):
        raise ConfigError("hosts[%r] must be [address, port], e.g. [\"127.0.0.1\", 8443], "
                          "not %r" % (host, a))


def _backup(host, b):
    if not isinstance(b, str) or not b:
        raise ConfigError("backups[%r] must be a host name, not %r" % (host, b))


def _alternates(region, rs):
    if isinstance(rs, str):
        raise ConfigError("alternates[%r] must be a list of regions, e.g. [%r], not a string"
                          % (region, rs))
    _strings("alternates[%r]" % region, rs)


def merge(config, options):
    """Defaults + config + keyword options -> a checked config dict (durations in ms)."""
    if config is not None and not isinstance(config, dict):
        raise ConfigError("config must be a dict, not %s" % type(config).__name__)
    given = dict(config or {})
    given.update(options)
    for k in given:
        if k not in DEFAULTS:
            raise ConfigError("unknown config key %r (known: %s)" % (k, ", ".join(sorted(DEFAULTS))))
    cfg = dict(DEFAULTS)
    cfg.update(given)
    for k in SECONDS:
        cfg[k] = seconds_ms(k, cfg[k], SECONDS[k])  # seconds in, whole ms out
    for k in COUNTS:
        v = cfg[k]
        if isinstance(v, bool) or not isinstance(v, int) or v < COUNTS[k]:
            _fail(k, "a whole number >= %d" % COUNTS[k], v)
    if not isinstance(cfg["region"], str) or not cfg["region"]:
        raise ConfigError("config has no usable 'region' (%r): use one of %s"
                          % (cfg["region"], ", ".join(REGIONS)))
    if not isinstance(cfg["service"], str):
        _fail("service", "one of %s" % ", ".join(SERVICES), cfg["service"])
    for k in ("api_key", "token"):
        if cfg[k] is not None:
            _token(k, cfg[k])
    for k in ("token_provider", "trace", "rand"):
        if cfg[k] is not None and not callable(cfg[k]):
            _fail(k, "callable", cfg[k])
    if not isinstance(cfg["insecure_http"], bool):
        _fail("insecure_http", "true or false", cfg["insecure_http"])
    ca = cfg["ca"]
    if ca is not None and not (isinstance(ca, (str, bytes)) and b"-----BEGIN CERTIFICATE-----"
                               in (ca.encode() if isinstance(ca, str) else ca)):
        _fail("ca", "the PEM text of the CA certificate (-----BEGIN CERTIFICATE-----...)",
              ca if not isinstance(ca, (str, bytes)) else ca[:30])
    if cfg["hosts"] is not None:
        _mapping("hosts", cfg["hosts"], _host_addr)
    if cfg["backups"] is not None:
        _mapping("backups", cfg["backups"], _backup)
    if cfg["alternates"] is not None:
        _mapping("alternates", cfg["alternates"], _alternates)
    _strings("allow_hosts", cfg["allow_hosts"])
    if cfg["wifi"] is not None and not isinstance(cfg["wifi"], dict):
        _fail("wifi", 'an object {"ssid": ..., "password": ...}', cfg["wifi"])
    t = cfg["transport"]
    if t is not None and not callable(getattr(t, "send", None)):
        _fail("transport", "an object with a send() method (see transport.SocketTransport)", t)
    return cfg
