"""The seed's nine failure flows and an unreachable primary, end to end: the firmware (on CPython
and on MicroPython, in a subprocess) against host_sim's World over real sockets and real TLS
with the per-run CA. Each test checks what the device reported and what the world saw.
"""

import json

import pytest

from host_sim.world import host_name
from tests.servers import run_device

NAME = "thing"


def config(world, region, service, **overrides):
    base = {"backoff_base": 0.01, "timeout": 2, "connect_timeout": 2, "deadline": 15}
    base.update(overrides)
    return world.device_config(region, service, **base)


def secrets_of(world, cfg=None):
    found = [world.api_key]
    if cfg:
        found += [cfg[k] for k in ("api_key", "token") if cfg.get(k)]
    return found


def assert_no_secrets(run, secrets):
    for secret in secrets:
        assert secret not in run.stdout, "secret in device stdout"
        assert secret not in run.stderr, "secret in device stderr"


def call(device, world, cfg, expr='c.get("/v1/%s")' % NAME, calls=1, prelude=""):
    """Run `expr` `calls` times on one client (trace on, to stdout) -> (outcomes, run)."""
    body = prelude + "c = client(trace=print)\n" + \
        "for _ in range(%d):\n    emit(describe(lambda: %s))\n" % (calls, expr)
    run = run_device(device, cfg, body)
    assert_no_secrets(run, secrets_of(world, cfg))
    assert len(run.results) == calls, run.explain("missing results")
    return run.results, run


def requests_to(world, region, service, role):
    return world.endpoint_server(region, service, role).requests


def events_on_primary(world, region, service):
    return [(e["kind"], e["by"]) for e in world.endpoint_server(region, service).events]


# (id, region, service, flow, status on the primary, region and role that answer)
SEED_FLOWS = [
    ("1-tr-own-db-error", "tr", "own", "db-error", 500, "tr", "backup"),
    ("2-tr-api-network-error", "tr", "api", "network-error", 503, "tr", "backup"),
    ("3-tr-cloud-overload", "tr", "cloud", "overload", 429, "tr", "backup"),
    ("4-fr-api-timeout", "fr", "api", "timeout", 504, "fr", "backup"),
    ("5-fr-cloud-data-corruption", "fr", "cloud", "data-corruption", 422, "fr", "backup"),
    ("6-usa-api-auth-down", "usa", "api", "auth-down", 502, "usa", "backup"),
    ("7-usa-cloud-regional-outage", "usa", "cloud", "regional-outage", 503, "de", "primary"),
    ("8-de-api-security-breach", "de", "api", "security-breach", 403, "de", "backup"),
    ("9-de-cloud-maintenance", "de", "cloud", "maintenance", 503, "de", "backup"),
]


@pytest.mark.parametrize("region,service,flow,status,answer_region,answer_role",
                         [f[1:] for f in SEED_FLOWS], ids=[f[0] for f in SEED_FLOWS])
def test_seed_flow(device, world, region, service, flow, status, answer_region, answer_role):
    value = {"owner": "%s/%s" % (region, service), "n": 1}
    world.put_data(region, service, NAME, value)
    if flow == "regional-outage":  # the alternate region holds its own data
        world.put_data(answer_region, service, NAME, {"owner": answer_region})
    world.set_flow(region, service, flow)
    primary = host_name(region, service, "primary")
    answer_host = host_name(answer_region, service, answer_role)

    (out,), run = call(device, world, config(world, region, service))

    assert out["ok"], out
    assert out["status"] == 200
    assert (out["region"], out["role"]) == (answer_region, answer_role)
    assert out["server"] == "%s/%s/%s" % (answer_region, service, answer_role)
    assert out["attempts"] == 2
    hops = [[primary, 302]] if flow == "db-error" else []  # flow 1: 500, 302, 200
    assert out["history"] == [[primary, status]] + hops + [[answer_host, 200]]
    assert out["temporary"] is (flow == "auth-down")
    data = json.loads(out["content"])["data"]
    if flow == "regional-outage":
        assert data == {"owner": answer_region}  # the alternate region's own data
        assert not requests_to(world, region, service, "backup")  # the backup is skipped
        assert not events_on_primary(world, region, service)
    else:
        assert data == value  # clean data, also for flow 5 (the corrupt copy is not served)
        assert ("notify-failover", answer_host) in events_on_primary(world, region, service)
    # the primary was asked once (flow 1: twice - a 500, then the 302 to the backup)
    assert len(requests_to(world, region, service, "primary")) == (2 if flow == "db-error" else 1)
    assert primary in run.stdout  # the trace says which servers were tried


def test_flow1_redirect_to_backup_carries_fresh_credentials(device, world):
    world.set_flow("tr", "own", "db-error")
    cfg = config(world, "tr", "own")
    (out,), _ = call(device, world, cfg, 'c.post("/v1/order", json={"qty": 2})')
    assert out["ok"] and out["status"] == 201, out
    first, second = requests_to(world, "tr", "own", "primary")
    assert (first.status, first.reason) == (500, "db-error")
    assert (second.status, second.reason) == (302, "failover")
    (moved,) = requests_to(world, "tr", "own", "backup")
    assert moved.method == "POST" and moved.json() == {"qty": 2}  # 302 keeps method and body
    assert moved.headers["authorization"] == "Bearer " + cfg["token"]
    # PROTOCOL.md: X-VMM-Attempt is 1, then +1 for each retry, failover and redirect
    assert [r.headers["x-vmm-attempt"] for r in (first, second, moved)] == ["1", "2", "3"]
    keys = {r.headers["idempotency-key"] for r in (first, second, moved)}
    assert len(keys) == 1
    assert world.db("tr", "own", "primary").get("order") == {"qty": 2}  # replicated
    assert [k for k, _ in events_on_primary(world, "tr", "own")] == \
        ["failover-triggered", "notify-failover"]


def test_flow5_backup_restores_the_primary(device, world):
    world.put_data("fr", "cloud", NAME, {"clean": True})
    world.set_flow("fr", "cloud", "data-corruption")
    assert world.db("fr", "cloud", "primary").corrupted
    (out,), _ = call(device, world, config(world, "fr", "cloud"))
    assert out["ok"] and json.loads(out["content"])["data"] == {"clean": True}, out
    assert not world.db("fr", "cloud", "primary").corrupted
    assert world.db("fr", "cloud", "primary").get(NAME) == {"clean": True}
    assert "restore-from-backup" in [k for k, _ in events_on_primary(world, "fr", "cloud")]


@pytest.mark.parametrize("region,service,flow", [
    ("tr", "cloud", "overload"),          # flow 3: Retry-After 1 s fences the primary
    ("de", "api", "security-breach"),     # flow 8: the primary is isolated (breaker open)
    ("de", "cloud", "maintenance"),       # flow 9: Retry-After 30 s fences the primary
], ids=["3-overload", "8-security-breach", "9-maintenance"])
def test_second_call_goes_straight_to_backup(device, world, region, service, flow):
    world.set_flow(region, service, flow)
    (first, second), _ = call(device, world, config(world, region, service), calls=2)
    assert first["ok"] and first["attempts"] == 2 and first["role"] == "backup", first
    assert second["ok"] and second["status"] == 200, second
    assert second["role"] == "backup" and second["attempts"] == 1, second
    assert second["history"] == [[host_name(region, service, "backup"), 200]]
    assert len(requests_to(world, region, service, "primary")) == 1
    assert len(requests_to(world, region, service, "backup")) == 2


# -- unreachable primary ------------------------------------------------------------------

# A blackholed TLS server times out in the handshake: a connect failure (nothing was sent).
UNREACHABLE = [("refuse", "connect"), ("blackhole", "connect"),
               ("bad-tls-selfsigned", "tls"), ("bad-tls-wronghost", "tls")]


@pytest.mark.parametrize("mode,kind", UNREACHABLE, ids=[m for m, _ in UNREACHABLE])
def test_unreachable_primary_backup_answers(device, world, mode, kind):
    world.put_data("fr", "api", NAME, {"v": "fr"})
    primary, backup = host_name("fr", "api"), host_name("fr", "api", "backup")
    world.set_mode(primary, mode)
    (out,), run = call(device, world, config(world, "fr", "api", timeout=1, connect_timeout=1))
    assert out["ok"], out
    assert (out["region"], out["role"], out["attempts"]) == ("fr", "backup", 2)
    assert out["history"] == [[primary, kind], [backup, 200]]
    assert json.loads(out["content"])["data"] == {"v": "fr"}
    assert out["elapsed_ms"] < 5000
    assert not requests_to(world, "fr", "api", "primary")  # no request (no key) got through
    assert ("notify-failover", backup) in events_on_primary(world, "fr", "api")


def test_unreachable_region_alternate_region_answers(device, world):
    world.set_mode(host_name("fr", "api"), "refuse")
    world.set_mode(host_name("fr", "api", "backup"), "bad-tls-wronghost")
    (out,), _ = call(device, world, config(world, "fr", "api"))
    assert out["ok"], out
    assert (out["region"], out["role"], out["attempts"]) == ("de", "primary", 3)  # fr -> de, tr
    assert [h[1] for h in out["history"]] == ["connect", "tls", 200]


def test_everything_unreachable_raises_last_transport_error(device, world):
    for host in world.hosts:
        world.set_mode(host, "refuse")
    (out,), _ = call(device, world, config(world, "fr", "api"))
    assert not out["ok"]
    assert out["error"] == "ConnectError", out
    assert len(out["history"]) == 4  # max_attempts
    assert all(kind == "connect" for _, kind in out["history"])
    assert "gave up" in out["message"]


# -- data and writes ----------------------------------------------------------------------


def test_write_on_primary_is_read_from_backup(device, world):
    cfg = config(world, "de", "api")
    (put,), _ = call(device, world, cfg, 'c.put("/v1/cfg", json={"led": "on"})')
    assert put["ok"] and put["role"] == "primary" and put["status"] == 200, put
    world.set_flow("de", "api", "network-error")
    (got,), _ = call(device, world, cfg, 'c.get("/v1/cfg")')
    assert got["ok"] and got["role"] == "backup", got
    assert json.loads(got["content"])["data"] == {"led": "on"}


@pytest.mark.parametrize("how", ["primary-503", "answer-lost"])
def test_post_with_failover_is_not_doubled(device, world, how):
    primary, backup = host_name("tr", "api"), host_name("tr", "api", "backup")
    if how == "primary-503":
        world.set_flow("tr", "api", "network-error")  # refused before anything is written
    else:
        world.set_delay(primary, 3)  # written, but the answer comes after the read timeout
    store = world.databases[("tr", "api")].idempotency
    before = set(store)
    (out,), _ = call(device, world, config(world, "tr", "api", timeout=1),
                     'c.post("/v1/log", json={"event": "boot"})')
    assert out["ok"] and out["status"] == 201 and out["role"] == "backup", out
    (p,), (b,) = requests_to(world, "tr", "api", "primary"), requests_to(world, "tr", "api",
                                                                         "backup")
    assert p.headers["idempotency-key"] == b.headers["idempotency-key"]
    assert p.body == b.body
    assert set(store) - before == {p.headers["idempotency-key"]}  # one write, one key
    assert world.db("tr", "api", "backup").get("log") == {"event": "boot"}
    if how == "answer-lost":
        assert out["history"] == [[primary, "timeout"], [backup, 201]]
        assert out["headers"].get("x-vmm-replayed") == "1"  # the backup replayed the first write
    else:
        assert "x-vmm-replayed" not in out["headers"]


# -- credentials --------------------------------------------------------------------------


def test_bad_key_is_never_retried(device, world):
    wrong = "wrong-" + world.api_key[::-1]
    cfg = config(world, "usa", "api", api_key=wrong)
    (out,), run = call(device, world, cfg)
    assert not out["ok"]
    assert out["error"] == "AuthError", out
    assert "api_key" in out["message"] and "403" in out["message"]
    assert out["history"] is None or len(out["history"]) <= 1
    served = [(h, len(s.requests)) for h, s in world.servers.items() if s.requests]
    assert served == [(host_name("usa", "api"), 1)]
    assert_no_secrets(run, [wrong])


def _token_snippet(fresh):
    return ('calls = [0]\n'
            'def provider():\n'
            '    calls[0] += 1\n'
            '    return %r\n'
            'c = client(trace=print, token_provider=provider)\n'
            'emit(describe(lambda: c.get("/v1/%s")))\n'
            'emit({"provider_calls": calls[0]})\n' % (fresh, NAME))


def test_expired_jwt_is_refreshed_once(device, world):
    expired, fresh = world.issue_jwt("device", ttl_s=-60), world.issue_jwt("device", 600)
    cfg = config(world, "tr", "own", token=expired)
    run = run_device(device, cfg, _token_snippet(fresh))
    out, calls = run.results
    assert_no_secrets(run, [expired, fresh])
    assert out["ok"] and out["status"] == 200 and out["role"] == "primary", out
    assert calls["provider_calls"] == 1
    first, second = requests_to(world, "tr", "own", "primary")
    assert (first.status, first.reason) == (401, "token-expired")
    assert first.headers["authorization"] == "Bearer " + expired
    assert second.headers["authorization"] == "Bearer " + fresh
    assert [r.headers["x-vmm-attempt"] for r in (first, second)] == ["1", "2"]
    assert not requests_to(world, "tr", "own", "backup")


def test_jwt_refresh_that_stays_expired_is_final(device, world):
    expired, again = world.issue_jwt("device", ttl_s=-60), world.issue_jwt("other", ttl_s=-30)
    cfg = config(world, "tr", "own", token=expired)
    run = run_device(device, cfg, _token_snippet(again))
    out, calls = run.results
    assert_no_secrets(run, [expired, again])
    assert not out["ok"] and out["error"] == "AuthError", out
    assert calls["provider_calls"] == 1
    assert len(requests_to(world, "tr", "own", "primary")) == 2
    assert not requests_to(world, "tr", "own", "backup")


def test_secrets_never_in_device_output_even_on_errors(device, world):
    world.set_mode(host_name("fr", "cloud"), "bad-tls-selfsigned")
    world.set_mode(host_name("fr", "cloud", "backup"), "blackhole")
    expired = world.issue_jwt("device", ttl_s=-60)
    provider_secret = world.issue_jwt("leaky", 600)
    wrong = "wrong-" + world.api_key[::-1]
    cfg = config(world, "fr", "api", timeout=1, connect_timeout=1, deadline=6)
    body = """
        import sys
        def leaky_provider():
            raise ValueError("could not refresh %s")
        for c in (client(trace=print, api_key=%r),
                  client(trace=print, service="cloud", max_attempts=2),
                  client(trace=print, region="tr", service="own", token=%r,
                         token_provider=leaky_provider)):
            print(repr(c), repr(c.auth))
            emit(describe(lambda: c.post("/v1/x", json={"a": 1})))
        c = client(trace=print, api_key=%r)
        c.get("/v1/x")  # uncaught: the traceback goes to stderr
    """ % (provider_secret, wrong, expired, wrong)
    run = run_device(device, cfg, body, check=False)
    bad_key, unreachable, jwt = run.results
    assert (bad_key["error"], unreachable["error"], jwt["error"]) == \
        ("AuthError", "ConnectError", "AuthError"), run.results  # TLS handshake timed out
    assert "ValueError" in jwt["message"]
    assert run.returncode != 0 and "Traceback" in run.stdout + run.stderr  # MicroPython: stdout
    assert_no_secrets(run, [world.api_key, wrong, expired, provider_secret])
