"""host_sim.requests_transport.RequestsTransport (CPython only): the Client over `requests`.

`responses` mocks requests for the failover logic; a real loopback TLS server (trustme CA)
checks the 'ca' pinning, since responses never does TLS.
"""
import http.server
import json
import ssl
import os
import subprocess
import sys
import threading

import pytest
import requests
import responses
import trustme

from host_sim.runner import FIRMWARE

sys.path.insert(0, str(FIRMWARE))
import vmmaker  # noqa: E402
from vmmaker.errors import (AuthError, BodyTooLarge, ConfigError, ConnectError,  # noqa: E402
                            ProtocolError, RedirectError, RequestTimeout, TLSError)
from host_sim.requests_transport import RequestsTransport  # noqa: E402

KEY = "SECRET-KEY-123"
PRI = "https://api-tr.vmmaker.com"
BAK = "https://backup-api-tr.vmmaker.com"
OWN = "https://api.vmmaker.com.tr"
OWNB = "https://backup-api.vmmaker.com.tr"


def client(**kw):
    cfg = dict(region="tr", api_key=KEY, transport=RequestsTransport(), backoff_base=0.001,
               backoff_cap=0.002)
    cfg.update(kw)
    return vmmaker.Client(**cfg)


def ok_json(server):
    return {"json": {"request": "status", "data": 1, "server": server},
            "headers": {"X-VMM-Server": server}}


def urls():
    return [c.request.url for c in responses.calls]


def test_no_ca_needed_and_requests_imported_lazily():
    c = vmmaker.Client(region="tr", api_key=KEY, transport=RequestsTransport())
    assert c.plan[0].host == "api-tr.vmmaker.com"
    code = ("import sys; import vmmaker, host_sim.requests_transport; "
            "print('requests' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": os.pathsep.join([str(FIRMWARE), str(FIRMWARE.parent)])},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@responses.activate
def test_happy_get_sends_key_to_vm_maker_host():
    responses.get(PRI + "/v1/status", **ok_json("tr/api/primary"))
    r = client().get("/v1/status")
    assert (r.status_code, r.json()["data"], r.role, r.region, r.attempts) == (200, 1, "primary", "tr", 1)
    assert r.headers["x-vmm-server"] == "tr/api/primary"
    sent = responses.calls[0].request
    assert sent.headers["X-API-Key"] == KEY
    assert sent.headers["X-VMM-Attempt"] == "1"
    assert sent.headers["User-Agent"].startswith("vmmaker-sdk/")
    assert sent.method == "GET" and sent.body is None


@responses.activate
def test_503_network_error_fails_over_to_backup():
    responses.get(PRI + "/v1/x", status=503, json={"error": "network-error"},
                  headers={"X-VMM-Reason": "network-error", "X-VMM-Server": "tr/api/primary"})
    responses.get(BAK + "/v1/x", **ok_json("tr/api/backup"))
    r = client().get("/v1/x")
    assert (r.status_code, r.role, r.attempts) == (200, "backup", 2)
    assert urls() == [PRI + "/v1/x", BAK + "/v1/x"]
    assert [c.request.headers["X-API-Key"] for c in responses.calls] == [KEY, KEY]
    assert [c.request.headers["X-VMM-Attempt"] for c in responses.calls] == ["1", "2"]


@responses.activate
def test_302_failover_redirect_followed_by_the_client_not_requests():
    # Flow 1 (TR own systems): 500 db-error, the same server again answers 302 to its backup.
    responses.get(OWN + "/v1/x", status=500, headers={"X-VMM-Reason": "db-error"}, json={})
    responses.get(OWN + "/v1/x", status=302, headers={"X-VMM-Reason": "failover",
                                                     "Location": OWNB + "/v1/x"})
    responses.get(OWNB + "/v1/x", **ok_json("tr/own/backup"))
    r = client(service="own", token="jwt-1").get("/v1/x")
    assert (r.status_code, r.role, r.attempts) == (200, "backup", 2)
    assert r.history == [("api.vmmaker.com.tr", 500), ("api.vmmaker.com.tr", 302),
                         ("backup-api.vmmaker.com.tr", 200)]
    assert urls() == [OWN + "/v1/x", OWN + "/v1/x", OWNB + "/v1/x"]
    assert all(c.request.headers["Authorization"] == "Bearer jwt-1" for c in responses.calls)


@responses.activate
def test_post_302_keeps_body_and_idempotency_key():
    responses.post(PRI + "/v1/data", status=302, headers={"Location": BAK + "/v1/data"})
    responses.post(BAK + "/v1/data", **ok_json("tr/api/backup"))
    client().post("/v1/data", json={"v": 1})
    a, b = (c.request for c in responses.calls)
    assert b.method == "POST" and b.body == a.body == b'{"v": 1}'
    assert len(a.headers["Idempotency-Key"]) == 32
    assert a.headers["Idempotency-Key"] == b.headers["Idempotency-Key"]


@responses.activate
def test_redirect_to_stranger_refused_and_never_contacted():
    responses.get(PRI + "/v1/x", status=302, headers={"Location": "https://evil.example.com/v1/x"})
    with pytest.raises(RedirectError) as ei:
        client().get("/v1/x")
    assert "evil.example.com" in str(ei.value) and KEY not in str(ei.value)
    assert urls() == [PRI + "/v1/x"]


@responses.activate
@pytest.mark.parametrize("status", [401, 403])
def test_bad_key_is_final_auth_error(status):
    responses.get(PRI + "/v1/x", status=status, json={"error": "bad-key"},
                  headers={"X-VMM-Reason": "bad-key"})
    with pytest.raises(AuthError) as ei:
        client().get("/v1/x")
    assert ei.value.response.status_code == status
    assert "api_key" in str(ei.value) and KEY not in str(ei.value)
    assert len(responses.calls) == 1


@responses.activate
@pytest.mark.parametrize("error", [requests.exceptions.ConnectionError("refused"),
                                   requests.exceptions.ConnectTimeout("connect timed out"),
                                   requests.exceptions.ReadTimeout("read timed out"),
                                   requests.exceptions.SSLError("certificate verify failed"),
                                   requests.exceptions.ChunkedEncodingError("bad chunk")])
def test_transport_error_fails_over_to_backup(error):
    responses.get(PRI + "/v1/x", body=error)
    responses.get(BAK + "/v1/x", **ok_json("tr/api/backup"))
    r = client().get("/v1/x")
    assert (r.role, r.attempts) == ("backup", 2)
    assert r.history[0][0] == "api-tr.vmmaker.com"
    assert responses.calls[1].request.headers["X-API-Key"] == KEY


@responses.activate
def test_all_unreachable_raises_connect_error_without_secret():
    for host in ("api-tr", "backup-api-tr", "api-de", "backup-api-de"):
        responses.get("https://%s.vmmaker.com/v1/x" % host, body=requests.exceptions.ConnectionError("no"))
    with pytest.raises(ConnectError) as ei:
        client(max_attempts=4).get("/v1/x")
    assert len(ei.value.history) == 4
    assert KEY not in str(ei.value) and KEY not in repr(ei.value.history)


# --- the transport on its own -------------------------------------------------------------------

def send(t, path="/v1/x", method="GET", host="api-tr.vmmaker.com", port=443, headers=None,
         body=None, left_ms=5000, scheme="https"):
    return t.send(scheme, host, port, method, path, headers or {}, body, left_ms)


@pytest.mark.parametrize("error,cls,sent", [
    (requests.exceptions.ConnectionError("refused"), ConnectError, True),
    (requests.exceptions.ConnectTimeout("slow"), ConnectError, False),
    (requests.exceptions.ReadTimeout("slow"), RequestTimeout, True),
    (requests.exceptions.SSLError("bad cert"), TLSError, False),
    (requests.exceptions.ChunkedEncodingError("bad"), ProtocolError, True),
    (requests.exceptions.ContentDecodingError("bad"), ProtocolError, True),
    (requests.exceptions.InvalidHeader("bad"), ConfigError, False),
    (requests.exceptions.TooManyRedirects("odd"), ConnectError, True),
])
@responses.activate
def test_error_mapping(error, cls, sent):
    responses.get(PRI + "/v1/x", body=error)
    with pytest.raises(cls) as ei:
        send(RequestsTransport())
    assert ei.value.sent is sent


@responses.activate
def test_url_port_headers_and_body():
    responses.put("https://api-tr.vmmaker.com:8443/v1/x", body=b"ok", status=201,
                  headers={"X-VMM-Server": "tr/api/primary", "Set-Cookie": "a=1"})
    status, headers, body = send(RequestsTransport(), method="PUT", port=8443, body=b"{}",
                                 headers={"Content-Type": "application/json"})
    assert (status, body) == (201, b"ok")
    assert headers["x-vmm-server"] == "tr/api/primary"
    assert all(k == k.lower() for k in headers)
    assert responses.calls[0].request.body == b"{}"


@responses.activate
def test_redirect_not_followed_by_requests():
    responses.get(PRI + "/v1/x", status=307, headers={"Location": "/v1/y"})
    status, headers, body = send(RequestsTransport())
    assert (status, headers["location"]) == (307, "/v1/y")
    assert len(responses.calls) == 1


@responses.activate
@pytest.mark.parametrize("size,cap,ok", [(100, 100, True), (101, 100, False), (5000, 1024, False)])
def test_body_cap(size, cap, ok):
    responses.get(PRI + "/v1/x", body=b"z" * size)
    t = RequestsTransport(max_body=cap)
    if ok:
        assert len(send(t)[2]) == size
    else:
        with pytest.raises(BodyTooLarge) as ei:
            send(t)
        assert ei.value.sent is True


@responses.activate
def test_body_cap_without_content_length():
    responses.get(PRI + "/v1/x", body=b"z" * 3000, auto_calculate_content_length=False)
    with pytest.raises(BodyTooLarge):
        send(RequestsTransport(max_body=1000))


def test_deadline_spent_before_sending():
    with pytest.raises(RequestTimeout) as ei:
        send(RequestsTransport(), left_ms=0)
    assert ei.value.sent is False


def test_ca_with_verify_false_is_a_config_error():
    with pytest.raises(ConfigError):
        RequestsTransport(ca="-----BEGIN CERTIFICATE-----", verify=False)


# --- real TLS on loopback: 'ca' pins the trusted CA -------------------------------------------

@pytest.fixture(scope="module")
def tls_server():
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"key": self.headers.get("X-API-Key"), "path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield ca.cert_pem.bytes().decode(), srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_tls_pinned_ca_accepts_its_server(tls_server):
    pem, port = tls_server
    t = RequestsTransport(ca=pem)
    status, headers, body = send(t, host="localhost", port=port, headers={"X-API-Key": "k"})
    assert status == 200 and json.loads(body) == {"key": "k", "path": "/v1/x"}
    t.close()


@pytest.mark.parametrize("which", ["default_bundle", "other_ca"])
def test_tls_untrusted_server_is_tls_error(tls_server, which):
    pem, port = tls_server
    t = RequestsTransport() if which == "default_bundle" else RequestsTransport(ca=trustme.CA().cert_pem.bytes())
    with pytest.raises(TLSError) as ei:
        send(t, host="localhost", port=port)
    assert ei.value.sent is False


def test_tls_wrong_host_name_is_tls_error(tls_server):
    pem, port = tls_server
    # 127.0.0.1 is the same server, but its certificate names only "localhost".
    with pytest.raises(TLSError) as ei:
        send(RequestsTransport(ca=pem), host="127.0.0.1", port=port)
    assert ei.value.sent is False


def test_connection_refused_is_connect_error_not_sent():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(ConnectError) as ei:
        send(RequestsTransport(), scheme="http", host="127.0.0.1", port=port)
    assert ei.value.sent is False
