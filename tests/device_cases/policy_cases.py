# The sans-IO failover policy as table tests: a fake clock, a fixed random source, no
# sockets and no sleeping. Rows follow docs/PROTOCOL.md "Reasons and what the SDK does".
from casekit import case, table, eq, ok, run, FakeClock as Clock
from vmmaker import endpoints
from vmmaker import policy as P


def fixed(x):
    return lambda: x


def new(rand=0.5, **kw):
    c = Clock()
    kw.setdefault("wall", c.wall_time)
    return P.Policy(c, fixed(rand) if not callable(rand) else rand, **kw), c


PLAN = endpoints.plan("tr", "api")  # tr primary, tr backup, de primary, de backup, fr ...
PRI, BAK, DE1, DE2, FR1, FR2 = [e.host for e in PLAN]


def names(eps):
    return [e.region + "/" + e.role for e in eps]


@case("plan_order_tr_api")
def _():
    eq(names(PLAN), ["tr/primary", "tr/backup", "de/primary", "de/backup", "fr/primary", "fr/backup"])
    eq(PRI, "api-tr.vmmaker.com")
    eq(BAK, "backup-api-tr.vmmaker.com")


# --- classify: every (status, reason) row ---------------------------------------------------

table("classify_", [
    ("200", 200, None, P.DONE),
    ("201", 201, None, P.DONE),
    ("302_failover", 302, "failover", P.DONE),  # the client follows it; not a policy failure
    ("400", 400, None, P.DONE),
    ("404", 404, None, P.DONE),
    ("500_db_error", 500, "db-error", P.SAME),
    ("503_network_error", 503, "network-error", P.BACKUP),
    ("429_overload", 429, "overload", P.BACKUP),
    ("504_timeout", 504, "timeout", P.BACKUP),
    ("422_data_corruption", 422, "data-corruption", P.BACKUP),
    ("502_auth_down", 502, "auth-down", P.BACKUP),
    ("503_regional_outage", 503, "regional-outage", P.REGION),
    ("403_security_breach", 403, "security-breach", P.ISOLATE),
    ("503_maintenance", 503, "maintenance", P.BACKUP),
    ("401_token_expired", 401, "token-expired", P.REFRESH),
    ("401_bad_key", 401, "bad-key", P.AUTH),
    ("403_bad_key", 403, "bad-key", P.AUTH),
    # Safe defaults when X-VMM-Reason is missing.
    ("500_none", 500, None, P.BACKUP),
    ("502_none", 502, None, P.BACKUP),
    ("503_none", 503, None, P.BACKUP),
    ("504_none", 504, None, P.BACKUP),
    ("429_none", 429, None, P.BACKUP),
    ("401_none", 401, None, P.AUTH),
    ("403_none", 403, None, P.AUTH),
    ("422_none", 422, None, P.DONE),
    # A 403 switches only with security-breach; a 401/403 never follows a failover reason.
    ("403_network_error", 403, "network-error", P.AUTH),
    ("401_regional_outage", 401, "regional-outage", P.AUTH),
    ("403_token_expired", 403, "token-expired", P.AUTH),
    ("422_other_reason", 422, "validation", P.DONE),
], lambda status, reason, want: eq(P.classify(status, reason), want))


# --- one call: the first answer decides what is next ----------------------------------------
# (status, reason, what on_response returns, host of the next attempt or None)

def first_answer(status, reason, want, nxt, method="GET"):
    p, c = new()
    call = p.start(PLAN, method, False)
    ep, sleep = call.next()
    eq((ep.host, sleep), (PRI, 0), "first attempt goes to the primary without waiting")
    got = call.on_response(ep.host, status, reason)
    eq(got, want, "on_response")
    if nxt is None:
        return
    step = call.next()
    ok(step is not None, "a next attempt exists (stop=%r)" % call.stop)
    eq(step[0].host, nxt, "next endpoint")
    eq(call.attempts, 1 if want == P.REFRESH else 2, "attempts (a token refresh is not one)")


table("next_", [
    ("200_done", 200, None, P.DONE, None),
    ("500_db_error_same_server", 500, "db-error", "retry", PRI),
    ("503_network_error_backup", 503, "network-error", "retry", BAK),
    ("429_overload_backup", 429, "overload", "retry", BAK),
    ("504_timeout_backup", 504, "timeout", "retry", BAK),
    ("422_data_corruption_backup", 422, "data-corruption", "retry", BAK),
    ("502_auth_down_backup", 502, "auth-down", "retry", BAK),
    ("503_regional_outage_alternate_region", 503, "regional-outage", "retry", DE1),
    ("403_security_breach_backup", 403, "security-breach", "retry", BAK),
    ("503_maintenance_backup", 503, "maintenance", "retry", BAK),
    ("401_token_expired_refresh_same", 401, "token-expired", P.REFRESH, PRI),
    ("401_bad_key_final", 401, "bad-key", P.AUTH, None),
    ("403_bad_key_final", 403, "bad-key", P.AUTH, None),
    ("401_none_final", 401, None, P.AUTH, None),
    ("403_none_final", 403, None, P.AUTH, None),
    ("500_none_backup", 500, None, "retry", BAK),
    ("502_none_backup", 502, None, "retry", BAK),
    ("503_none_backup", 503, None, "retry", BAK),
    ("504_none_backup", 504, None, "retry", BAK),
    ("422_none_final", 422, None, P.DONE, None),
], first_answer)


@case("db_error_retries_same_server_once")
def _():
    p, c = new()
    call = p.start(PLAN, "GET", False)
    ep, _ = call.next()
    eq(call.on_response(ep.host, 500, "db-error"), "retry")
    ep, _ = call.next()
    eq(ep.host, PRI, "same server once")
    eq(call.on_response(ep.host, 500, "db-error"), "retry")
    ep, _ = call.next()
    eq(ep.host, BAK, "then the backup")


@case("token_expired_refresh_once")
def _():
    p, c = new()
    call = p.start(PLAN, "GET", False)
    ep, _ = call.next()
    eq(call.on_response(ep.host, 401, "token-expired"), P.REFRESH)
    eq(call.attempts, 0, "a refresh does not count as an attempt")
    ep, _ = call.next()
    eq(ep.host, PRI)
    eq(call.on_response(ep.host, 401, "token-expired"), P.AUTH, "second expiry is final")
    eq(p.available(PRI), 0, "an auth answer is not a server failure")
    ok(PRI not in p.breakers or p.breakers[PRI].failures == 0, "no failure counted")


@case("regional_outage_from_backup_goes_to_next_region")
def _():
    p, c = new()
    call = p.start(PLAN, "GET", False)
    ep, _ = call.next()
    call.on_response(ep.host, 503, "network-error")
    ep, _ = call.next()
    eq(ep.host, BAK)
    call.on_response(ep.host, 503, "regional-outage")
    eq(call.next()[0].host, DE1)


@case("regional_outage_in_alternate_skips_to_third_region")
def _():
    p, c = new()
    call = p.start(PLAN, "GET", False)
    call.on_response(call.next()[0].host, 503, "regional-outage")
    ep, _ = call.next()
    eq(ep.host, DE1)
    call.on_response(ep.host, 503, "regional-outage")
    eq(call.next()[0].host, FR1)


@case("regional_outage_own_has_no_alternate")
def _():
    p, c = new()
    call = p.start(endpoints.plan("tr", "own"), "GET", False)
    call.on_response(call.next()[0].host, 503, "regional-outage")
    eq(call.next(), None)
    ok("no server left" in call.stop, call.stop)


@case("security_breach_opens_breaker_at_once")
def _():
    p, c = new(breaker_threshold=5)
    call = p.start(PLAN, "GET", False)
    call.on_response(call.next()[0].host, 403, "security-breach")
    eq(p.available(PRI), None, "primary isolated after one answer")
    eq(p.breakers[PRI].failures, 1)
    # A new call does not touch the isolated primary.
    call2 = p.start(PLAN, "GET", False)
    eq(call2.next()[0].host, BAK)


@case("connect_errors_backup_then_alternate_region")
def _():
    p, c = new()
    call = p.start(PLAN, "GET", False)
    seen = []
    for kind in ("connect", "tls", "timeout"):
        ep, _ = call.next()
        seen.append(ep.host)
        eq(call.on_error(ep.host, kind, True), "retry")
    eq(seen, [PRI, BAK, DE1])
    eq(call.history, [(PRI, "connect"), (BAK, "tls"), (DE1, "timeout")])


# --- idempotency -------------------------------------------------------------------------------

@case("post_without_key_not_retried_after_answer")
def _():
    p, c = new()
    call = p.start(PLAN, "POST", False)
    ep, _ = call.next()
    eq(call.on_response(ep.host, 503, "network-error"), P.DONE, "the 503 goes back to the caller")
    eq(call.next(), None)
    ok("idempotent" in call.stop, call.stop)


@case("post_without_key_not_retried_after_send")
def _():
    p, c = new()
    call = p.start(PLAN, "POST", False)
    ep, _ = call.next()
    eq(call.on_error(ep.host, "timeout", True), "raise")
    eq(call.next(), None)


@case("post_without_key_retried_when_nothing_sent")
def _():
    p, c = new()
    call = p.start(PLAN, "POST", False)
    ep, _ = call.next()
    eq(call.on_error(ep.host, "connect", False), "retry")
    eq(call.next()[0].host, BAK)


@case("post_with_key_retried")
def _():
    p, c = new()
    call = p.start(PLAN, "POST", True)
    ep, _ = call.next()
    eq(call.on_response(ep.host, 503, "network-error"), "retry")
    eq(call.on_error(call.next()[0].host, "connect", False), "retry")  # nothing sent
    eq(call.next()[0].host, DE1)


@case("post_unknown_outcome_not_replayed_in_another_region")
def _():
    # A timeout after sending: the backup may have applied the write. Another region keeps
    # its own Idempotency-Key store, so the call stops at the region boundary.
    p, c = new()
    call = p.start(PLAN, "POST", True)
    ep, _ = call.next()
    eq(call.on_response(ep.host, 503, "network-error"), "retry")
    eq(call.on_error(call.next()[0].host, "timeout", True), "retry")
    eq(call.next(), None)
    ok("region" in call.stop, call.stop)


table("idempotent_method_", [
    ("GET", "GET", True), ("PUT", "PUT", True), ("DELETE", "DELETE", True), ("HEAD", "HEAD", True),
    ("POST", "POST", False), ("PATCH", "PATCH", False),
], lambda m, safe: eq(new()[0].start(PLAN, m, False).safe, safe))


# --- Retry-After fences ----------------------------------------------------------------------

@case("retry_after_fences_host_429")
def _():
    p, c = new()
    call = p.start(PLAN, "GET", False)
    call.on_response(call.next()[0].host, 429, "overload", "10")
    eq(p.available(PRI), 10000)
    eq(call.next()[0].host, BAK)
    # A new call skips the fenced primary while the backup is free.
    eq(p.start(PLAN, "GET", False).next()[0].host, BAK)
    c.t += 10000
    eq(p.available(PRI), 0, "fence lifted after Retry-After")
    eq(p.start(PLAN, "GET", False).next()[0].host, PRI)


@case("retry_after_fences_host_503_http_date")
def _():
    p, c = new()
    call = p.start(PLAN, "GET", False)
    when = "Tue, 14 Nov 2023 22:13:40 GMT"  # Clock.wall + 20 s
    ok(c.wall + 20 == 1700000020, "fake wall clock")
    call.on_response(call.next()[0].host, 503, "maintenance", when)
    eq(p.available(PRI), 20000)


@case("retry_after_clamped_to_max")
def _():
    p, c = new(retry_after_max_ms=5000)
    call = p.start(PLAN, "GET", False)
    call.on_response(call.next()[0].host, 503, "maintenance", "3600")
    eq(p.available(PRI), 5000)


@case("retry_after_ignored_on_other_status")
def _():
    p, c = new()
    call = p.start(PLAN, "GET", False)
    call.on_response(call.next()[0].host, 504, "timeout", "60")
    eq(p.available(PRI), 0)


@case("retry_after_malformed_ignored")
def _():
    p, c = new()
    call = p.start(PLAN, "GET", False)
    call.on_response(call.next()[0].host, 429, "overload", "soon")
    eq(p.available(PRI), 0)


@case("retry_after_all_fenced_waits_for_soonest")
def _():
    p, c = new(deadline_ms=30000)
    plan = PLAN[:2]
    call = p.start(plan, "GET", False)
    call.on_response(call.next()[0].host, 429, "overload", "7")
    call.on_response(call.next()[0].host, 429, "overload", "3")
    eq(call.next(), None, "this call ran out of servers")
    ep, sleep = p.start(plan, "GET", False).next()
    eq((ep.host, sleep), (BAK, 3000), "a new call waits for the soonest fence")


@case("retry_after_beyond_deadline_stops")
def _():
    p, c = new(deadline_ms=2000)
    plan = PLAN[:1]
    p.start(plan, "GET", False).on_response(PRI, 503, "maintenance", "10")
    call = p.start(plan, "GET", False)
    eq(call.next(), None, "does not sleep past the call's deadline")
    ok("deadline" in call.stop, call.stop)


# --- circuit breaker ------------------------------------------------------------------------

@case("breaker_opens_after_n_failures")
def _():
    p, c = new(breaker_threshold=3)
    p.failure(PRI)
    p.failure(PRI)
    eq(p.available(PRI), 0, "2 failures < 3")
    p.failure(PRI)
    eq(p.available(PRI), None, "open after 3 consecutive failures")


@case("breaker_success_resets_count")
def _():
    p, c = new(breaker_threshold=3)
    p.failure(PRI)
    p.failure(PRI)
    p.success(PRI)
    p.failure(PRI)
    p.failure(PRI)
    eq(p.available(PRI), 0, "failures must be consecutive")


@case("breaker_open_across_calls")
def _():
    p, c = new(breaker_threshold=2)
    for _ in range(2):
        call = p.start(PLAN, "GET", False)
        ep, _s = call.next()
        eq(ep.host, PRI)
        call.on_response(ep.host, 503, "network-error")
        call.on_response(call.next()[0].host, 200, None)
    eq(p.start(PLAN, "GET", False).next()[0].host, BAK, "primary skipped while open")


def half_open(rand, span):
    p, c = new(rand=rand, breaker_threshold=1, breaker_reset_ms=10000)
    t0 = c.t
    p.failure(PRI)
    c.t = t0 + span - 1
    eq(p.available(PRI), None, "still open 1 ms before the window ends")
    c.t = t0 + span
    eq(p.available(PRI), 0, "half-open when the window ends")


table("breaker_window_jitter_", [
    ("low", 0.0, 5000),     # 0.5x
    ("mid", 0.5, 10000),    # 1.0x
    ("high", 0.75, 12500),  # 1.25x
], half_open)


@case("breaker_half_open_single_probe_success")
def _():
    p, c = new(breaker_threshold=1, breaker_reset_ms=1000)
    p.failure(PRI)
    c.t += 1000
    call = p.start(PLAN, "GET", False)
    eq(call.next()[0].host, PRI, "the probe")
    eq(p.available(PRI), None, "other calls wait while the probe is out")
    eq(p.start(PLAN, "GET", False).next()[0].host, BAK)
    call.on_response(PRI, 200, None)
    eq(p.available(PRI), 0, "closed after a good probe")
    eq(p.breakers[PRI].open_until, None)


@case("breaker_half_open_probe_failure_reopens")
def _():
    p, c = new(breaker_threshold=3, breaker_reset_ms=1000)
    for _ in range(3):
        p.failure(PRI)
    c.t += 1000
    call = p.start(PLAN, "GET", False)
    eq(call.next()[0].host, PRI)
    call.on_response(PRI, 503, "network-error")
    eq(p.available(PRI), None, "one failed probe reopens the breaker")
    c.t += 999
    eq(p.available(PRI), None)
    c.t += 1
    eq(p.available(PRI), 0)


@case("breaker_all_open_stops")
def _():
    p, c = new(breaker_threshold=1)
    plan = PLAN[:2]
    p.failure(PRI)
    p.failure(BAK)
    call = p.start(plan, "GET", False)
    eq(call.next(), None)
    ok("circuit breaker" in call.stop, call.stop)


# --- budget, deadline, attempts, backoff ------------------------------------------------------

@case("retry_budget_exhausted")
def _():
    p, c = new(budget=1)
    call = p.start(PLAN, "GET", False)
    call.on_response(call.next()[0].host, 503, None)
    eq(call.next()[0].host, BAK, "one token for one retry")
    eq(p.tokens, 0)
    call.on_response(BAK, 503, None)
    eq(call.next(), None)
    ok("budget" in call.stop, call.stop)
    # First attempts never need a token; a success puts one back.
    call2 = p.start(PLAN, "GET", False)
    ep, _s = call2.next()
    call2.on_response(ep.host, 200, None)
    eq(p.tokens, 1)


@case("retry_budget_capped_at_max")
def _():
    p, c = new(budget=3)
    for _ in range(10):
        p.success(PRI)
    eq(p.tokens, 3)


@case("deadline_stops_retries")
def _():
    p, c = new(deadline_ms=1000)
    call = p.start(PLAN, "GET", False)
    call.next()
    c.t += 1000  # the first server took the whole deadline
    call.on_response(PRI, 503, None)
    eq(call.next(), None)
    ok("deadline" in call.stop, call.stop)


@case("deadline_backoff_longer_than_left")
def _():
    p, c = new(rand=0.5, deadline_ms=1500, backoff_base_ms=4000, backoff_cap_ms=8000)
    call = p.start(PLAN, "GET", False)
    call.on_response(call.next()[0].host, 503, None)
    eq(call.next(), None, "a 2000 ms backoff does not fit in 1500 ms")
    ok("deadline" in call.stop, call.stop)


@case("left_ms_counts_down")
def _():
    p, c = new(deadline_ms=5000)
    call = p.start(PLAN, "GET", False)
    c.t += 1200
    eq(call.left_ms(), 3800)


@case("max_attempts")
def _():
    p, c = new(max_attempts=2)
    call = p.start(PLAN, "GET", False)
    call.on_response(call.next()[0].host, 503, None)
    call.on_response(call.next()[0].host, 503, None)
    eq(call.next(), None)
    ok("max_attempts" in call.stop, call.stop)
    eq(call.attempts, 2)
    eq(call.history, [(PRI, 503), (BAK, 503)])


@case("plan_exhausted")
def _():
    p, c = new(max_attempts=10, budget=10)
    call = p.start(PLAN, "GET", False)
    for _ in PLAN:
        call.on_response(call.next()[0].host, 503, None)
    eq(call.next(), None)
    ok("no server left" in call.stop, call.stop)


@case("backoff_sleeps_grow")
def _():
    p, c = new(rand=0.5, backoff_base_ms=200, backoff_cap_ms=5000, max_attempts=6)
    call = p.start(PLAN, "GET", False)
    sleeps = []
    for _ in range(5):
        ep, s = call.next()
        sleeps.append(s)
        call.on_response(ep.host, 503, None)
    eq(sleeps, [0, 100, 200, 400, 800])


def backoff_bounds(base, cap):
    for n in range(0, 40):
        ceiling = min(cap, base * (1 << min(n, 16)))
        lo = P.Policy(Clock(), fixed(0.0), backoff_base_ms=base, backoff_cap_ms=cap).backoff_ms(n)
        hi = P.Policy(Clock(), fixed(0.999999), backoff_base_ms=base, backoff_cap_ms=cap).backoff_ms(n)
        eq(lo, 0, "U=0 sleeps 0 (n=%d)" % n)
        ok(ceiling - 1 <= hi <= ceiling, "U~1 sleeps ~%d, got %d (n=%d)" % (ceiling, hi, n))
        ok(hi <= cap, "never above the cap")


table("backoff_full_jitter_", [
    ("default", 200, 5000),
    ("small", 1, 50),
    ("cap_below_base", 1000, 300),
], backoff_bounds)


@case("backoff_uses_rand_each_time")
def _():
    seq = [0.1, 0.9, 0.3]
    p = P.Policy(Clock(), lambda: seq.pop(0), backoff_base_ms=1000, backoff_cap_ms=10000)
    eq([p.backoff_ms(0), p.backoff_ms(1), p.backoff_ms(2)], [100, 1800, 1200])


if __name__ == "__main__":
    run()
