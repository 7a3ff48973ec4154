# Failover and retry policy, sans-IO: outcomes in, decisions out. The clock and the
# random source are injected, so every rule is a table test with no sockets or sleeps.

# What a server answer means for the call (see docs/PROTOCOL.md, "Reasons").
DONE = "done"        # give the answer to the caller
AUTH = "auth"        # credentials rejected: final, never retried
REFRESH = "refresh"  # expired JWT: new token, same server, once
SAME = "same"        # same server again (it is redirecting to its backup)
BACKUP = "backup"    # next server in the plan
REGION = "region"    # next region in the plan
ISOLATE = "isolate"  # open this server's breaker now, then next server

IDEMPOTENT = ("GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE")


def classify(status, reason):
    if status < 400:
        return DONE
    if status == 403 and reason == "security-breach":
        return ISOLATE
    if status == 401 and reason == "token-expired":
        return REFRESH
    if status in (401, 403):
        return AUTH
    if reason == "regional-outage":
        return REGION
    if reason == "db-error":
        return SAME
    if status in (429, 500, 502, 503, 504):
        return BACKUP
    if status == 422 and reason == "data-corruption":
        return BACKUP
    return DONE


class Breaker:
    """Per-host state: consecutive failures, open window, and a Retry-After fence."""
    __slots__ = ("failures", "open_until", "not_before", "probing")

    def __init__(self):
        self.failures = 0
        self.open_until = None
        self.not_before = None
        self.probing = False


class Policy:
    def __init__(self, clock, rand, max_attempts=4, deadline_ms=30000, backoff_base_ms=200,
                 backoff_cap_ms=5000, retry_after_max_ms=30000, breaker_threshold=5,
                 breaker_reset_ms=30000, budget=10, wall=None):
        self.clock = clock          # object with ticks_ms() and ticks_diff(a, b)
        self.rand = rand            # () -> float in [0, 1)
        self.wall = wall            # () -> Unix seconds, for HTTP-date Retry-After
        self.max_attempts = max_attempts
        self.deadline_ms = deadline_ms
        self.backoff_base_ms = backoff_base_ms
        self.backoff_cap_ms = backoff_cap_ms
        self.retry_after_max_ms = retry_after_max_ms
        self.breaker_threshold = breaker_threshold
        self.breaker_reset_ms = breaker_reset_ms
        self.budget_max = budget
        self.tokens = budget
        self.breakers = {}

    def backoff_ms(self, retry):
        # Full jitter: U(0,1) * min(cap, base * 2^n) spreads a fleet's retries out.
        return int(self.rand() * min(self.backoff_cap_ms, self.backoff_base_ms * (1 << min(retry, 16))))

    def breaker(self, host):
        b = self.breakers.get(host)
        if b is None:
            b = self.breakers[host] = Breaker()
        return b

    def _after(self, t):
        # ms from now until tick t (negative when t has passed)
        return self.clock.ticks_diff(t, self.clock.ticks_ms())

    def available(self, host):
        """ms until host may be tried (0 = now); None when its breaker is open."""
        b = self.breakers.get(host)
        if b is None:
            return 0
        # A window longer than any this policy sets means the tick counter wrapped (ESP32
        # ticks wrap every ~12 days): treat it as over rather than open for days.
        if b.open_until is not None:
            left = self._after(b.open_until)
            if (0 < left <= 2 * self.breaker_reset_ms) or b.probing:
                return None
        if b.not_before is not None:
            left = self._after(b.not_before)
            if 0 < left <= self.retry_after_max_ms:
                return left
        return 0

    def success(self, host):
        b = self.breakers.get(host)  # a healthy host needs no breaker object
        if b is not None:
            b.failures = 0
            b.open_until = None
            b.probing = False
        if self.tokens < self.budget_max:
            self.tokens += 1

    def failure(self, host, isolate=False):
        b = self.breaker(host)
        b.failures += 1
        b.probing = False
        if isolate or b.failures >= self.breaker_threshold or b.open_until is not None:
            # Jittered window (0.5x..1.5x) so a fleet's half-open probes do not align.
            span = int(self.breaker_reset_ms * (0.5 + self.rand()))
            b.open_until = self.clock.ticks_add(self.clock.ticks_ms(), span)

    def fence(self, host, retry_after):
        """Honour Retry-After: host is not tried again before it (clamped)."""
        if self.wall is None:
            return
        if retry_after is None:
            return
        from . import retryafter  # loaded only when a server sends Retry-After: saves RAM
        s = retryafter.parse(retry_after, self.wall())
        if s is None:
            return
        ms = min(s * 1000, self.retry_after_max_ms)
        self.breaker(host).not_before = self.clock.ticks_add(self.clock.ticks_ms(), ms)

    def start(self, plan, method, idempotent):
        return Call(self, plan, method, idempotent)


class Call:
    """One logical call across servers. Ask next() where to go; report each outcome."""

    def __init__(self, policy, plan, method, idempotent):
        self.p = policy
        self.plan = plan
        self.safe = idempotent or method in IDEMPOTENT
        self.write = method not in IDEMPOTENT   # POST/PATCH: a replay elsewhere would double it
        self.pinned = None      # region a write may already have reached (outcome unknown)
        self.deadline_ms = policy.deadline_ms
        self.deadline = policy.clock.ticks_add(policy.clock.ticks_ms(), policy.deadline_ms)
        self.idx = 0
        self.attempts = 0
        self.same_used = False
        self.refreshed = False
        self.stop = None        # why no further attempt is possible
        self.history = []       # (host, status or error kind)
        self.sent = 0           # requests put on the wire (retries, failovers, redirect hops)
        self.probes = None      # hosts this call probes half-open (released by close())

    def set_deadline(self, ms):
        """A per-call deadline instead of the policy's."""
        self.deadline_ms = ms
        self.deadline = self.p.clock.ticks_add(self.p.clock.ticks_ms(), ms)

    def left_ms(self):
        return self.p._after(self.deadline)

    def next(self):
        """-> (endpoint, sleep_ms) for the next attempt, or None (see .stop)."""
        p = self.p
        if self.stop:
            return None
        if self.attempts >= p.max_attempts:
            self.stop = "max_attempts=%d reached" % p.max_attempts
            return None
        pick, wait = None, None
        for i in range(self.idx, len(self.plan)):
            w = p.available(self.plan[i].host)
            if w == 0:
                pick, wait = i, 0
                break
            if w is not None and (wait is None or w < wait):
                pick, wait = i, w  # fenced by Retry-After: keep the soonest
        if pick is None:
            self.stop = "every remaining server is isolated by its circuit breaker"
            return None
        sleep = wait
        if self.attempts:
            if p.tokens < 1:
                self.stop = "retry budget spent (too many failures recently)"
                return None
            p.tokens -= 1
            sleep = max(sleep, p.backoff_ms(self.attempts - 1))
        if (self.attempts or sleep) and sleep >= self.left_ms():  # never sleep past the deadline
            self.stop = "deadline of %d ms reached" % self.deadline_ms
            return None
        self.idx = pick
        b = p.breakers.get(self.plan[pick].host)
        if b is not None and b.open_until is not None and not b.probing:
            b.probing = True  # half-open: this call is the one probe
            if self.probes is None:
                self.probes = []
            self.probes.append(b)
        self.attempts += 1
        return self.plan[pick], sleep

    def _advance(self, action):
        cur = self.plan[self.idx]
        if action == REGION:
            i = self.idx + 1
            while i < len(self.plan) and self.plan[i].region == cur.region:
                i += 1
            self.idx = i
        else:
            self.idx += 1
        if self.idx >= len(self.plan):
            self.stop = "no server left in the plan"
        elif self.pinned is not None and self.plan[self.idx].region != self.pinned:
            # A region's servers share one Idempotency-Key store; another region's do not.
            self.idx = len(self.plan)
            self.stop = ("the write may already be applied in region %s: it is not retried in "
                         "another region, whose servers could apply it again" % self.pinned)

    def on_response(self, host, status, reason, retry_after=None):
        """-> DONE, AUTH, REFRESH or 'retry' (then call next())."""
        p = self.p
        self.history.append((host, status))
        action = classify(status, reason)
        if action in (DONE, AUTH):
            p.success(host)  # the server works; the answer is the caller's business
            return action
        if action == REFRESH:
            if self.refreshed:
                return AUTH
            self.refreshed = True
            self.attempts -= 1  # a token refresh is not a failover attempt
            b = p.breakers.get(host)
            if b is not None:
                b.probing = False  # the same server is asked again, with the new token
            return REFRESH
        if status in (429, 503):
            p.fence(host, retry_after)
        p.failure(host, isolate=(action == ISOLATE))
        if not self.safe:
            self.stop = "%s is not idempotent and carries no Idempotency-Key" % "request"
            return DONE
        if action == SAME and not self.same_used:
            self.same_used = True
            return "retry"
        self._advance(action)
        return "retry"

    def close(self):
        """The call is over, however it ended: a probe it took but did not settle (an error
        raised mid-call, an answer credited to the host a redirect led to) is given back,
        so the next call may probe; the breaker's open window itself is unchanged."""
        if self.probes:
            for b in self.probes:
                b.probing = False
            self.probes = None

    def on_error(self, host, kind, sent):
        """A transport failure of kind 'connect', 'tls', 'timeout' or 'protocol'.

        -> 'retry' or 'raise'. Nothing sent yet means a retry is always safe.
        """
        self.history.append((host, kind))
        self.p.failure(host)
        if sent and not self.safe:
            self.stop = "request may have reached the server and is not idempotent"
            return "raise"
        if sent and self.write:
            self.pinned = self.plan[self.idx].region
        self._advance(BACKUP)
        return "retry"
