# Endpoints, allow-list, credentials and device config on the device, and the rule that
# the secret never appears in a repr, a log line or an error message.
import os
from casekit import case, table, eq, ok, raises, run, Fail
import vmmaker
from vmmaker import endpoints, auth
from vmmaker.errors import ConfigError, AuthError, VMMakerError, ConnectError, CircuitOpen

KEY = "SECRET-KEY-123"
JWT = "SECRET-JWT-456"


# --- host names ------------------------------------------------------------------------------

def hosts(region, service, primary, backup):
    p = endpoints.primary_host(region, service)
    eq(p, primary)
    eq(endpoints.backup_host(p), backup)


table("host_", [
    ("tr_api", "tr", "api", "api-tr.vmmaker.com", "backup-api-tr.vmmaker.com"),
    ("fr_api", "fr", "api", "api-fr.vmmaker.com", "backup-api-fr.vmmaker.com"),
    ("usa_api", "usa", "api", "api-usa.vmmaker.com", "backup-api-usa.vmmaker.com"),
    ("de_api", "de", "api", "api-de.vmmaker.com", "backup-api-de.vmmaker.com"),
    ("tr_cloud", "tr", "cloud", "clod-api-tr.vmmaker.com", "backup-clod-api-tr.vmmaker.com"),
    ("fr_cloud", "fr", "cloud", "clod-api-fr.vmmaker.com", "backup-clod-api-fr.vmmaker.com"),
    ("usa_cloud", "usa", "cloud", "clod-api-usa.vmmaker.com", "backup-clod-api-usa.vmmaker.com"),
    ("de_cloud", "de", "cloud", "clod-api-de.vmmaker.com", "backup-clod-api-de.vmmaker.com"),
    ("tr_own", "tr", "own", "api.vmmaker.com.tr", "backup-api.vmmaker.com.tr"),
], hosts)


def plan_order(region, service, want):
    eq(["%s/%s/%s" % (e.region, e.role, e.host) for e in endpoints.plan(region, service)], want)


def pairs(service, regions):
    prefix = "api-" if service == "api" else "clod-api-"
    out = []
    for r in regions:
        out.append("%s/primary/%s%s.vmmaker.com" % (r, prefix, r))
        out.append("%s/backup/backup-%s%s.vmmaker.com" % (r, prefix, r))
    return out


table("plan_", [
    ("tr_api", "tr", "api", pairs("api", ("tr", "de", "fr"))),
    ("fr_api", "fr", "api", pairs("api", ("fr", "de", "tr"))),
    ("usa_api", "usa", "api", pairs("api", ("usa", "de", "fr"))),
    ("de_api", "de", "api", pairs("api", ("de", "fr", "tr"))),
    ("usa_cloud", "usa", "cloud", pairs("cloud", ("usa", "de", "fr"))),
    ("tr_own", "tr", "own", ["tr/primary/api.vmmaker.com.tr", "tr/backup/backup-api.vmmaker.com.tr"]),
], plan_order)


@case("plan_backup_override")
def _():
    plan = endpoints.plan("tr", "api", backups={"api-tr.vmmaker.com": "standby-tr.example.net"})
    eq(plan[1].host, "standby-tr.example.net")
    eq(plan[3].host, "backup-api-de.vmmaker.com", "other regions keep the default")


@case("plan_alternates_override")
def _():
    eq([e.region for e in endpoints.plan("tr", "api", alternates={"tr": ("usa",)})],
       ["tr", "tr", "usa", "usa"])
    eq(len(endpoints.plan("tr", "api", alternates={})), 2)


@case("plan_alternate_duplicate_region_once")
def _():
    eq([e.region for e in endpoints.plan("fr", "api", alternates={"fr": ("fr", "de", "de")})],
       ["fr", "fr", "de", "de"])


def bad_config(fn, args, must_name):
    e = raises(ConfigError, fn, *args)
    for word in must_name:
        ok(word in str(e), "message %r names %r" % (str(e), word))


table("config_error_", [
    ("unknown_region", endpoints.plan, ("xx", "api"), ("'xx'", "tr, fr, usa, de")),
    ("unknown_service", endpoints.plan, ("tr", "web"), ("'web'", "api, cloud, own")),
    ("region_case_sensitive", endpoints.plan, ("TR", "api"), ("tr, fr, usa, de",)),
    ("own_outside_tr", endpoints.plan, ("fr", "own"), ("own", "'tr'")),
    ("own_host_outside_tr", endpoints.primary_host, ("de", "own"), ("'tr'",)),
    ("unknown_alternate", endpoints.plan, ("tr", "api", None, {"tr": ("mars",)}), ("mars", "tr, fr, usa, de")),
], bad_config)


@case("allow_list_all_hosts")
def _():
    allow = endpoints.allow_list()
    eq(len(allow), 18, "4 regions x 2 services x (primary, backup) + own pair")
    for r in endpoints.REGIONS:
        for s in ("api", "cloud"):
            p = endpoints.primary_host(r, s)
            ok(p in allow and endpoints.backup_host(p) in allow, p)
    ok("api.vmmaker.com.tr" in allow and "backup-api.vmmaker.com.tr" in allow, "own pair")
    ok("evil.example.com" not in allow, "strangers are not")
    ok("vmmaker.com" not in allow, "the bare domain is not")


@case("allow_list_extra")
def _():
    ok("partner.example" in endpoints.allow_list(["partner.example"]), "explicit extra host")


@case("endpoint_repr")
def _():
    eq(repr(endpoints.plan("de", "cloud")[1]), "<de/cloud/backup backup-clod-api-de.vmmaker.com>")


# --- credentials ---------------------------------------------------------------------------

table("api_key_bad_", [("none", None), ("empty", ""), ("number", 123)],
      lambda k: bad_config(auth.ApiKey, (k,), ("api_key",)))


@case("api_key_apply_and_repr")
def _():
    a = auth.ApiKey(KEY)
    h = {}
    a.apply(h)
    eq(h, {"X-API-Key": KEY})
    eq(a.refresh(), False)
    ok(KEY not in repr(a) and KEY not in str(a), repr(a))


@case("bearer_apply_and_repr")
def _():
    b = auth.Bearer(JWT)
    h = {}
    b.apply(h)
    eq(h, {"Authorization": "Bearer " + JWT})
    eq(b.refresh(), False, "no provider: cannot refresh")
    ok(JWT not in repr(b) and JWT not in str(b), repr(b))


@case("bearer_missing")
def _():
    bad_config(auth.Bearer, (None, None), ("token",))


@case("bearer_provider")
def _():
    tokens = ["t1", "t2"]
    b = auth.Bearer(provider=lambda: tokens.pop(0))
    h = {}
    b.apply(h)
    eq(h["Authorization"], "Bearer t1")
    eq(b.refresh(), True)
    b.apply(h)
    eq(h["Authorization"], "Bearer t2")


@case("bearer_provider_failure_hides_message")
def _():
    def boom():
        raise ValueError("could not log in with password " + JWT)
    e = raises(AuthError, auth.Bearer, None, boom)
    ok("ValueError" in str(e) and JWT not in str(e), str(e))


@case("bearer_provider_empty")
def _():
    raises(AuthError, auth.Bearer, None, lambda: "")


@case("from_config")
def _():
    ok(isinstance(auth.from_config({"service": "own", "token": JWT}), auth.Bearer), "own -> JWT")
    ok(isinstance(auth.from_config({"service": "api", "api_key": KEY}), auth.ApiKey), "api -> key")
    ok(isinstance(auth.from_config({"service": "cloud", "api_key": KEY}), auth.ApiKey), "cloud -> key")


# --- Client config -------------------------------------------------------------------------

class NoTransport:
    def send(self, *a):
        raise Fail("nothing should be sent")


def client_error(cfg, must_name):
    e = raises(ConfigError, vmmaker.Client, cfg)
    for word in must_name:
        ok(word in str(e), "message %r names %r" % (str(e), word))
    ok(KEY not in str(e), "no secret in %r" % str(e))


table("client_config_", [
    ("no_region", {"api_key": KEY, "insecure_http": True}, ("region", "tr, fr, usa, de")),
    ("unknown_region", {"region": "uk", "api_key": KEY, "insecure_http": True}, ("'uk'", "usa")),
    ("unknown_service", {"region": "tr", "service": "ftp", "api_key": KEY, "insecure_http": True},
     ("'ftp'", "cloud")),
    ("own_outside_tr", {"region": "usa", "service": "own", "token": JWT, "insecure_http": True},
     ("own",)),
    ("missing_api_key", {"region": "tr", "insecure_http": True}, ("api_key",)),
    ("empty_api_key", {"region": "tr", "api_key": "", "insecure_http": True}, ("api_key",)),
    ("missing_token", {"region": "tr", "service": "own", "insecure_http": True}, ("token",)),
    ("unknown_key", {"region": "tr", "api_key": KEY, "regoin": "fr", "insecure_http": True},
     ("'regoin'", "region")),
    ("https_without_ca", {"region": "tr", "api_key": KEY}, ("'ca'", "insecure_http")),
    ("negative_timeout", {"region": "tr", "api_key": KEY, "insecure_http": True, "timeout": -1},
     ("timeout",)),
    ("timeout_not_number", {"region": "tr", "api_key": KEY, "insecure_http": True, "deadline": "30"},
     ("deadline",)),
], client_error)


def bad(**kw):
    cfg = {"region": "tr", "api_key": KEY, "insecure_http": True}
    cfg.update(kw)
    return cfg


# Every wrong type or range is a ConfigError naming the key, never a TypeError later.
table("client_config_bad_", [
    ("region_int", bad(region=5), ("region",)),
    ("service_int", bad(service=1), ("service",)),
    ("zero_timeout", bad(timeout=0), ("timeout",)),
    ("zero_connect_timeout", bad(connect_timeout=0), ("connect_timeout",)),
    ("nan_deadline", bad(deadline=float("nan")), ("deadline",)),
    ("inf_deadline", bad(deadline=float("inf")), ("deadline",)),
    ("huge_deadline", bad(deadline=1e30), ("deadline",)),
    ("bool_deadline", bad(deadline=True), ("deadline",)),
    ("attempts_zero", bad(max_attempts=0), ("max_attempts",)),
    ("attempts_str", bad(max_attempts="4"), ("max_attempts",)),
    ("redirects_str", bad(max_redirects="5"), ("max_redirects",)),
    ("budget_float", bad(retry_budget=1.5), ("retry_budget",)),
    ("max_body_str", bad(max_body="100"), ("max_body",)),
    ("hosts_list", bad(hosts=["a"]), ("hosts",)),
    ("hosts_short", bad(hosts={"api-tr.vmmaker.com": ["127.0.0.1"]}), ("hosts", "api-tr")),
    ("hosts_port_str", bad(hosts={"api-tr.vmmaker.com": ["127.0.0.1", "80"]}), ("hosts",)),
    ("backups_list", bad(backups=["x"]), ("backups",)),
    ("alternates_list", bad(alternates=["de"]), ("alternates",)),
    ("alternates_none", bad(alternates={"tr": None}), ("alternates",)),
    ("alternates_str", bad(alternates={"tr": "de"}), ("alternates", "list")),
    ("allow_hosts_none", bad(allow_hosts=None), ("allow_hosts",)),
    ("allow_hosts_int", bad(allow_hosts=5), ("allow_hosts",)),
    ("token_int", {"region": "tr", "service": "own", "token": 123, "insecure_http": True}, ("token",)),
    ("provider_not_callable", {"region": "tr", "service": "own", "token_provider": "x",
                               "insecure_http": True}, ("token_provider",)),
    ("insecure_str", bad(insecure_http="yes"), ("insecure_http",)),
    ("ca_garbage", {"region": "tr", "api_key": KEY, "ca": 5}, ("ca",)),
    ("ca_not_pem", {"region": "tr", "api_key": KEY, "ca": "hello"}, ("ca", "PEM")),
    ("wifi_str", bad(wifi="ssid"), ("wifi",)),
    ("transport_no_send", bad(transport=object()), ("transport",)),
    ("config_not_dict", ["region", "tr"], ("dict",)),
], client_error)


@case("client_config_key_with_newline_never_shown")
def _():
    # A stray newline or space in the key would break the header: refused at start-up,
    # and the message does not repeat the secret.
    for k in (KEY + "\n", " " + KEY, KEY + " x", KEY + "\u00e9"):
        e = raises(ConfigError, vmmaker.Client, bad(api_key=k))
        no_secret(KEY, "ConfigError for a malformed key", str(e))
        ok("api_key" in str(e), str(e))


# A CA certificate made once with trustme: the client parses its CA at start-up.
TEST_CA = """-----BEGIN CERTIFICATE-----
MIIByTCCAW+gAwIBAgIUU4izyYIQZErP7xHIa4dfGW4Mz54wCgYIKoZIzj0EAwIw
QDEXMBUGA1UECgwOdHJ1c3RtZSB2MS4yLjExJTAjBgNVBAsMHFRlc3RpbmcgQ0Eg
IzNtNnZyaTVhY0JLdXp4X2gwIBcNMDAwMTAxMDAwMDAwWhgPMzAwMDAxMDEwMDAw
MDBaMEAxFzAVBgNVBAoMDnRydXN0bWUgdjEuMi4xMSUwIwYDVQQLDBxUZXN0aW5n
IENBICMzbTZ2cmk1YWNCS3V6eF9oMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
isD2koN9YRUvjTLynxrCY6NkMMp04x9/5TPXzd0A4oBg9ks2w3+NkPdL/rd+EtiM
kkq/WwpzLeHe5uxJJH7nmqNFMEMwHQYDVR0OBBYEFKFg1NGCOjiWNxyBhl2zLa/K
dTE7MBIGA1UdEwEB/wQIMAYBAf8CAQkwDgYDVR0PAQH/BAQDAgGGMAoGCCqGSM49
BAMCA0gAMEUCIQDCybwI89Y+t6+sYgzBF7l6HzpimW7iL5bdng6yzVqLYAIgOh3k
QV1fd9MpRR07u/5Sy+i8ZbGXwTa0EDuweZRbQus=
-----END CERTIFICATE-----

"""


@case("client_config_ok_variants")
def _():
    vmmaker.Client({"region": "tr", "api_key": KEY, "insecure_http": True})
    vmmaker.Client({"region": "tr", "api_key": KEY, "ca": TEST_CA})
    vmmaker.Client(region="de", service="cloud", api_key=KEY, transport=NoTransport())
    c = vmmaker.Client({"region": "tr", "api_key": "x"}, api_key=KEY, transport=NoTransport())
    eq((c.region, c.service), ("tr", "api"), "keyword options override the dict")


@case("client_backup_override_is_allow_listed")
def _():
    c = vmmaker.Client(region="tr", api_key=KEY, transport=NoTransport(),
                       backups={"api-tr.vmmaker.com": "standby.example.net"})
    ok("standby.example.net" in c.allow, "a configured backup may receive the key")
    eq(c.plan[1].host, "standby.example.net")


@case("client_absolute_url_outside_allow_list")
def _():
    c = vmmaker.Client(region="tr", api_key=KEY, transport=NoTransport())
    e = raises(ConfigError, c.get, "https://evil.example.com/v1/x")
    ok("evil.example.com" in str(e) and "allow_hosts" in str(e), str(e))


@case("client_from_file")
def _():
    with open("cfg_ok.json", "w") as f:
        f.write('{"region": "fr", "service": "cloud", "api_key": "%s", "insecure_http": true}' % KEY)
    c = vmmaker.Client.from_file("cfg_ok.json")
    eq((c.region, c.service, c.plan[0].host), ("fr", "cloud", "clod-api-fr.vmmaker.com"))
    e = raises(ConfigError, vmmaker.Client.from_file, "no_such_file.json")
    ok("no_such_file.json" in str(e), str(e))
    with open("cfg_bad.json", "w") as f:
        f.write('{"region": "fr",')
    e = raises(ConfigError, vmmaker.Client.from_file, "cfg_bad.json")
    ok("JSON" in str(e), str(e))


# --- the secret never shows ------------------------------------------------------------------

def closed_port_client(**kw):
    port = int(os.getenv("VMM_CLOSED_PORT") or "1")
    lines = []
    cfg = {"region": "tr", "insecure_http": True, "connect_timeout": 1, "timeout": 1,
           "deadline": 5, "max_attempts": 3, "backoff_base": 0.001, "backoff_cap": 0.002,
           "trace": lines.append}
    cfg.update(kw)
    c = vmmaker.Client(cfg)
    for e in c.plan:
        c.transport.hosts[e.host] = ("127.0.0.1", port)
    return c, lines


def no_secret(secret, what, text):
    if secret in text:
        raise Fail("%s contains the secret: %s" % (what, text))


def secret_check(secret, **kw):
    c, lines = closed_port_client(**kw)
    no_secret(secret, "repr(client)", repr(c))
    no_secret(secret, "repr(auth)", repr(c.auth))
    no_secret(secret, "str(auth)", str(c.auth))
    e = raises(ConnectError, c.get, "/v1/status")
    no_secret(secret, "str(error)", str(e))
    no_secret(secret, "repr(error)", repr(e))
    no_secret(secret, "error.history", repr(getattr(e, "history", None)))
    want = min(3, len(c.plan))  # own has two servers, api six
    ok(len(e.history) == want, "%d attempts were made: %r" % (want, e.history))
    e2 = raises(VMMakerError, c.post, "/v1/data", json={"v": 1})
    no_secret(secret, "str(post error)", str(e2))
    e3 = raises(ConfigError, c.get, "https://evil.example.com/v1/x")
    no_secret(secret, "str(config error)", str(e3))
    ok(lines, "the trace saw the attempts")
    for line in lines:
        no_secret(secret, "trace line", line)


@case("secret_api_key_never_shown")
def _():
    secret_check(KEY, api_key=KEY)


@case("secret_jwt_never_shown")
def _():
    secret_check(JWT, service="own", token=JWT)


@case("secret_not_in_circuit_open")
def _():
    c, lines = closed_port_client(api_key=KEY, breaker_threshold=1, max_attempts=6)
    raises(ConnectError, c.get, "/v1/a")  # one failure each opens all six breakers
    e = raises(CircuitOpen, c.get, "/v1/b")
    no_secret(KEY, "str(CircuitOpen)", str(e))
    ok("circuit breaker" in str(e), str(e))


@case("client_config_unusable_ca")
def _():
    # A CA that does not parse is a config error at start-up, not a TLS failure (and a
    # failover) at the first call.
    e = raises(ConfigError, vmmaker.Client, {"region": "tr", "api_key": KEY,
                                             "ca": "-----BEGIN CERTIFICATE-----\nnope\n"})
    ok("ca" in str(e), str(e))


if __name__ == "__main__":
    run()

