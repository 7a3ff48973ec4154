"""The mocked VM Maker world: 18 API servers on loopback, auth, replicated databases, flows.

Per region (`tr`, `fr`, `usa`, `de`) and service (`api`, `cloud`, plus `tr`/`own`) there is a
primary and a backup `ApiServer`, a `ReplicatedDatabase` (two copies, synchronous replication,
one idempotency store shared by both servers), and per region an `AuthService`.

How a request is answered (docs/PROTOCOL.md is the contract):

1. server-wide trouble of the active flow (overload, maintenance, network-error, timeout,
   security-breach on the primary; regional-outage on both servers) - before auth;
2. auth: `X-API-Key` (api, cloud) or `Authorization: Bearer <jwt>` (own). Missing -> 401,
   wrong key -> 403, bad JWT -> 401, all `bad-key`; expired JWT -> 401 `token-expired`.
   Auth service down (world.auth_down or flow 'auth-down'): the primary answers 502
   `auth-down`; the backup answers on cached auth with `X-VMM-Temporary: cached-auth`;
3. routing (404 `not-found` outside `/v1/<name>`, 405 for other methods), then database
   trouble on the primary: 'db-error' answers 500 once, then 302 `failover` to the
   backup; a corrupted primary copy ('data-corruption') answers 422, and the backup restores
   it when it next serves;
4. the request itself: GET / POST (201) / PUT, PATCH (200) / DELETE (200) on `/v1/<name>`.
   Any write carrying `Idempotency-Key` is de-duplicated: a replay (on either server) returns
   the first answer's status and body with `X-VMM-Replayed: 1`.

Events (dicts in `world.events` and the endpoint primary's `events`): `failover-triggered`
(db-error), `restore-from-backup` (corruption repaired), and `notify-failover`, which a backup
records whenever it answers successfully while its primary is failing (a flow, a raw mode,
auth down, or stopped). Credentials that validate once
are cached by the region's auth; `world.api_key` is cached from the start so the cached-auth
flow works on a device's very first request. All state sits behind one world lock.
"""

import copy
import json
import secrets
import threading
import time

from host_sim import jwt_tokens
from host_sim.apiserver import ApiServer, Response
from host_sim.ca import CertificateAuthority

REGIONS = ("tr", "fr", "usa", "de")
ROLES = ("primary", "backup")
ENDPOINTS = tuple((r, s) for r in REGIONS for s in ("api", "cloud")) + (("tr", "own"),)
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

# flow -> (status, extra headers) the primary answers before auth
PRIMARY_OUTAGES = {
    "network-error": (503, {}),
    "overload": (429, {"Retry-After": "1"}),
    "timeout": (504, {}),
    "security-breach": (403, {}),
    "maintenance": (503, {"Retry-After": "30"}),
}
FLOWS = tuple(PRIMARY_OUTAGES) + ("db-error", "data-corruption", "auth-down", "regional-outage")

MESSAGES = {
    "network-error": "primary lost its network; use the backup",
    "overload": "primary overloaded; load-balance to the backup",
    "timeout": "primary timed out upstream; retry on the backup",
    "security-breach": "primary isolated after a security breach; use the backup",
    "maintenance": "primary in maintenance; switch to the backup",
    "regional-outage": "region out of service; use an alternate region",
    "db-error": "primary database error; failover triggered",
    "failover": "failover: repeat the request on the backup",
    "data-corruption": "primary copy of the data is corrupted; the backup restores it",
    "auth-down": "auth service unreachable",
}


def host_name(region, service, role="primary"):
    """VM Maker host name of an endpoint; the backup prefixes the first label with `backup-`."""
    if (region, service) not in ENDPOINTS:
        raise ValueError("no endpoint %s/%s (own exists in tr only)" % (region, service))
    if service == "own":
        primary = "api.vmmaker.com.tr"
    elif service == "api":
        primary = "api-%s.vmmaker.com" % region
    else:
        primary = "clod-api-%s.vmmaker.com" % region
    return primary if role == "primary" else "backup-" + primary


class Database:
    """One copy (primary or backup) of an endpoint's data: name -> JSON value."""

    def __init__(self, label):
        self.label = label
        self.rows = {}
        self.corrupted = False

    def get(self, name):
        return copy.deepcopy(self.rows.get(name))

    def corrupt(self):
        # Scramble the rows too, so nothing can serve them by accident.
        self.corrupted = True
        self.rows = {name: {"corrupted": True} for name in self.rows}

    def restore_from(self, other):
        self.rows = copy.deepcopy(other.rows)
        self.corrupted = False


class ReplicatedDatabase:
    """A primary and a backup copy kept equal by synchronous replication."""

    def __init__(self, label):
        self.copies = {role: Database("%s/%s" % (label, role)) for role in ROLES}
        self.idempotency = {}  # Idempotency-Key -> first Response, shared by both servers

    def write(self, name, value):
        for database in self.copies.values():
            database.rows[name] = copy.deepcopy(value)

    def delete(self, name):
        for database in self.copies.values():
            database.rows.pop(name, None)


class AuthService:
    """A region's auth: valid API keys (shared set), JWT secret, and a cache of good credentials."""

    def __init__(self, region, keys, jwt_secret):
        self.region = region
        self.keys = keys
        self.jwt_secret = jwt_secret
        self.up = True
        self.cache = {}  # credential -> expiry (None for API keys)

    def check_key(self, key):
        """None if valid (and cache it), else the reason."""
        if key not in self.keys:
            return "bad-key"
        self.cache[key] = None
        return None

    def check_token(self, token):
        try:
            claims = jwt_tokens.decode(token, self.jwt_secret)
        except jwt_tokens.TokenExpired:
            return "token-expired"
        except jwt_tokens.TokenInvalid:
            return "bad-key"
        self.cache[token] = claims["exp"]
        return None

    def is_cached(self, credential):
        if credential not in self.cache:
            return False
        expiry = self.cache[credential]
        return expiry is None or expiry > time.time()


def _credential(service, headers):
    if service != "own":
        return headers.get("x-api-key") or None
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _parse_body(request):
    if not request.body:
        return None
    content_type = request.headers.get("content-type", "application/json")
    if "json" not in content_type:
        return request.body.decode("utf-8", "replace")  # raw bytes are stored as text
    return json.loads(request.body.decode("utf-8"))


class World:
    """The whole mocked VM Maker world; use as a context manager or start()/stop()."""

    def __init__(self, tls=True, io_timeout=5.0):
        self.ca = CertificateAuthority() if tls else None
        self.api_key = secrets.token_hex(16)
        self.jwt_secret = secrets.token_bytes(32)
        self._keys = {self.api_key}
        self.auth = {r: AuthService(r, self._keys, self.jwt_secret) for r in REGIONS}
        for auth in self.auth.values():
            auth.cache[self.api_key] = None  # pre-cached: flow 6 works on a first request
        self.databases = {ep: ReplicatedDatabase("%s/%s" % ep) for ep in ENDPOINTS}
        self.flows = {}  # (region, service) -> flow
        self.events = []
        self._failed_over = set()  # endpoints whose primary already answered db-error
        self._lock = threading.RLock()
        self._servers = {}
        for region, service in ENDPOINTS:
            for role in ROLES:
                host = host_name(region, service, role)
                self._servers[host] = ApiServer(
                    host, region, service, role, self._handle, ca=self.ca, io_timeout=io_timeout
                )

    # -- lifecycle ----------------------------------------------------------------------

    def start(self):
        for server in self._servers.values():
            server.start()
        return self

    def stop(self):
        for server in self._servers.values():
            server.request_stop()
        for server in self._servers.values():
            server.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- accessors ----------------------------------------------------------------------

    @property
    def ca_pem(self):
        return self.ca.cert_pem if self.ca else None

    @property
    def hosts(self):
        return {host: server.address for host, server in self._servers.items()}

    @property
    def servers(self):
        return dict(self._servers)

    def server(self, host):
        try:
            return self._servers[host]
        except KeyError:
            raise KeyError("no VM Maker host %r" % host) from None

    def endpoint_server(self, region, service, role="primary"):
        return self._servers[host_name(region, service, role)]

    def device_config(self, region, service, **overrides):
        """Config dict for the device SDK (JSON-serialisable); `overrides` replace keys."""
        host_name(region, service)  # validates the endpoint
        config = {
            "region": region,
            "service": service,
            "hosts": {host: list(address) for host, address in self.hosts.items()},
        }
        if service == "own":
            config["token"] = self.issue_jwt("device", ttl_s=3600)
        else:
            config["api_key"] = self.api_key
        if self.ca:
            config["ca"] = self.ca_pem.decode("ascii")
        config.update(overrides)
        return config

    def db(self, region, service, role):
        host_name(region, service)
        return self.databases[(region, service)].copies[role]

    def put_data(self, region, service, name, value):
        host_name(region, service)
        with self._lock:
            self.databases[(region, service)].write(name, value)

    def add_key(self, key):
        with self._lock:
            self._keys.add(key)

    def issue_jwt(self, subject="device", ttl_s=3600):
        return jwt_tokens.issue(subject, ttl_s, self.jwt_secret)

    # -- faults -------------------------------------------------------------------------

    def set_flow(self, region, service, flow):
        host_name(region, service)
        if flow not in FLOWS:
            raise ValueError("unknown flow %r (one of %s)" % (flow, ", ".join(FLOWS)))
        with self._lock:
            self._end_flow((region, service))
            self.flows[(region, service)] = flow
            if flow == "data-corruption":
                self.databases[(region, service)].copies["primary"].corrupt()

    def clear_flows(self):
        with self._lock:
            for endpoint in list(self.flows):
                self._end_flow(endpoint)

    def _end_flow(self, endpoint):
        self.flows.pop(endpoint, None)
        self._failed_over.discard(endpoint)
        copies = self.databases[endpoint].copies
        if copies["primary"].corrupted:  # tidy up silently: the fault is over
            copies["primary"].restore_from(copies["backup"])

    def auth_down(self, region, down=True):
        self.auth[region].up = not down

    def set_mode(self, host, mode):
        self.server(host).set_mode(mode)

    def set_delay(self, host, seconds):
        """Make `host` wait `seconds` before sending each answer (a slow, not dead, server)."""
        self.server(host).response_delay_s = seconds

    def reset(self):
        """Back to a healthy world: no flows, modes normal, no delays, auth up. Data stays."""
        self.clear_flows()
        for server in self._servers.values():
            server.set_mode("normal")
            server.response_delay_s = 0.0
        for auth in self.auth.values():
            auth.up = True

    def clear_records(self):
        with self._lock:
            del self.events[:]
            for server in self._servers.values():
                server.clear_records()

    # -- request handling ---------------------------------------------------------------

    def _handle(self, server, request):
        with self._lock:
            flow = self.flows.get((server.region, server.service))
            answer = self._outage(server, flow)
            if answer is not None:
                return answer
            answer, on_cached_auth = self._authenticate(server, request, flow)
            if answer is None:
                answer = self._route(request) or self._database_fault(server, request, flow)
            if answer is not None:
                return answer
            response = self._serve(server, request)
            if on_cached_auth:
                response.headers["X-VMM-Temporary"] = "cached-auth"
            if server.role == "backup" and response.status < 400 and self._primary_failing(server):
                self._record_event("notify-failover", server, request)
            return response

    def _outage(self, server, flow):
        if flow == "regional-outage":
            return Response.error(503, flow, MESSAGES[flow])
        if flow in PRIMARY_OUTAGES and server.role == "primary":
            status, headers = PRIMARY_OUTAGES[flow]
            return Response.error(status, flow, MESSAGES[flow], headers)
        return None

    def _authenticate(self, server, request, flow):
        """(error response or None, whether the backup let it through on cached auth)."""
        auth = self.auth[server.region]
        own = server.service == "own"
        credential = _credential(server.service, request.headers)
        if credential is None:
            what = "Authorization: Bearer <jwt>" if own else "X-API-Key"
            return Response.error(401, "bad-key", "missing " + what), False
        if not auth.up or flow == "auth-down":
            if server.role == "backup" and auth.is_cached(credential):
                return None, True
            return Response.error(502, "auth-down", MESSAGES["auth-down"]), False
        reason = auth.check_token(credential) if own else auth.check_key(credential)
        if reason is None:
            return None, False
        message = "token expired" if reason == "token-expired" else "credentials not accepted"
        return Response.error(401 if own else 403, reason, message), False

    @staticmethod
    def _route(request):
        if not request.path.startswith("/v1/") or len(request.path) <= len("/v1/"):
            return Response.error(404, "not-found", "paths are /v1/<request>")
        if request.method not in METHODS:
            return Response.error(405, "method-not-allowed", "use " + ", ".join(METHODS))
        return None

    def _database_fault(self, server, request, flow):
        endpoint = (server.region, server.service)
        copies = self.databases[endpoint].copies
        if server.role == "backup":
            if copies["primary"].corrupted:  # "Restore from Backup"
                copies["primary"].restore_from(copies["backup"])
                self._record_event("restore-from-backup", server, request)
            return None
        if flow == "db-error":
            if endpoint not in self._failed_over:
                self._failed_over.add(endpoint)
                self._record_event("failover-triggered", server, request)
                return Response.error(500, "db-error", MESSAGES["db-error"])
            backup = host_name(server.region, server.service, "backup")
            location = "%s://%s%s" % (server.scheme, backup, request.target)
            return Response.error(302, "failover", MESSAGES["failover"], {"Location": location})
        if copies["primary"].corrupted:
            return Response.error(422, "data-corruption", MESSAGES["data-corruption"])
        return None

    def _serve(self, server, request):
        database = self.databases[(server.region, server.service)]
        name = request.path[len("/v1/"):]
        if request.method == "GET":
            return self._ok(server, 200, name, database.copies[server.role].get(name))
        key = request.headers.get("idempotency-key")
        if key and key in database.idempotency:
            replay = database.idempotency[key].copy()
            replay.headers["X-VMM-Replayed"] = "1"
            return replay
        if request.method == "DELETE":
            database.delete(name)
            response = self._ok(server, 200, name, None)
        else:
            try:
                value = _parse_body(request)
            except ValueError as exc:
                return Response.error(400, "bad-request", "body is not JSON: %s" % exc)
            database.write(name, value)
            response = self._ok(server, 201 if request.method == "POST" else 200, name, value)
        if key:
            database.idempotency[key] = response.copy()
        return response

    @staticmethod
    def _ok(server, status, name, data):
        return Response.json(status, {"request": name, "data": data, "server": server.label})

    # -- failover bookkeeping -----------------------------------------------------------

    def _primary_failing(self, backup):
        primary = self.endpoint_server(backup.region, backup.service, "primary")
        return (
            (backup.region, backup.service) in self.flows
            or primary.mode != "normal"
            or not primary.listening
            or not self.auth[backup.region].up
        )

    def _record_event(self, kind, by_server, request):
        """Record `kind` on the endpoint's primary (the seed's arrows all point at it)."""
        primary = self.endpoint_server(by_server.region, by_server.service, "primary")
        event = {
            "time": time.time(),
            "kind": kind,
            "endpoint": "%s/%s" % (by_server.region, by_server.service),
            "on": primary.host,
            "by": by_server.host,
            "request": "%s %s" % (request.method, request.target),
        }
        primary.events.append(event)
        self.events.append(event)
