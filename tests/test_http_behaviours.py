"""HTTP behaviours of the firmware's own client, over real loopback sockets (and real TLS where
TLS is the point), on both interpreters. Each test scripts a raw server, runs a device snippet
in a subprocess, and checks both what the device reported and what the server saw.
"""

import pytest

from host_sim.ca import CertificateAuthority, self_signed_context
from tests.servers import (API_KEY, BACKUP, PRIMARY, Scripted, device_call, fr_api_config,
                           http_response, run_device, wait_for)

OUTSIDE = "evil.example.com"


@pytest.fixture(scope="module")
def ca():
    return CertificateAuthority()


def ok(body=b'{"ok": true}', headers=()):
    return http_response(200, body, headers)


# -- framing ------------------------------------------------------------------------------


def test_chunked_body_is_joined(device):
    def respond(conn, request, n):
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                     b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\nX-Trailer: t\r\n\r\n")

    with Scripted(respond) as srv:
        out = device_call(device, fr_api_config({PRIMARY: srv.address}), 'c.get("/v1/x")')
    assert out["ok"], out
    assert out["status"] == 200
    assert out["content"] == "hello world!"


def test_content_length_body_returns_while_connection_held_open(device):
    # The server sends exactly Content-Length bytes and keeps the socket open: the client
    # must stop reading at the length, not wait for EOF or the 10 s read timeout.
    def respond(conn, request, n):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
        srv.hold_open(conn)

    with Scripted(respond) as srv:
        out = device_call(device, fr_api_config({PRIMARY: srv.address}, timeout=10, deadline=20),
                          'c.get("/v1/x")')
        assert wait_for(lambda: srv.client_closed == 1)  # the client closed its socket itself
    assert out["ok"], out
    assert out["content"] == "OK"
    assert out["elapsed_ms"] < 5000, out


@pytest.mark.parametrize("failover", [False, True], ids=["one-attempt", "failover"])
def test_silent_server_times_out(device, failover):
    # Accepts, reads nothing, never sends a byte. With failover the backup is silent too.
    def respond(conn, request, n):
        srv.hold_open(conn)

    with Scripted(respond, parse=False) as srv:
        mapping = {PRIMARY: srv.address, BACKUP: srv.address}
        cfg = fr_api_config(mapping, timeout=1, connect_timeout=1, deadline=4,
                            max_attempts=2 if failover else 1, alternates={})
        out = device_call(device, cfg, 'c.get("/v1/x")')
        assert srv.connections == (2 if failover else 1)
        assert wait_for(lambda: srv.client_closed == srv.connections)
    assert not out["ok"]
    assert out["error"] == "RequestTimeout", out
    assert out["elapsed_ms"] < 5000, out
    assert "api-fr.vmmaker.com" in out["message"]


@pytest.mark.parametrize("part", ["status-line", "body"])
def test_slow_drip_ends_at_the_deadline(device, part):
    # One byte every 0.3 s: each read is well inside the read timeout, so only the call's
    # deadline (2 s) can stop it; a reader that waits for whole lines or bodies with a fresh
    # timeout per byte would go on for a minute.
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
    drip = head if part == "status-line" else b"x" * 100

    def respond(conn, request, n):
        import time
        if part == "body":
            conn.sendall(head)
        for i in range(len(drip)):
            if srv.server.stopping:
                return
            try:
                conn.sendall(drip[i:i + 1])
            except OSError:
                return  # the client gave up: that is the point
            time.sleep(0.3)

    with Scripted(respond) as srv:
        cfg = fr_api_config({PRIMARY: srv.address}, timeout=1.5, deadline=2, alternates={})
        out = device_call(device, cfg, 'c.get("/v1/x")')
    assert not out["ok"], out
    assert out["error"] == "RequestTimeout", out
    assert out["elapsed_ms"] < 4500, out


# -- redirects ----------------------------------------------------------------------------


def test_302_relative_location_followed_on_same_host(device):
    def respond(conn, request, n):
        if request.path == "/v1/start":
            conn.sendall(http_response(302, headers=[("Location", "/v1/x")]))
        else:
            conn.sendall(ok(b'{"at": "x"}'))

    with Scripted(respond) as srv:
        out = device_call(device, fr_api_config({PRIMARY: srv.address}), 'c.get("/v1/start")')
    assert out["ok"], out
    assert out["status"] == 200 and out["content"] == '{"at": "x"}'
    assert [r.path for r in srv.requests] == ["/v1/start", "/v1/x"]
    second = srv.requests[1]
    assert second.method == "GET"
    assert second.headers["host"] == PRIMARY
    assert second.headers["x-api-key"] == API_KEY  # same host: credentials stay


def test_redirect_increments_attempt_header(device):
    # docs/PROTOCOL.md: X-VMM-Attempt is "+1 for each retry/failover/redirect".
    def respond(conn, request, n):
        if request.path == "/v1/start":
            conn.sendall(http_response(302, headers=[("Location", "/v1/x")]))
        else:
            conn.sendall(ok())

    with Scripted(respond) as srv:
        out = device_call(device, fr_api_config({PRIMARY: srv.address}), 'c.get("/v1/start")')
    assert out["ok"], out
    assert [r.headers["x-vmm-attempt"] for r in srv.requests] == ["1", "2"]


def test_201_with_location_is_an_answer(device):
    def respond(conn, request, n):
        conn.sendall(http_response(201, b'{"id": 7}', [("Location", "/v1/items/7")]))

    with Scripted(respond) as srv:
        out = device_call(device, fr_api_config({PRIMARY: srv.address}),
                          'c.post("/v1/items", json={"a": 1})')
    assert out["ok"], out
    assert out["status"] == 201
    assert out["headers"]["location"] == "/v1/items/7"
    assert out["content"] == '{"id": 7}'
    assert len(srv.requests) == 1


def test_redirect_to_outside_host_refused_and_key_never_sent(device):
    # The outside host IS reachable (mapped to a live server), so only the allow-list stops it.
    def respond(conn, request, n):
        conn.sendall(http_response(302, headers=[("Location", "http://%s/v1/steal" % OUTSIDE)]))

    def outside_respond(conn, request, n):
        conn.sendall(ok())

    with Scripted(respond) as srv, Scripted(outside_respond) as outside:
        cfg = fr_api_config({PRIMARY: srv.address, OUTSIDE: outside.address})
        run = run_device(device, cfg, 'c = client()\nemit(describe(lambda: c.get("/v1/x")))\n')
        out = run.result
        assert outside.connections == 0
    assert not out["ok"]
    assert out["error"] == "RedirectError", out
    assert OUTSIDE in out["message"] and "allow" in out["message"]
    assert len(srv.requests) == 1
    assert API_KEY not in run.stdout + run.stderr


def test_redirect_to_allowed_host_reattaches_key_but_drops_caller_credentials(device):
    def respond(conn, request, n):
        conn.sendall(http_response(307, headers=[("Location", "http://%s/v1/y" % BACKUP)]))

    def backup_respond(conn, request, n):
        conn.sendall(ok())

    with Scripted(respond) as srv, Scripted(backup_respond) as backup:
        cfg = fr_api_config({PRIMARY: srv.address, BACKUP: backup.address})
        out = device_call(device, cfg, 'c.get("/v1/x", headers={"Cookie": "caller-secret"})')
    assert out["ok"], out
    assert srv.requests[0].headers["cookie"] == "caller-secret"
    moved = backup.requests[0]
    assert moved.headers["host"] == BACKUP
    assert moved.headers["x-api-key"] == API_KEY  # allow-listed: the SDK's own key re-attached
    assert "cookie" not in moved.headers  # host changed: the caller's credential is dropped


def test_redirect_loop_stops_at_hop_limit(device):
    def respond(conn, request, n):
        conn.sendall(http_response(302, headers=[("Location", "/v1/loop%d" % n)]))

    with Scripted(respond) as srv:
        cfg = fr_api_config({PRIMARY: srv.address}, max_redirects=3, deadline=5)
        out = device_call(device, cfg, 'c.get("/v1/start")')
    assert not out["ok"]
    assert out["error"] == "RedirectError", out
    assert "3" in out["message"]
    assert len(srv.requests) == 3 + 1
    assert out["elapsed_ms"] < 5000


def test_https_to_http_redirect_refused(device, ca):
    def respond(conn, request, n):
        conn.sendall(http_response(302, headers=[("Location", "http://%s/v1/x" % BACKUP)]))

    def backup_respond(conn, request, n):
        conn.sendall(ok())

    tls = ca.server_context([PRIMARY])
    with Scripted(respond, tls_context=tls) as srv, Scripted(backup_respond) as backup:
        cfg = fr_api_config({PRIMARY: srv.address, BACKUP: backup.address},
                            insecure_http=False, ca=ca.cert_pem.decode())
        out = device_call(device, cfg, 'c.get("/v1/x")')
        assert backup.connections == 0
    assert len(srv.requests) == 1  # the TLS request itself went through
    assert not out["ok"]
    assert out["error"] == "RedirectError", out
    assert "https to http" in out["message"]


def _redirect_then_record(status):
    def respond(conn, request, n):
        if request.path == "/v1/a":
            conn.sendall(http_response(status, headers=[("Location", "/v1/b")]))
        else:
            conn.sendall(ok())
    return respond


def test_303_after_post_becomes_get_without_body(device):
    with Scripted(_redirect_then_record(303)) as srv:
        out = device_call(device, fr_api_config({PRIMARY: srv.address}),
                          'c.post("/v1/a", json={"v": 1})')
    assert out["ok"], out
    first, second = srv.requests
    assert (first.method, first.json()) == ("POST", {"v": 1})
    assert first.headers["content-type"] == "application/json"
    assert second.method == "GET" and second.path == "/v1/b"
    assert second.body == b""
    assert not [name for name, _ in second.raw_headers if name.lower().startswith("content-")]


def test_307_after_post_keeps_method_body_and_key(device):
    with Scripted(_redirect_then_record(307)) as srv:
        out = device_call(device, fr_api_config({PRIMARY: srv.address}),
                          'c.post("/v1/a", json={"v": 1})')
    assert out["ok"], out
    first, second = srv.requests
    assert second.method == "POST" and second.path == "/v1/b"
    assert second.body == first.body and second.json() == {"v": 1}
    assert second.headers["content-type"] == "application/json"
    assert len(second.headers["idempotency-key"]) == 32
    assert second.headers["idempotency-key"] == first.headers["idempotency-key"]


def test_failover_after_303_resends_post_with_content_type(device):
    # A 303 turns *that hop* into a GET; if the GET then fails, the failover must resend the
    # caller's original POST intact (body and its Content-Type), not a half-stripped copy.
    def respond(conn, request, n):
        if request.method == "POST":
            conn.sendall(http_response(303, headers=[("Location", "/v1/b")]))
        else:
            conn.sendall(http_response(503, b"{}", [("X-VMM-Reason", "network-error")]))

    def backup_respond(conn, request, n):
        conn.sendall(http_response(201, b"{}"))

    with Scripted(respond) as srv, Scripted(backup_respond) as backup:
        cfg = fr_api_config({PRIMARY: srv.address, BACKUP: backup.address}, max_attempts=2,
                            alternates={})
        out = device_call(device, cfg, 'c.post("/v1/a", json={"v": 1})')
    assert out["ok"], out
    assert [r.method for r in srv.requests] == ["POST", "GET"]
    resent = backup.requests[0]
    assert (resent.method, resent.path, resent.json()) == ("POST", "/v1/a", {"v": 1})
    assert resent.headers.get("content-type") == "application/json"
    assert resent.headers["idempotency-key"] == srv.requests[0].headers["idempotency-key"]


# -- TLS ----------------------------------------------------------------------------------


def _bad_tls_context(kind, ca):
    if kind == "self-signed":
        return self_signed_context([PRIMARY])
    return ca.wrong_host_context()


@pytest.mark.parametrize("kind", ["self-signed", "wrong-host"])
def test_bad_certificate_rejected(device, ca, kind):
    def respond(conn, request, n):
        conn.sendall(ok())

    with Scripted(respond, tls_context=_bad_tls_context(kind, ca)) as srv:
        cfg = fr_api_config({PRIMARY: srv.address}, insecure_http=False, ca=ca.cert_pem.decode())
        run = run_device(device, cfg, 'c = client()\nemit(describe(lambda: c.get("/v1/x")))\n')
        out = run.result
        assert srv.connections == 1
    assert not out["ok"]
    assert out["error"] == "TLSError", out
    assert "TLS" in out["message"] and PRIMARY in out["message"]
    assert not srv.requests  # nothing (no key) was sent over the untrusted channel
    assert API_KEY not in run.stdout + run.stderr


def test_bad_certificates_on_primary_and_backup(device, ca):
    def respond(conn, request, n):
        conn.sendall(ok())

    with Scripted(respond, tls_context=self_signed_context([PRIMARY])) as srv, \
            Scripted(respond, tls_context=ca.wrong_host_context()) as backup:
        cfg = fr_api_config({PRIMARY: srv.address, BACKUP: backup.address}, insecure_http=False,
                            ca=ca.cert_pem.decode(), max_attempts=2, alternates={})
        out = device_call(device, cfg, 'c.get("/v1/x")')
        assert (srv.connections, backup.connections) == (1, 1)
    assert not out["ok"]
    assert out["error"] == "TLSError", out
    assert BACKUP in out["message"]
    assert [h[1] for h in out["history"]] == ["tls", "tls"]


def test_good_certificate_accepted(device, ca):
    # The control for the two tests above: the same server with a proper leaf works.
    def respond(conn, request, n):
        conn.sendall(ok(b"secure"))

    with Scripted(respond, tls_context=ca.server_context([PRIMARY])) as srv:
        cfg = fr_api_config({PRIMARY: srv.address}, insecure_http=False, ca=ca.cert_pem.decode())
        out = device_call(device, cfg, 'c.get("/v1/x")')
    assert out["ok"], out
    assert out["content"] == "secure"
    assert srv.requests[0].headers["x-api-key"] == API_KEY


def test_ca_bundle_with_text_around_it(device, ca):
    # A CA file as people have them: a comment first, and a bundle during a CA rotation
    # with the CA that signs the server second. Every CA of the bundle must be trusted.
    def respond(conn, request, n):
        conn.sendall(ok(b"rotated"))

    other = CertificateAuthority()
    bundle = ("# VM Maker CAs (old, new)\n" + other.cert_pem.decode() + "\n"
              + ca.cert_pem.decode() + "# end\n")
    with Scripted(respond, tls_context=ca.server_context([PRIMARY])) as srv:
        cfg = fr_api_config({PRIMARY: srv.address}, insecure_http=False, ca=bundle)
        out = device_call(device, cfg, 'c.get("/v1/x")')
    assert out["ok"], out
    assert out["content"] == "rotated"


# -- bad input ----------------------------------------------------------------------------

BAD_ANSWERS = {
    "malformed-status-line": (b"HTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK",
                              "ProtocolError", "status line"),
    "garbage-header": (b"HTTP/1.1 200 OK\r\n\x00\x01garbage without colon\r\n\r\nOK",
                       "ProtocolError", "header"),
    "folded-header": (b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 0\r\n\r\n",
                      "ProtocolError", "header"),
    "bad-content-length": (b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\nOK",
                           "ProtocolError", "Content-Length"),
    "bad-chunk-size": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
                       "ProtocolError", "chunk"),
    "truncated-body": (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nOK",
                       "ProtocolError", "2 of 10"),
    "empty-answer": (b"", "ProtocolError", "closed"),
    "body-too-large-length": (b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000,
                              "BodyTooLarge", "max_body=1024"),
    "body-too-large-chunked": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                               + b"400\r\n" + b"x" * 1024 + b"\r\n" + b"10\r\n" + b"y" * 16
                               + b"\r\n0\r\n\r\n", "BodyTooLarge", "max_body=1024"),
    "body-too-large-close": (b"HTTP/1.1 200 OK\r\n\r\n" + b"z" * 3000,
                             "BodyTooLarge", "max_body=1024"),
    "long-header-line": (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 5000 + b"\r\n\r\n",
                         "ProtocolError", "longer than"),
}


@pytest.mark.parametrize("case", sorted(BAD_ANSWERS))
def test_bad_response_gives_clear_error_and_device_survives(device, case):
    raw, error, words = BAD_ANSWERS[case]

    def respond(conn, request, n):
        if n == 0:
            conn.sendall(raw)
        else:
            conn.sendall(ok(b"fine"))  # the device keeps working after the bad answer

    with Scripted(respond) as srv:
        cfg = fr_api_config({PRIMARY: srv.address}, max_body=1024)
        run = run_device(device, cfg, """
            c = client()
            emit(describe(lambda: c.get("/v1/x")))
            emit(describe(lambda: c.get("/v1/x")))
        """)
    bad, good = run.results
    assert not bad["ok"]
    assert bad["error"] == error, bad
    assert bad["vmmaker_error"]
    assert words in bad["message"], bad
    assert good["ok"] and good["content"] == "fine", good
    assert "Traceback" not in run.stdout + run.stderr  # MicroPython prints it on stdout


# -- resources ----------------------------------------------------------------------------


def test_no_socket_or_heap_growth_over_200_requests(device):
    def respond(conn, request, n):
        conn.sendall(ok(b'{"n": %d}' % n))
        srv.wait_client_close(conn, limit_s=5)

    with Scripted(respond) as srv:
        run = run_device(device, fr_api_config({PRIMARY: srv.address}), """
            import gc, os
            def fds():
                try:
                    return len(os.listdir("/proc/self/fd"))
                except Exception:
                    return -1
            def heap():
                gc.collect()
                return gc.mem_free() if hasattr(gc, "mem_free") else -1
            c = client()
            marks = {}
            bad = 0
            for i in range(1, 201):
                r = c.get("/v1/x")
                if r.status_code != 200:
                    bad += 1
                r.close()
                r = None
                if i in (20, 200):
                    marks[str(i)] = [fds(), heap()]
            emit({"bad": bad, "marks": marks})
        """, timeout=120)
        assert wait_for(lambda: srv.client_closed == 200, timeout=10), srv.client_closed
    out = run.result
    assert out["bad"] == 0
    assert srv.connections == 200
    (fd20, heap20), (fd200, heap200) = out["marks"]["20"], out["marks"]["200"]
    assert fd20 > 0 and fd200 == fd20, out
    if device.interpreter == "micropython":
        assert heap20 > 0
        assert abs(heap200 - heap20) <= 1024, out
