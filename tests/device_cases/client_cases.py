# The Client's own logic against an in-process fake transport: redirects and the
# allow-list, credentials, idempotency keys, token refresh, failover and response metadata.
from casekit import case, table, eq, ok, raises, run, Fail, FakeClock
import vmmaker
from vmmaker import httpcodec
from vmmaker.errors import (ConfigError, AuthError, RedirectError, ConnectError, RequestTimeout,
                            ProtocolError, TLSError, BodyTooLarge)

KEY = "K-123"
PRI, BAK = "api-tr.vmmaker.com", "backup-api-tr.vmmaker.com"
DE1 = "api-de.vmmaker.com"
OWN, OWNB = "api.vmmaker.com.tr", "backup-api.vmmaker.com.tr"


def Clock():
    return FakeClock(t=5000000)


def A(status, headers=None, body=b""):
    return (status, headers or {}, body)


def E(cls, sent, msg="simulated"):
    e = cls(msg)
    e.sent = sent
    return e


class Fake:
    """Answers from a script of (expected host, answer or exception); records every send."""

    def __init__(self, script, clock=None, spend_ms=0):
        self.script = list(script)
        self.sent = []
        self.clock = clock
        self.spend_ms = spend_ms

    def send(self, scheme, host, port, method, path, headers, body, left_ms):
        httpcodec.encode_request(method, host, path, headers, body)  # what would go on the wire
        self.sent.append({"scheme": scheme, "host": host, "port": port, "method": method,
                          "path": path, "headers": dict(headers), "body": body, "left_ms": left_ms})
        if not self.script:
            raise Fail("unexpected request %s %s://%s%s" % (method, scheme, host, path))
        want, answer = self.script.pop(0)
        if want != host:
            raise Fail("request went to %s, the script expected %s" % (host, want))
        if self.clock is not None:
            self.clock.t += self.spend_ms
        if isinstance(answer, Exception):
            raise answer
        return answer

    def hosts(self):
        return [s["host"] for s in self.sent]

    def done(self):
        eq(self.script, [], "every scripted answer was used")


def client(script, **kw):
    clock = Clock()
    fake = Fake(script, clock)
    cfg = {"region": "tr", "api_key": KEY, "transport": fake, "clock": clock, "rand": lambda: 0.5,
           "backoff_base": 0.2}
    cfg.update(kw)
    return vmmaker.Client(cfg), fake, clock


def hdr(sent, name):
    for k in sent["headers"]:
        if k.lower() == name.lower():
            return sent["headers"][k]
    return None


def ok200(server="tr/api/primary", body=b'{"data": 1}', **extra):
    h = {"x-vmm-server": server}
    h.update(extra)
    return A(200, h, body)


def err(status, reason=None, **extra):
    h = {}
    if reason:
        h["x-vmm-reason"] = reason
    h.update(extra)
    return A(status, h, b"{}")


# --- plain calls -----------------------------------------------------------------------------

@case("get_primary")
def _():
    c, f, clock = client([(PRI, ok200())])
    r = c.get("/v1/status")
    eq((r.status_code, r.json(), r.ok, r.role, r.region, r.attempts, r.temporary),
       (200, {"data": 1}, True, "primary", "tr", 1, False))
    s = f.sent[0]
    eq((s["scheme"], s["host"], s["port"], s["method"], s["path"], s["body"]),
       ("https", PRI, 443, "GET", "/v1/status", None))
    eq(hdr(s, "X-API-Key"), KEY)
    eq(hdr(s, "X-VMM-Attempt"), "1")
    ok(hdr(s, "User-Agent").startswith("vmmaker-sdk/"), "user agent")
    eq(hdr(s, "Idempotency-Key"), None, "GET carries no idempotency key")
    eq(hdr(s, "Authorization"), None)
    eq(s["left_ms"], 30000, "the whole deadline is left")
    eq(clock.slept, [], "no sleeping on the first attempt")


@case("short_path_gets_v1")
def _():
    c, f, clock = client([(PRI, ok200())])
    c.get("status")
    eq(f.sent[0]["path"], "/v1/status")


@case("insecure_http_scheme")
def _():
    c, f, clock = client([(PRI, ok200())], insecure_http=True)
    c.get("/v1/x")
    eq((f.sent[0]["scheme"], f.sent[0]["port"]), ("http", 80))


@case("absolute_url_to_backup")
def _():
    c, f, clock = client([(BAK, ok200("tr/api/backup"))])
    r = c.get("https://backup-api-tr.vmmaker.com/v1/x")
    eq((f.sent[0]["host"], f.sent[0]["path"], r.role), (BAK, "/v1/x", "backup"))
    eq(hdr(f.sent[0], "X-API-Key"), KEY)


@case("json_body_and_response_helpers")
def _():
    c, f, clock = client([(PRI, ok200(body=b'{"ok": true}'))])
    r = c.put("/v1/x", json={"a": [1, 2]})
    s = f.sent[0]
    eq((s["method"], s["body"], hdr(s, "Content-Type")), ("PUT", b'{"a": [1, 2]}', "application/json"))
    eq(hdr(s, "Idempotency-Key"), None, "PUT is idempotent: no key")
    eq((r.text, r.json(), r.server), ('{"ok": true}', {"ok": True}, "tr/api/primary"))
    r.raise_for_status()
    r.close()
    eq(r.content, b"")


@case("raw_data_body")
def _():
    c, f, clock = client([(PRI, ok200())])
    c.post("/v1/blob", data=b"\x00\x01", headers={"Content-Type": "application/octet-stream"})
    eq((f.sent[0]["body"], hdr(f.sent[0], "Content-Type")), (b"\x00\x01", "application/octet-stream"))


# --- redirects -------------------------------------------------------------------------------

@case("redirect_302_same_host")
def _():
    c, f, clock = client([(PRI, A(302, {"location": "/v1/moved"})), (PRI, ok200())])
    r = c.get("/v1/x")
    eq(r.status_code, 200)
    eq([(s["host"], s["method"], s["path"]) for s in f.sent], [(PRI, "GET", "/v1/x"), (PRI, "GET", "/v1/moved")])
    eq(hdr(f.sent[1], "X-API-Key"), KEY)
    eq(r.attempts, 1, "a redirect is part of the same attempt")
    eq(r.url, "https://api-tr.vmmaker.com/v1/moved")


@case("redirect_201_location_is_answer")
def _():
    c, f, clock = client([(PRI, A(201, {"location": "/v1/items/7"}, b"{}"))])
    r = c.post("/v1/items", json={"n": 7})
    eq((r.status_code, r.headers["location"], len(f.sent)), (201, "/v1/items/7", 1))
    f.done()


@case("redirect_3xx_without_location_is_answer")
def _():
    c, f, clock = client([(PRI, A(302, {}, b"moved?"))])
    eq(c.get("/v1/x").status_code, 302)


@case("redirect_304_is_answer")
def _():
    c, f, clock = client([(PRI, A(304, {"location": "/v1/y"}))])
    eq(c.get("/v1/x").status_code, 304)


table("redirect_refused_", [
    ("not_allow_listed", "https://evil.example.com/v1/x", "evil.example.com"),
    ("lookalike_host", "https://api-tr.vmmaker.com.evil.example/v1/x", "evil.example"),
    ("https_to_http", "http://backup-api-tr.vmmaker.com/v1/x", "http"),
    ("https_to_http_same_host", "http://api-tr.vmmaker.com/v1/x", "http"),
], lambda loc, word: redirect_refused(loc, word))


def redirect_refused(loc, word):
    c, f, clock = client([(PRI, A(302, {"location": loc}))])
    e = raises(RedirectError, c.get, "/v1/x")
    ok(word in str(e), "message %r names %r" % (str(e), word))
    ok(KEY not in str(e), "no key in the message")
    eq(f.hosts(), [PRI], "nothing was sent anywhere else (credentials included)")


@case("redirect_loop_stops")
def _():
    c, f, clock = client([(PRI, A(302, {"location": "/v1/x"}))] * 4, max_redirects=3)
    e = raises(RedirectError, c.get, "/v1/x")
    ok("3" in str(e), str(e))
    eq(len(f.sent), 4, "the first request and three hops")


@case("redirect_zero_hops_allowed")
def _():
    c, f, clock = client([(PRI, A(302, {"location": "/v1/y"}))], max_redirects=0)
    raises(RedirectError, c.get, "/v1/x")
    eq(len(f.sent), 1)


@case("redirect_303_post_becomes_get")
def _():
    c, f, clock = client([(PRI, A(303, {"location": "/v1/result/1"})), (PRI, ok200())])
    c.post("/v1/jobs", json={"a": 1})
    first, second = f.sent
    eq((first["method"], first["body"], hdr(first, "Content-Type")), ("POST", b'{"a": 1}', "application/json"))
    eq((second["method"], second["body"], second["path"]), ("GET", None, "/v1/result/1"))
    eq([k for k in second["headers"] if k.lower().startswith("content-")], [], "no Content-* headers")


@case("redirect_303_then_failover_resends_post")
def _():
    # The 303 target fails; the failover repeats the original POST (same key) on the backup.
    c, f, clock = client([(PRI, A(303, {"location": "/v1/result/1"})),
                          (PRI, err(503, "network-error")),
                          (BAK, ok200("tr/api/backup"))])
    r = c.post("/v1/jobs", json={"a": 1})
    eq(r.role, "backup")
    third = f.sent[2]
    eq((third["method"], third["path"], third["body"]), ("POST", "/v1/jobs", b'{"a": 1}'))
    eq(hdr(third, "Content-Type"), "application/json", "content headers are back for the new attempt")
    eq(hdr(third, "Idempotency-Key"), hdr(f.sent[0], "Idempotency-Key"))


table("redirect_keeps_method_and_body_", [
    ("301", 301), ("302", 302), ("307", 307), ("308", 308),
], lambda status: keeps_body(status))


def keeps_body(status):
    c, f, clock = client([(PRI, A(status, {"location": "https://backup-api-tr.vmmaker.com/v1/jobs"})),
                          (BAK, ok200("tr/api/backup"))])
    c.post("/v1/jobs", json={"a": 1})
    first, second = f.sent
    eq((second["host"], second["method"], second["body"]), (BAK, "POST", b'{"a": 1}'))
    eq(hdr(second, "Content-Type"), "application/json")
    eq(hdr(second, "Idempotency-Key"), hdr(first, "Idempotency-Key"), "same key after the hop")


@case("redirect_strips_caller_credentials_on_host_change")
def _():
    c, f, clock = client([(PRI, A(302, {"location": "https://backup-api-tr.vmmaker.com/v1/x"})),
                          (BAK, ok200("tr/api/backup"))])
    r = c.get("/v1/x", headers={"Proxy-Authorization": "Basic abc", "Cookie": "s=1", "X-Trace": "t"})
    first, second = f.sent
    eq((hdr(first, "Proxy-Authorization"), hdr(first, "Cookie")), ("Basic abc", "s=1"))
    eq((hdr(second, "Proxy-Authorization"), hdr(second, "Cookie")), (None, None),
       "caller credentials dropped")
    eq(hdr(second, "X-API-Key"), KEY, "the SDK key is re-attached for an allow-listed host")
    eq(hdr(second, "X-Trace"), "t", "other headers kept")
    eq((r.role, r.region), ("backup", "tr"), "the answer is attributed to the backup")


@case("redirect_port_change_strips_and_reattaches")
def _():
    c, f, clock = client([(PRI, A(307, {"location": "https://api-tr.vmmaker.com:8443/v1/x"})),
                          (PRI, ok200())])
    c.get("/v1/x", headers={"Cookie": "s=1"})
    eq((f.sent[1]["port"], hdr(f.sent[1], "Cookie"), hdr(f.sent[1], "X-API-Key")), (8443, None, KEY))


@case("redirect_same_origin_keeps_caller_headers")
def _():
    c, f, clock = client([(PRI, A(302, {"location": "/v1/y"})), (PRI, ok200())])
    c.get("/v1/x", headers={"Cookie": "s=1"})
    eq(hdr(f.sent[1], "Cookie"), "s=1")


@case("redirect_scheme_relative")
def _():
    c, f, clock = client([(PRI, A(302, {"location": "//backup-api-tr.vmmaker.com/v1/z"})),
                          (BAK, ok200("tr/api/backup"))])
    c.get("/v1/x")
    eq((f.sent[1]["scheme"], f.sent[1]["host"], f.sent[1]["path"]), ("https", BAK, "/v1/z"))


@case("redirect_to_extra_allowed_host")
def _():
    c, f, clock = client([(PRI, A(302, {"location": "https://files.partner.example/v1/blob"})),
                          ("files.partner.example", ok200(""))], allow_hosts=["files.partner.example"])
    r = c.get("/v1/x")
    eq(hdr(f.sent[1], "X-API-Key"), KEY, "explicitly allow-listed hosts get the key")
    eq(r.role, "redirect")


table("redirect_malformed_", [
    ("relative_no_slash", "moved/elsewhere", "relative"),
    ("ftp", "ftp://backup-api-tr.vmmaker.com/x", "ftp"),
    ("bad_port", "https://backup-api-tr.vmmaker.com:abc/x", "port"),
    ("injection", "/v1/x HTTP/1.1\rX-Evil: 1", "control"),
    ("space", "/v1/a b", "spaces"),
    ("non_ascii", "/v1/\u00e4", "non-ASCII"),
], lambda loc, word: redirect_malformed(loc, word))


def redirect_malformed(loc, word):
    # A broken Location is the server's fault: a ProtocolError naming it (never a
    # ConfigError for the device owner), the injected line never goes out, and the call
    # fails over to the backup like for any other broken answer.
    c, f, clock = client([(PRI, A(302, {"location": loc}))], max_attempts=1)
    e = raises(ProtocolError, c.get, "/v1/x")
    ok(word in str(e), "message %r names %r" % (str(e), word))
    eq(len(f.sent), 1, "nothing followed the broken Location")
    c, f, clock = client([(PRI, A(302, {"location": loc})), (BAK, ok200("tr/api/backup"))])
    r = c.get("/v1/x")
    eq((r.status_code, r.role, f.hosts()), (200, "backup", [PRI, BAK]))


@case("redirect_history_records_hops")
def _():
    c, f, clock = client([(OWN, err(500, "db-error")),
                          (OWN, A(302, {"location": "https://backup-api.vmmaker.com.tr/v1/x",
                                        "x-vmm-reason": "failover"})),
                          (OWNB, ok200("tr/own/backup"))], service="own", token="jwt-1")
    r = c.get("/v1/x")
    eq((r.status_code, r.role, r.attempts), (200, "backup", 2))
    eq(r.history, [(OWN, 500), (OWN, 302), (OWNB, 200)])
    eq(hdr(f.sent[2], "Authorization"), "Bearer jwt-1")


# --- idempotency keys ----------------------------------------------------------------------

def is_hex32(s):
    return s is not None and len(s) == 32 and not s.strip("0123456789abcdef")


@case("post_key_same_across_retries")
def _():
    c, f, clock = client([(PRI, err(503, "network-error")), (BAK, err(504, "timeout")),
                          (DE1, ok200("de/api/primary"))])
    r = c.post("/v1/data", json={"v": 1})
    keys = [hdr(s, "Idempotency-Key") for s in f.sent]
    ok(is_hex32(keys[0]), "32 hex chars: %r" % keys[0])
    eq(keys, [keys[0]] * 3)
    eq([hdr(s, "X-VMM-Attempt") for s in f.sent], ["1", "2", "3"])
    eq([s["body"] for s in f.sent], [b'{"v": 1}'] * 3)
    eq((r.region, r.role, r.attempts), ("de", "primary", 3))


@case("post_keys_differ_between_calls")
def _():
    c, f, clock = client([(PRI, ok200()), (PRI, ok200())])
    c.post("/v1/a", json=1)
    c.post("/v1/a", json=1)
    ok(hdr(f.sent[0], "Idempotency-Key") != hdr(f.sent[1], "Idempotency-Key"), "fresh key per call")


@case("patch_gets_key_caller_key_kept")
def _():
    c, f, clock = client([(PRI, ok200()), (PRI, ok200())])
    c.request("PATCH", "/v1/a", json={})
    ok(is_hex32(hdr(f.sent[0], "Idempotency-Key")), "PATCH gets a key")
    c.post("/v1/a", json={}, headers={"idempotency-key": "caller-chosen"})
    eq(hdr(f.sent[1], "Idempotency-Key"), "caller-chosen")
    eq(len([k for k in f.sent[1]["headers"] if k.lower() == "idempotency-key"]), 1)


@case("post_connect_error_retried")
def _():
    c, f, clock = client([(PRI, E(ConnectError, False)), (BAK, ok200("tr/api/backup"))])
    eq(c.post("/v1/a", json={}).role, "backup")


@case("post_timeout_after_send_retried_with_key")
def _():
    c, f, clock = client([(PRI, E(RequestTimeout, True)), (BAK, ok200("tr/api/backup"))])
    eq(c.post("/v1/a", json={}).role, "backup")
    eq(hdr(f.sent[0], "Idempotency-Key"), hdr(f.sent[1], "Idempotency-Key"))


# --- failover ----------------------------------------------------------------------------------

table("transport_error_goes_to_backup_", [
    ("connect", ConnectError, False), ("tls", TLSError, False),
    ("timeout", RequestTimeout, True), ("protocol", ProtocolError, True),
], lambda cls, sent: transport_error(cls, sent))


def transport_error(cls, sent):
    c, f, clock = client([(PRI, E(cls, sent)), (BAK, ok200("tr/api/backup"))])
    r = c.get("/v1/x")
    eq((r.role, r.attempts, f.hosts()), ("backup", 2, [PRI, BAK]))
    eq(r.history[0][0], PRI)


@case("unreachable_region_goes_to_alternate")
def _():
    c, f, clock = client([(PRI, E(ConnectError, False)), (BAK, E(ConnectError, False)),
                          (DE1, ok200("de/api/primary"))])
    r = c.get("/v1/x")
    eq((r.region, r.role), ("de", "primary"))


@case("all_unreachable_raises_with_history")
def _():
    c, f, clock = client([(PRI, E(ConnectError, False)), (BAK, E(ConnectError, False)),
                          (DE1, E(ConnectError, False))], max_attempts=3)
    e = raises(ConnectError, c.get, "/v1/x")
    ok("gave up" in str(e) and "max_attempts" in str(e), str(e))
    eq(e.history, [(PRI, "connect"), (BAK, "connect"), (DE1, "connect")])


@case("all_failing_returns_last_answer")
def _():
    c, f, clock = client([(PRI, err(503)), (BAK, err(503))], max_attempts=2)
    r = c.get("/v1/x")
    eq((r.status_code, r.role, r.ok), (503, "backup", False))
    raises(vmmaker.VMMakerError, r.raise_for_status)


@case("backoff_sleeps_through_clock")
def _():
    c, f, clock = client([(PRI, err(503)), (BAK, ok200("tr/api/backup"))])
    c.get("/v1/x")
    eq(clock.slept, [100], "U=0.5 x base 200 ms")


@case("retry_after_respected_next_call")
def _():
    c, f, clock = client([(PRI, err(429, "overload", **{"retry-after": "20"})),
                          (BAK, ok200("tr/api/backup")), (BAK, ok200("tr/api/backup"))])
    c.get("/v1/x")
    r = c.get("/v1/y")
    eq(r.role, "backup", "the primary is fenced for 20 s")
    eq(f.hosts(), [PRI, BAK, BAK])


@case("regional_outage_answer_from_alternate_region")
def _():
    c, f, clock = client([("clod-api-usa.vmmaker.com", err(503, "regional-outage")),
                          ("clod-api-de.vmmaker.com", ok200("de/cloud/primary"))],
                         region="usa", service="cloud")
    r = c.get("/v1/x")
    eq((r.region, r.role, r.server, r.attempts), ("de", "primary", "de/cloud/primary", 2))


@case("auth_down_backup_is_temporary")
def _():
    c, f, clock = client([("api-usa.vmmaker.com", err(502, "auth-down")),
                          ("backup-api-usa.vmmaker.com",
                           ok200("usa/api/backup", **{"x-vmm-temporary": "cached-auth"}))], region="usa")
    r = c.get("/v1/x")
    eq((r.role, r.region, r.attempts, r.temporary), ("backup", "usa", 2, True))
    eq(r.history, [("api-usa.vmmaker.com", 502), ("backup-api-usa.vmmaker.com", 200)])


@case("security_breach_isolates_primary")
def _():
    c, f, clock = client([("api-de.vmmaker.com", err(403, "security-breach")),
                          ("backup-api-de.vmmaker.com", ok200("de/api/backup")),
                          ("backup-api-de.vmmaker.com", ok200("de/api/backup"))], region="de")
    eq(c.get("/v1/x").role, "backup")
    eq(c.get("/v1/x").role, "backup", "the primary stays isolated")


@case("timeout_argument_uses_client_clock")
def _():
    c, f, clock = client([(PRI, ok200())])
    c.get("/v1/x", timeout=1.5)
    eq(f.sent[0]["left_ms"], 1500)


@case("deadline_spent_by_slow_server")
def _():
    c, f, clock = client([(PRI, err(503))], deadline=2)
    f.spend_ms = 2000
    r = c.get("/v1/x")
    eq((r.status_code, len(f.sent)), (503, 1), "no retry after the deadline is spent")


# --- credentials and token refresh ---------------------------------------------------------

table("auth_final_", [
    ("401_bad_key", 401, "bad-key"), ("403_bad_key", 403, "bad-key"),
    ("401_none", 401, None), ("403_none", 403, None),
], lambda status, reason: auth_final(status, reason))


def auth_final(status, reason):
    c, f, clock = client([(PRI, err(status, reason))])
    e = raises(AuthError, c.get, "/v1/x")
    eq(e.response.status_code, status)
    ok("api_key" in str(e) and KEY not in str(e), str(e))
    eq(len(f.sent), 1, "never retried")


@case("jwt_refresh_via_token_provider")
def _():
    calls = []

    def provider():
        calls.append(1)
        return "jwt-%d" % len(calls)

    c, f, clock = client([(OWN, err(401, "token-expired")), (OWN, ok200("tr/own/primary"))],
                         service="own", token_provider=provider)
    eq(len(calls), 1, "the first token is fetched when the client is made")
    r = c.get("/v1/x")
    eq(r.status_code, 200)
    eq([hdr(s, "Authorization") for s in f.sent], ["Bearer jwt-1", "Bearer jwt-2"])
    eq(hdr(f.sent[0], "X-API-Key"), None, "own systems get no API key")
    eq(r.attempts, 1, "a refresh is not a failover attempt")


@case("jwt_refresh_only_once")
def _():
    c, f, clock = client([(OWN, err(401, "token-expired")), (OWN, err(401, "token-expired"))],
                         service="own", token="old", token_provider=lambda: "new")
    e = raises(AuthError, c.get, "/v1/x")
    ok("token" in str(e) and "new" not in str(e) and "old" not in str(e), str(e))
    eq(len(f.sent), 2)


@case("jwt_expired_without_provider")
def _():
    c, f, clock = client([(OWN, err(401, "token-expired"))], service="own", token="old")
    e = raises(AuthError, c.get, "/v1/x")
    ok("token_provider" in str(e), str(e))
    eq(len(f.sent), 1)


@case("jwt_provider_failure_is_auth_error")
def _():
    state = {"n": 0}

    def provider():
        state["n"] += 1
        if state["n"] > 1:
            raise OSError("auth server down")
        return "first"

    c, f, clock = client([(OWN, err(401, "token-expired"))], service="own", token_provider=provider)
    e = raises(AuthError, c.get, "/v1/x")
    ok("token_provider" in str(e), str(e))



# --- caller mistakes are ConfigErrors before anything is sent ---------------------------

table("request_bad_args_", [
    ("header_value_int", {"headers": {"X-N": 1}}, "X-N"),
    ("headers_not_dict", {"headers": [("a", "b")]}, "dict"),
    ("host_header", {"headers": {"Host": "evil.example.com"}}, "Host"),
    ("content_length_header", {"headers": {"Content-Length": "999"}}, "Content-Length"),
    ("own_api_key_header", {"headers": {"x-api-key": "other"}}, "x-api-key"),
    ("data_dict", {"data": {"a": 1}}, "json="),
    ("data_and_json", {"data": b"x", "json": {"a": 1}}, "not both"),
    ("timeout_zero", {"timeout": 0}, "timeout"),
    ("timeout_str", {"timeout": "1"}, "timeout"),
    ("timeout_nan", {"timeout": float("nan")}, "timeout"),
    ("empty_idempotency_key", {"headers": {"Idempotency-Key": " "}}, "Idempotency-Key"),
], lambda kw, word: bad_request_args(kw, word))


@case("body_too_large_is_final_and_blames_no_server")
def _():
    # max_body is the device's own limit: another server would send the same big answer.
    c, f, clock = client([(PRI, E(BodyTooLarge, True, "body of 20000 bytes exceeds max_body"))])
    e = raises(BodyTooLarge, c.get, "/v1/big")
    eq(f.hosts(), [PRI], "no failover")
    eq(c.policy.breakers, {}, "the healthy server is not counted as failing")
    eq(e.history, [], "history attached")


@case("write_with_unknown_outcome_stays_in_its_region")
def _():
    # The primary may have applied the POST (read timeout after sending); the backup shares
    # its Idempotency-Key store, another region does not: never cross into it.
    c, f, clock = client([(PRI, E(RequestTimeout, True)), (BAK, E(ConnectError, False))])
    e = raises(ConnectError, c.post, "/v1/x", json={"a": 1})
    eq(f.hosts(), [PRI, BAK], "stopped at the region boundary")
    ok("region tr" in str(e), str(e))


@case("read_with_unknown_outcome_may_cross_regions")
def _():
    c, f, clock = client([(PRI, E(RequestTimeout, True)), (BAK, E(ConnectError, False)),
                          (DE1, ok200("de/api/primary"))])
    eq(c.get("/v1/x").region, "de")


def bad_request_args(kw, word):
    c, f, clock = client([])
    e = raises(ConfigError, c.request, "POST", "/v1/x", **kw)
    ok(word in str(e), "message %r names %r" % (str(e), word))
    eq(f.sent, [], "nothing was sent")
    eq(c.policy.breakers, {}, "no server was blamed for the caller's mistake")


table("request_bad_url_", [
    ("empty", ""),
    ("none", None),
    ("int", 5),
], lambda url: raises(ConfigError, client([])[0].get, url))


@case("request_plain_http_url_refused_with_tls_config")
def _():
    c, f, clock = client([])
    e = raises(ConfigError, c.get, "http://api-tr.vmmaker.com/v1/x")
    ok("http" in str(e), str(e))
    eq(f.sent, [], "the key never went out in clear text")


@case("redirect_303_then_host_change_strips_caller_credentials")
def _():
    c, f, clock = client([(PRI, A(303, {"location": "/v1/done"})),
                          (PRI, A(302, {"location": "https://backup-api-tr.vmmaker.com/v1/done"})),
                          (BAK, ok200("tr/api/backup"))])
    c.post("/v1/x", data=b"d", headers={"Cookie": "s=1", "Proxy-Authorization": "Basic p"})
    third = f.sent[2]
    eq((hdr(third, "Cookie"), hdr(third, "Proxy-Authorization")), (None, None),
       "caller credentials do not follow the host change after a 303")
    eq(hdr(third, "X-API-Key"), KEY)


@case("transport_bug_is_not_a_server_failure")
def _():
    # A TypeError inside a transport is a bug to see, not a network failure to fail over on.
    c, f, clock = client([(PRI, TypeError("boom"))])
    raises(TypeError, c.get, "/v1/x")
    eq(f.hosts(), [PRI], "no failover on a bug")


# --- a half-open probe is always given back ------------------------------------------

def half_open(script, **kw):
    """A client whose primary breaker opened and whose window is over: the next call probes."""
    c, f, clock = client([(PRI, err(503)), (BAK, ok200("tr/api/backup"))] + script,
                         breaker_threshold=1, breaker_reset=10, **kw)
    c.get("/v1/warmup")
    clock.t += 20000  # past the open window (at most 1.5 x 10 s)
    return c, f, clock


@case("probe_released_when_call_raises")
def _():
    c, f, clock = half_open([(PRI, A(302, {"location": "https://evil.example.com/v1/x"})),
                             (PRI, ok200())])
    raises(RedirectError, c.get, "/v1/x")  # the probe call ends in an error
    r = c.get("/v1/y")
    eq(r.role, "primary", "the next call may probe the primary again")


@case("probe_released_when_a_redirect_answers")
def _():
    c, f, clock = half_open([(PRI, A(302, {"location": "https://backup-api-tr.vmmaker.com/v1/x"})),
                             (BAK, ok200("tr/api/backup")), (PRI, ok200())])
    eq(c.get("/v1/x").role, "backup", "the 302 led to the backup")
    eq(c.get("/v1/y").role, "primary", "the primary was not left 'probing' forever")


@case("probe_refresh_stays_on_the_same_server")
def _():
    tokens = ["jwt-2"]
    c, f, clock = client([(OWN, err(503)), (OWNB, ok200("tr/own/backup")),
                          (OWN, err(401, "token-expired")), (OWN, ok200("tr/own/primary"))],
                         service="own", token="jwt-1", token_provider=lambda: tokens.pop(0),
                         breaker_threshold=1, breaker_reset=10)
    c.get("/v1/warmup")
    clock.t += 20000
    r = c.get("/v1/x")
    eq((r.role, f.hosts()[-2:]), ("primary", [OWN, OWN]),
       "after the refresh the probe goes to the same server, not to the backup")

@case("response_json_characters_beyond_the_bmp")
def _():
    # Servers escape emoji as surrogate pairs; MicroPython's json would make each half its
    # own invalid character. An escaped backslash before "ud83d" is text, left alone.
    from vmmaker.response import Response
    body = b'{"s": "a\\ud83d\\udcf6b", "lit": "\\\\ud83d", "t": ["\\uD83D\\uDE00"]}'
    got = Response(200, {}, body, "https", PRI, "/").json()
    eq(got, {"s": "a\U0001F4F6b", "lit": "\\ud83d", "t": ["\U0001F600"]})


if __name__ == "__main__":
    run()
