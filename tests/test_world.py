"""The mocked VM Maker world, checked with CPython's own ssl/http.client (verification on)."""

import http.client
import json
import socket
import ssl
import threading
import time

import pytest

from host_sim import jwt_tokens
from host_sim.apiserver import ScriptedServer
from host_sim.world import ENDPOINTS, World, host_name


class Answer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    @property
    def reason(self):
        return self.headers.get("X-VMM-Reason")


def call(world, host, method="GET", path="/v1/thing", headers=None, body=None, timeout=3.0,
         auth=True):
    """One request to `host` over TLS to its loopback port, SNI/host check on the VMM name."""
    raw = socket.create_connection(world.hosts[host], timeout=timeout)
    sock = world.ca.client_context().wrap_socket(raw, server_hostname=host)
    conn = http.client.HTTPConnection(host, timeout=timeout)
    conn.sock = sock
    all_headers = {}
    if auth:
        all_headers.update(credentials(world, host))
    all_headers.update(headers or {})
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
        all_headers.setdefault("Content-Type", "application/json")
    try:
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        return Answer(response.status, dict(response.getheaders()), response.read())
    finally:
        conn.close()


def credentials(world, host):
    if host.endswith(".com.tr"):
        return {"Authorization": "Bearer " + world.issue_jwt("test", 60)}
    return {"X-API-Key": world.api_key}


def hosts_of(region, service):
    return host_name(region, service, "primary"), host_name(region, service, "backup")


# -- shape of the world ------------------------------------------------------------------


def test_eighteen_hosts_with_contract_names(world):
    assert len(world.hosts) == 18
    for name in ("api-usa.vmmaker.com", "backup-api-usa.vmmaker.com",
                 "clod-api-usa.vmmaker.com", "backup-clod-api-usa.vmmaker.com",
                 "api.vmmaker.com.tr", "backup-api.vmmaker.com.tr"):
        assert world.hosts[name][0] == "127.0.0.1"
    assert len({port for _, port in world.hosts.values()}) == 18


def test_every_server_answers_with_its_label(world):
    for region, service in ENDPOINTS:
        for host, role in zip(hosts_of(region, service), ("primary", "backup")):
            answer = call(world, host)
            label = "%s/%s/%s" % (region, service, role)
            assert answer.status == 200
            assert answer.headers["X-VMM-Server"] == label
            assert answer.json() == {"request": "thing", "data": None, "server": label}


def test_device_config_is_json_and_complete(world):
    config = json.loads(json.dumps(world.device_config("usa", "api", timeout=5)))
    assert config["api_key"] == world.api_key and config["timeout"] == 5
    assert config["ca"].startswith("-----BEGIN CERTIFICATE-----")
    assert config["hosts"]["api-usa.vmmaker.com"] == list(world.hosts["api-usa.vmmaker.com"])
    own = world.device_config("tr", "own")
    assert "api_key" not in own
    assert jwt_tokens.decode(own["token"], world.jwt_secret)["sub"] == "device"
    with pytest.raises(ValueError):
        world.device_config("fr", "own")


def test_requests_are_recorded_with_raw_headers(world):
    call(world, "api-de.vmmaker.com", path="/v1/thing?x=1")
    [record] = world.server("api-de.vmmaker.com").requests
    assert (record.method, record.path, record.query) == ("GET", "/v1/thing", "x=1")
    assert ("X-API-Key", world.api_key) in record.raw_headers
    assert record.headers["x-api-key"] == record.headers["X-API-KEY"] == world.api_key
    assert record.status == 200 and record.time <= time.time()


# -- data, replication, idempotency --------------------------------------------------------


def test_write_on_either_server_is_read_on_the_other(world):
    primary, backup = hosts_of("fr", "api")
    assert call(world, primary, "PUT", "/v1/led", body={"on": True}).status == 200
    assert call(world, backup, path="/v1/led").json()["data"] == {"on": True}
    assert call(world, backup, "POST", "/v1/led", body={"on": False}).status == 201
    assert call(world, primary, path="/v1/led").json()["data"] == {"on": False}
    assert call(world, backup, "DELETE", "/v1/led").status == 200
    assert call(world, primary, path="/v1/led").json()["data"] is None
    assert world.db("fr", "api", "primary").rows == world.db("fr", "api", "backup").rows


def test_put_data_seeds_both_copies(world):
    world.put_data("de", "cloud", "cfg", [1, 2])
    assert world.db("de", "cloud", "backup").get("cfg") == [1, 2]
    assert call(world, "clod-api-de.vmmaker.com", path="/v1/cfg").json()["data"] == [1, 2]


def test_idempotency_key_is_shared_by_primary_and_backup(world):
    primary, backup = hosts_of("tr", "api")
    key = {"Idempotency-Key": "a" * 32}
    first = call(world, primary, "POST", "/v1/order", headers=key, body={"n": 1})
    assert first.status == 201 and "X-VMM-Replayed" not in first.headers
    replay = call(world, backup, "POST", "/v1/order", headers=key, body={"n": 2})
    assert replay.status == 201 and replay.headers["X-VMM-Replayed"] == "1"
    assert replay.body == first.body  # the first answer, verbatim
    assert replay.headers["X-VMM-Server"] == "tr/api/backup"
    assert world.db("tr", "api", "backup").get("order") == {"n": 1}  # not written twice


def test_bad_json_body_is_400(world):
    answer = call(world, "api-fr.vmmaker.com", "POST", "/v1/x", body=b"{nope",
                  headers={"Content-Type": "application/json"})
    assert answer.status == 400 and answer.reason == "bad-request"


def test_unknown_path_is_404(world):
    answer = call(world, "api-fr.vmmaker.com", path="/v2/x")
    assert answer.status == 404 and answer.json()["error"] == "not-found"


# -- auth ----------------------------------------------------------------------------------


def test_missing_key_is_401_and_wrong_key_is_403(world):
    missing = call(world, "api-de.vmmaker.com", auth=False)
    assert (missing.status, missing.reason) == (401, "bad-key")
    wrong = call(world, "api-de.vmmaker.com", headers={"X-API-Key": "nope"}, auth=False)
    assert (wrong.status, wrong.reason) == (403, "bad-key")
    assert wrong.json()["error"] == "bad-key" and "nope" not in wrong.body.decode()


def test_added_key_is_accepted(world):
    world.add_key("k-extra")
    answer = call(world, "api-tr.vmmaker.com", headers={"X-API-Key": "k-extra"}, auth=False)
    assert answer.status == 200


def test_jwt_valid_expired_and_tampered(world):
    host = "api.vmmaker.com.tr"
    def bearer(token):
        return {"Authorization": "Bearer " + token}
    assert call(world, host, headers=bearer(world.issue_jwt("s", 60)), auth=False).status == 200
    expired = call(world, host, headers=bearer(world.issue_jwt("s", -1)), auth=False)
    assert (expired.status, expired.reason) == (401, "token-expired")
    forged = jwt_tokens.issue("s", 60, b"not the world secret")
    assert call(world, host, headers=bearer(forged), auth=False).reason == "bad-key"
    api_key = call(world, host, headers={"X-API-Key": world.api_key}, auth=False)
    assert (api_key.status, api_key.reason) == (401, "bad-key")


def test_jwt_rejects_alg_none():
    token = jwt_tokens.issue("s", 60, b"k")
    header = jwt_tokens._json_segment({"alg": "none", "typ": "JWT"})
    with pytest.raises(jwt_tokens.TokenInvalid):
        jwt_tokens.decode(header + token[token.index("."):], b"k")


def test_auth_down_primary_502_backup_cached(world):
    world.auth_down("fr")
    primary, backup = hosts_of("fr", "cloud")
    assert (call(world, primary).status, call(world, primary).reason) == (502, "auth-down")
    cached = call(world, backup)
    assert cached.status == 200 and cached.headers["X-VMM-Temporary"] == "cached-auth"
    world.add_key("never-validated")
    uncached = call(world, backup, headers={"X-API-Key": "never-validated"}, auth=False)
    assert (uncached.status, uncached.reason) == (502, "auth-down")


def test_key_validated_once_is_cached(world):
    world.add_key("seen-once")
    primary, backup = hosts_of("de", "api")
    assert call(world, primary, headers={"X-API-Key": "seen-once"}, auth=False).status == 200
    world.set_flow("de", "api", "auth-down")
    answer = call(world, backup, headers={"X-API-Key": "seen-once"}, auth=False)
    assert answer.status == 200 and answer.headers["X-VMM-Temporary"] == "cached-auth"


# -- the seed's flows ----------------------------------------------------------------------

SIMPLE_FLOWS = [
    # region, service, flow, primary status, Retry-After
    ("tr", "api", "network-error", 503, None),
    ("tr", "cloud", "overload", 429, "1"),
    ("fr", "api", "timeout", 504, None),
    ("fr", "cloud", "data-corruption", 422, None),
    ("usa", "api", "auth-down", 502, None),
    ("de", "api", "security-breach", 403, None),
    ("de", "cloud", "maintenance", 503, "30"),
    ("usa", "cloud", "overload", 429, "1"),  # flows work outside the seed's place too
]


@pytest.mark.parametrize("region,service,flow,status,retry_after", SIMPLE_FLOWS)
def test_flow_primary_fails_backup_serves(world, region, service, flow, status, retry_after):
    world.put_data(region, service, "thing", {"v": 7})
    world.set_flow(region, service, flow)
    primary, backup = hosts_of(region, service)
    failed = call(world, primary)
    assert (failed.status, failed.reason) == (status, flow)
    assert failed.json()["error"] == flow
    assert failed.headers.get("Retry-After") == retry_after
    served = call(world, backup)
    assert served.status == 200
    assert served.json() == {"request": "thing", "data": {"v": 7},
                             "server": "%s/%s/backup" % (region, service)}
    kinds = [e["kind"] for e in world.server(primary).events]
    assert "notify-failover" in kinds
    assert world.events[-1]["by"] == backup


def test_db_error_then_302_to_backup(world):
    world.put_data("tr", "own", "istek", "ok")
    world.set_flow("tr", "own", "db-error")
    first = call(world, "api.vmmaker.com.tr", path="/v1/istek?a=1")
    assert (first.status, first.reason) == (500, "db-error")
    second = call(world, "api.vmmaker.com.tr", path="/v1/istek?a=1")
    assert (second.status, second.reason) == (302, "failover")
    assert second.headers["Location"] == "https://backup-api.vmmaker.com.tr/v1/istek?a=1"
    served = call(world, "backup-api.vmmaker.com.tr", path="/v1/istek?a=1")
    assert served.status == 200 and served.json()["data"] == "ok"
    kinds = [e["kind"] for e in world.server("api.vmmaker.com.tr").events]
    assert kinds == ["failover-triggered", "notify-failover"]


def test_data_corruption_restored_from_backup(world):
    world.put_data("fr", "cloud", "t", {"clean": True})
    world.set_flow("fr", "cloud", "data-corruption")
    assert world.db("fr", "cloud", "primary").get("t") != {"clean": True}
    assert call(world, "clod-api-fr.vmmaker.com", path="/v1/t").status == 422
    backup = call(world, "backup-clod-api-fr.vmmaker.com", path="/v1/t")
    assert backup.json()["data"] == {"clean": True}
    assert world.db("fr", "cloud", "primary").get("t") == {"clean": True}
    assert "restore-from-backup" in [e["kind"] for e in world.events]
    assert call(world, "clod-api-fr.vmmaker.com", path="/v1/t").status == 200


def test_auth_down_flow_needs_cached_key_on_backup(world):
    world.set_flow("usa", "api", "auth-down")
    world.add_key("fresh")
    answer = call(world, "backup-api-usa.vmmaker.com", headers={"X-API-Key": "fresh"},
                  auth=False)
    assert (answer.status, answer.reason) == (502, "auth-down")


def test_regional_outage_both_servers_alternate_region_serves(world):
    world.set_flow("usa", "cloud", "regional-outage")
    for host in hosts_of("usa", "cloud"):
        answer = call(world, host)
        assert (answer.status, answer.reason) == (503, "regional-outage")
    assert call(world, "clod-api-de.vmmaker.com").headers["X-VMM-Server"] == "de/cloud/primary"


def test_auth_checked_before_database_fault(world):
    world.set_flow("tr", "own", "db-error")
    answer = call(world, "api.vmmaker.com.tr", auth=False)
    assert (answer.status, answer.reason) == (401, "bad-key")


def test_unknown_flow_and_endpoint_rejected(world):
    with pytest.raises(ValueError):
        world.set_flow("tr", "api", "meteor")
    with pytest.raises(ValueError):
        world.set_flow("de", "own", "timeout")


def test_clear_flows_heals(world):
    world.set_flow("fr", "cloud", "data-corruption")
    world.set_flow("de", "api", "security-breach")
    world.clear_flows()
    assert call(world, "clod-api-fr.vmmaker.com").status == 200
    assert call(world, "api-de.vmmaker.com").status == 200


# -- raw modes -----------------------------------------------------------------------------


def test_refuse_keeps_port_and_comes_back(world):
    host = "api-fr.vmmaker.com"
    port = world.hosts[host][1]
    world.set_mode(host, "refuse")
    assert world.hosts[host][1] == port
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(world.hosts[host], timeout=1).close()
    assert call(world, "backup-api-fr.vmmaker.com").status == 200
    assert world.events[-1]["kind"] == "notify-failover"
    world.set_mode(host, "normal")
    assert call(world, host).status == 200 and world.hosts[host][1] == port


def test_blackhole_never_sends_a_byte(world):
    host = "api-tr.vmmaker.com"
    world.set_mode(host, "blackhole")
    raw = socket.create_connection(world.hosts[host], timeout=0.3)
    with pytest.raises(socket.timeout):
        world.ca.client_context().wrap_socket(raw, server_hostname=host)
    raw.close()
    assert world.server(host).connections[-1].mode == "blackhole"
    assert world.server(host).requests == []


@pytest.mark.parametrize("mode", ["bad-tls-selfsigned", "bad-tls-wronghost"])
def test_bad_tls_fails_verification(world, mode):
    host = "clod-api-tr.vmmaker.com"
    world.set_mode(host, mode)
    with pytest.raises(ssl.SSLCertVerificationError):
        call(world, host)
    world.set_mode(host, "normal")
    assert call(world, host).status == 200


def test_unknown_mode_rejected(world):
    with pytest.raises(ValueError):
        world.set_mode("api-tr.vmmaker.com", "on-fire")


def test_delay_slows_the_answer(world):
    world.set_delay("api-de.vmmaker.com", 0.2)
    started = time.monotonic()
    assert call(world, "api-de.vmmaker.com").status == 200
    assert time.monotonic() - started >= 0.2


def test_stopping_mid_delay_answers_nothing():
    # A world stopped while a slow server holds a request must not answer it after all:
    # "the servers died mid-call" has to look like a dead server to the device.
    with World() as w:
        w.set_delay("api-de.vmmaker.com", 5)
        out = {}

        def ask():
            try:
                out["answer"] = call(w, "api-de.vmmaker.com", timeout=8).status
            except (OSError, http.client.HTTPException) as e:
                out["error"] = type(e).__name__

        t = threading.Thread(target=ask)
        t.start()
        time.sleep(0.5)
        started = time.monotonic()
        w.stop()
        t.join(10)
    assert "answer" not in out, out
    assert time.monotonic() - started < 5


def test_malformed_request_gets_400(world):
    host = "api-de.vmmaker.com"
    raw = socket.create_connection(world.hosts[host], timeout=2)
    sock = world.ca.client_context().wrap_socket(raw, server_hostname=host)
    sock.sendall(b"NONSENSE\r\n\r\n")
    reply = sock.recv(4096)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 400 ") and b"X-VMM-Reason: bad-request" in reply


def test_chunked_request_body(world):
    host = "api-usa.vmmaker.com"
    raw = socket.create_connection(world.hosts[host], timeout=2)
    sock = world.ca.client_context().wrap_socket(raw, server_hostname=host)
    sock.sendall(b"PUT /v1/c HTTP/1.1\r\nHost: %s\r\nX-API-Key: %s\r\n"
                 b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
                 b"4\r\n{\"a\"\r\n3\r\n: 1\r\n1\r\n}\r\n0\r\n\r\n"
                 % (host.encode(), world.api_key.encode()))
    reply = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        reply += chunk
    sock.close()
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert world.db("usa", "api", "backup").get("c") == {"a": 1}


# -- lifecycle and helpers -----------------------------------------------------------------


def test_plain_http_world_starts_and_stops_fast():
    started = time.monotonic()
    with World(tls=False) as plain:
        host = "api-de.vmmaker.com"
        conn = http.client.HTTPConnection(*plain.hosts[host], timeout=2)
        conn.request("GET", "/v1/x", headers={"X-API-Key": plain.api_key})
        assert conn.getresponse().status == 200
        conn.close()
        plain.set_mode("api-fr.vmmaker.com", "blackhole")
        held = socket.create_connection(plain.hosts["api-fr.vmmaker.com"], timeout=2)
        time.sleep(0.05)
        assert "ca" not in plain.device_config("de", "api")
    assert time.monotonic() - started < 2.0
    assert held.recv(10) == b""  # stop() closed the held connection
    held.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(plain.hosts[host], timeout=1)


def test_scripted_server_tls(world):
    def echo(conn):
        conn.sendall(conn.recv(100).upper())

    context = world.ca.server_context(["odd.vmmaker.com"])
    with ScriptedServer(echo, tls_context=context) as server:
        raw = socket.create_connection(server.address, timeout=2)
        sock = world.ca.client_context().wrap_socket(raw, server_hostname="odd.vmmaker.com")
        sock.sendall(b"hello")
        assert sock.recv(100) == b"HELLO"
        sock.close()
        assert len(server.connections) == 1


def test_scripted_server_stop_releases_held_connection():
    def hold(conn):
        while conn.recv(100):
            pass

    server = ScriptedServer(hold).start()
    client = socket.create_connection(server.address, timeout=2)
    time.sleep(0.05)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.0
    assert client.recv(10) == b""
    client.close()
