"""Fuzzing of the HTTP response codec (CPython, hypothesis) and a differential check that
MicroPython's run of the same codec gives the same outcome for every input.

Property: httpcodec.read_response either raises ProtocolError (BodyTooLarge included) or
returns a sane (status, headers, body) whose body is within the cap; it never raises
anything else (no IndexError/ValueError/UnicodeError escaping to the caller).
"""
import base64
import io
import json
import random
import shutil
import sys

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from host_sim.runner import FIRMWARE, Device, available_interpreters

sys.path.insert(0, str(FIRMWARE))
from vmmaker import httpcodec  # noqa: E402
from vmmaker.errors import BodyTooLarge, ProtocolError  # noqa: E402

from tests.device_cases.host import HEAP, HERE  # noqa: E402

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

STATUS_LINES = [b"HTTP/1.1 200 OK", b"HTTP/1.1 201 Created", b"HTTP/1.1 204 No Content",
                b"HTTP/1.1 304 Not Modified", b"HTTP/1.0 302 Found", b"HTTP/1.1 503 Service Unavailable",
                b"HTTP/1.1 429 Too Many Requests", b"HTTP/1.1 101 Switching Protocols",
                b"HTTP/1.1 401", b"HTTP/1.1 500 Internal Server Error"]
EXTRA_HEADERS = [(b"X-VMM-Reason", [b"db-error", b"regional-outage", b""]),
                 (b"Retry-After", [b"5", b"Sun, 06 Nov 1994 08:49:37 GMT", b"-1"]),
                 (b"Location", [b"/v1/x", b"https://backup-api-tr.vmmaker.com/v1/x"]),
                 (b"Content-Length", [b"0", b"3", b"99999999999999999999", b"-1", b"1_0", b" 4 "]),
                 (b"Transfer-Encoding", [b"chunked", b"gzip", b"gzip, chunked", b"identity"]),
                 (b"Set-Cookie", [b"a=1", b"b=2"]),
                 (b"content-length", [b"5"]),
                 (b"X-Empty", [b""])]
MUTATIONS = ("insert", "insert_at_eol", "insert_at_colon", "delete", "replace", "truncate",
             "duplicate", "swap_eol")
SPICE = [b"\r", b"\n", b"\r\n", b":", b" ", b"\t", b";", b"0", b"f", b"\x00", b"\xff", b"\xc2\xa0",
         b"\x1c", b"\x0b", b"-", b"+", b"_", b"\xe2\x80\x83", b"HTTP/1.1 ", b"\r\n\r\n", b"0\r\n\r\n"]


def build(rng):
    """A structured response (status, headers, framed body), then 0-3 random mutations.

    -> (method, cap, raw bytes, pristine) where pristine says no mutation was applied.
    """
    cap = rng.choice([0, 1, 16, 64, 1024])
    method = rng.choice(["GET", "GET", "HEAD", "POST"])
    body = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 5, 16, 63, 64, 65, 200])))
    framing = rng.choice(["length", "chunked", "close"])
    eol = b"\r\n" if rng.random() < 0.9 else b"\n"
    hdrs = [(b"X-VMM-Server", b"tr/api/primary")]
    if framing == "length":
        hdrs.append((b"Content-Length", str(len(body)).encode()))
    elif framing == "chunked":
        hdrs.append((b"Transfer-Encoding", b"chunked"))
    for _ in range(rng.choice([0, 0, 1, 2])):
        name, values = rng.choice(EXTRA_HEADERS)
        hdrs.append((name, rng.choice(values)))
    rng.shuffle(hdrs)
    raw = b""
    if rng.random() < 0.15:
        raw += b"HTTP/1.1 100 Continue" + eol + eol
    raw += rng.choice(STATUS_LINES) + eol
    raw += b"".join(n + b": " + v + eol for n, v in hdrs) + eol
    if framing == "chunked":
        i = 0
        while i < len(body):
            n = rng.randint(1, max(1, len(body) - i))
            size = ("%x" if rng.random() < 0.5 else "%X") % n
            ext = b";x=y" if rng.random() < 0.2 else b""
            raw += size.encode() + ext + eol + body[i:i + n] + eol
            i += n
        raw += b"0" + eol
        if rng.random() < 0.2:
            raw += b"X-Trailer: 1" + eol
        raw += eol
    else:
        raw += body
    pristine = True
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        pristine = False
        raw = mutate(rng, raw)
    return method, cap, raw, pristine


def mutate(rng, raw):
    op = rng.choice(MUTATIONS)
    i = rng.randint(0, len(raw))
    if op == "insert":
        return raw[:i] + rng.choice(SPICE) + raw[i:]
    if op in ("insert_at_eol", "insert_at_colon"):
        # Where parsers disagree most: next to a line end or a header's colon.
        marks = [j for j in range(len(raw)) if raw[j:j + 1] == (b"\r" if op == "insert_at_eol" else b":")]
        if marks:
            i = rng.choice(marks) + rng.choice([0, 1])
        return raw[:i] + rng.choice(SPICE) + raw[i:]
    if op == "delete":
        return raw[:i] + raw[i + rng.randint(1, 8):]
    if op == "replace":
        return raw[:i] + bytes([rng.getrandbits(8)]) + raw[i + 1:]
    if op == "truncate":
        return raw[:i]
    if op == "duplicate":
        j = rng.randint(i, min(len(raw), i + 40))
        return raw[:j] + raw[i:j] + raw[j:]
    return raw.replace(b"\r\n", b"\n", 1) if rng.random() < 0.5 else raw.replace(b"\n", b"\r\n", 1)


def parse(method, cap, raw):
    return httpcodec.read_response(io.BytesIO(raw), method, cap)


def check_sane(method, cap, raw):
    """The fuzz property. -> the parsed result, or None when a ProtocolError was raised."""
    try:
        status, headers, body = parse(method, cap, raw)
    except ProtocolError:
        return None
    assert isinstance(status, int) and (200 <= status <= 599 or status == 101), status
    assert isinstance(headers, dict)
    for k, v in headers.items():
        assert isinstance(k, str) and isinstance(v, str) and k == k.lower()
        assert "\n" not in v
    assert isinstance(body, bytes) and len(body) <= cap, (len(body), cap)
    if method == "HEAD" or status in (101, 204, 304):
        assert body == b""
    return status, headers, body


@FAST
@given(raw=st.binary(max_size=600), method=st.sampled_from(["GET", "HEAD", "POST"]),
       cap=st.sampled_from([0, 1, 64, 4096]))
@example(raw=b"HTTP/1.1 200 OK\r\nContent-Length: \xc2\xb2\r\n\r\nxx", method="GET", cap=64)
@example(raw=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x1\r\nx\r\n0\r\n\r\n",
         method="GET", cap=64)
def test_fuzz_arbitrary_bytes(raw, method, cap):
    check_sane(method, cap, raw)


@FAST
@given(prefix=st.sampled_from([b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                               b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", b"HTTP/1.1 100 Continue\r\n\r\n"]),
       raw=st.binary(max_size=400), cap=st.sampled_from([0, 8, 64]))
def test_fuzz_valid_prefix_then_bytes(prefix, raw, cap):
    check_sane("GET", cap, prefix + raw)


@FAST
@given(rng=st.randoms(use_true_random=False))
def test_fuzz_structured_mutated(rng):
    method, cap, raw, pristine = build(rng)
    check_sane(method, cap, raw)


@FAST
@given(body=st.binary(max_size=300), cap=st.integers(0, 400), sizes=st.lists(st.integers(1, 50), max_size=20),
       chunked=st.booleans())
def test_fuzz_round_trip(body, cap, sizes, chunked):
    """Well-formed framing gives back exactly the body, or BodyTooLarge above the cap."""
    if chunked:
        raw, i, k = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 0
        while i < len(body):
            n = sizes[k % len(sizes)] if sizes else len(body)
            raw += b"%x\r\n" % len(body[i:i + n]) + body[i:i + n] + b"\r\n"
            i, k = i + n, k + 1
        raw += b"0\r\n\r\n"
    else:
        raw = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    if len(body) > cap:
        with pytest.raises(BodyTooLarge):
            parse("GET", cap, raw)
    else:
        assert parse("GET", cap, raw)[2] == body


# --- differential: CPython vs MicroPython ------------------------------------------------------

def outcome(method, cap, raw):
    """What a parse came to, in a form both interpreters can report as JSON."""
    try:
        s, h, b = parse(method, cap, raw)
        return ["ok", s, h, b.hex()]
    except ProtocolError as e:
        return ["err", type(e).__name__]
    except Exception as e:  # the fuzz property says this never happens
        return ["crash", type(e).__name__, str(e)]


# Inputs on which the two interpreters once disagreed (str.strip()/lower() differ on
# non-ASCII characters), kept in every batch.
REGRESSIONS = [
    ("GET", 64, b"HTTP/1.1 200 OK\r\nContent-Length\x1c: 2\r\n\r\nhi"),
    ("GET", 64, b"HTTP/1.1 200 OK\r\nContent-Length: 2\x1c\r\n\r\nhi"),
    ("GET", 64, b"HTTP/1.1 200 OK\r\nRetry-After: \xc2\xa0 5\r\nContent-Length: 0\r\n\r\n"),
    ("GET", 64, b"HTTP/1.1 200 OK\r\n\xc3\x84: v\r\nContent-Length: 0\r\n\r\n"),
    ("GET", 0, b"HTTP/1.1 200 OK\r\nTransfer-Encoding:\x1c chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"),
    ("GET", 16, b"HTTP/1.1 200 OK\r\nTransfer-Encoding:\xc2\xa0 chunked\r\n\r\n1\r\nQ\r\n0\r\n\r\n"),
]


def batch(seed=20240601, n=400):
    rng = random.Random(seed)
    inputs = list(REGRESSIONS)
    for i in range(n):
        if i % 4 == 3:  # a quarter of plain noise, half of it behind a real status line
            noise = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 120)))
            if rng.random() < 0.5:
                noise = b"HTTP/1.1 200 OK\r\n" + noise
            inputs.append((rng.choice(["GET", "HEAD"]), 64, noise))
        else:
            method, cap, raw, _ = build(rng)
            inputs.append((method, cap, raw))
    return inputs


def test_differential_cpython_vs_micropython(tmp_path):
    if "micropython" not in available_interpreters():
        pytest.skip("micropython is not installed for this platform")
    inputs = batch()
    (tmp_path / "fuzz_inputs.jsonl").write_text("".join(
        json.dumps([m, c, base64.b64encode(r).decode()]) + "\n" for m, c, r in inputs))
    shutil.copy(str(HERE / "codec_differential.py"), str(tmp_path))
    with Device("micropython", heap=HEAP, flash_dir=tmp_path) as dev:
        proc = dev.run(tmp_path / "codec_differential.py", timeout=120)
    assert proc.returncode == 0, proc.stderr
    device = [json.loads(l) for l in (tmp_path / "fuzz_results.jsonl").read_text().splitlines()]
    host = [outcome(m, c, r) for m, c, r in inputs]
    assert len(device) == len(host)
    kinds = {}
    diffs = []
    for (m, c, r), h, d in zip(inputs, host, device):
        kinds[h[0]] = kinds.get(h[0], 0) + 1
        if h != d:
            diffs.append("%s cap=%d %r\n  cpython:     %r\n  micropython: %r" % (m, c, r[:200], h, d))
    assert not diffs, "%d of %d inputs differ:\n%s" % (len(diffs), len(inputs), "\n".join(diffs[:10]))
    assert "crash" not in kinds, kinds
    # The batch must exercise both outcomes to mean anything.
    assert kinds.get("ok", 0) >= 30 and kinds.get("err", 0) >= 30, kinds
