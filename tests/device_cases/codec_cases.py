# httpcodec and retryafter on the device: status line, headers, body framing, limits,
# URL splitting and request encoding; Retry-After in both forms.
import io
from casekit import case, table, eq, ok, raises, run
from vmmaker import httpcodec, retryafter
from vmmaker.errors import ProtocolError, BodyTooLarge, ConfigError

CAP = 64


def resp(raw, method="GET", cap=CAP):
    return httpcodec.read_response(io.BytesIO(raw), method, cap)


def head(status, *lines):
    return ("HTTP/1.1 %s\r\n" % status).encode() + b"".join(l.encode() + b"\r\n" for l in lines) + b"\r\n"


# --- status line -----------------------------------------------------------------------

table("status_ok_", [
    ("200", b"HTTP/1.1 200 OK\r\n", 200),
    ("404_http10", b"HTTP/1.0 404 Not Found\r\n", 404),
    ("no_reason", b"HTTP/1.1 204\r\n", 204),
    ("bare_lf", b"HTTP/1.1 503 Service Unavailable\n", 503),
    ("no_eol", b"HTTP/1.1 302", 302),
    ("100", b"HTTP/1.1 100 Continue\r\n", 100),
    ("599", b"HTTP/1.1 599 x\r\n", 599),
], lambda line, code: eq(httpcodec.parse_status_line(line), code))

table("status_bad_", [
    ("empty", b""),
    ("http2", b"HTTP/2 200 OK\r\n"),
    ("not_http", b"FOO/1.1 200 OK\r\n"),
    ("lowercase", b"http/1.1 200 OK\r\n"),
    ("letters", b"HTTP/1.1 abc OK\r\n"),
    ("too_high", b"HTTP/1.1 600 X\r\n"),
    ("too_low", b"HTTP/1.1 099 X\r\n"),
    ("no_space", b"HTTP/1.1200 OK\r\n"),
    ("short", b"HTTP/1.1 20\r\n"),
    ("signed", b"HTTP/1.1 +20 OK\r\n"),
    ("underscore", b"HTTP/1.1 2_0 OK\r\n"),
    ("spaces_in_code", b"HTTP/1.1  20 OK\r\n"),
    ("garbage", b"\x00\xff\xfe garbage\r\n"),
], lambda line: raises(ProtocolError, httpcodec.parse_status_line, line))


# --- headers -----------------------------------------------------------------------------

table("header_ok_", [
    ("lowercased", b"Content-Type: application/json\r\n", ("content-type", "application/json")),
    ("trimmed", b"X-VMM-Reason:   db-error  \r\n", ("x-vmm-reason", "db-error")),
    ("colon_in_value", b"Location: https://h:443/v1/x\r\n", ("location", "https://h:443/v1/x")),
    ("empty_value", b"X-Empty:\r\n", ("x-empty", "")),
], lambda line, want: eq(httpcodec.parse_header_line(line), want))

# Only SP and HTAB are optional whitespace; CPython's str.strip() would also eat
# U+00A0 or \x1c, MicroPython's would not, so the codec strips bytes itself.
table("header_ows_", [
    ("nbsp_kept", b"X-A: \xc2\xa0v\r\n", ("x-a", "\u00a0v")),
    ("fs_kept", b"X-A: v\x1c\r\n", ("x-a", "v\x1c")),
    ("name_fs_kept", b"X-A\x1c: v\r\n", ("x-a\x1c", "v")),
    ("non_ascii_name_not_lowered", b"\xc3\x84: v\r\n", ("\u00c4", "v")),
    ("tabs", b"X-A:\t v \t\r\n", ("x-a", "v")),
], lambda line, want: eq(httpcodec.parse_header_line(line), want))


@case("content_length_odd_whitespace_refused")
def _():
    raises(ProtocolError, resp, head("200 OK", "Content-Length: 2\x1c") + b"hi")


@case("transfer_encoding_odd_whitespace_refused")
def _():
    raises(ProtocolError, resp, head("200 OK", "Transfer-Encoding:\u00a0chunked") + b"1\r\nx\r\n0\r\n\r\n")


table("header_bad_", [
    ("no_colon", b"NoColonHere\r\n"),
    ("empty_name", b": value\r\n"),
    ("obs_fold_space", b" continued\r\n"),
    ("obs_fold_tab", b"\tcontinued: x\r\n"),
    ("not_utf8", b"X-Bin: \xff\xfe\r\n"),
], lambda line: raises(ProtocolError, httpcodec.parse_header_line, line))


@case("headers_dict_and_duplicates")
def _():
    s, h, b = resp(head("200 OK", "X-A: 1", "x-a: 2", "Set-Cookie: a=1", "Set-Cookie: b=2",
                        "X-VMM-Server: tr/api/primary", "Content-Length: 0"))
    eq(s, 200)
    eq(h["x-a"], "1, 2", "repeated header joined")
    eq(h["set-cookie"], "b=2", "set-cookie not joined")
    eq(h["x-vmm-server"], "tr/api/primary")
    eq(b, b"")


@case("headers_too_many")
def _():
    lines = ["X-H%d: v" % i for i in range(httpcodec.MAX_HEADERS + 1)]
    raises(ProtocolError, resp, head("200 OK", *lines))


@case("headers_exactly_max")
def _():
    lines = ["X-H%d: v" % i for i in range(httpcodec.MAX_HEADERS - 1)] + ["Content-Length: 0"]
    eq(resp(head("200 OK", *lines))[0], 200)


@case("headers_eof_inside")
def _():
    e = raises(ProtocolError, resp, b"HTTP/1.1 200 OK\r\nX-A: 1\r\n")
    ok("headers" in str(e), "message says where: %s" % e)


@case("headers_bad_line_in_response")
def _():
    raises(ProtocolError, resp, b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n")


@case("bare_lf_response")
def _():
    eq(resp(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi"), (200, {"content-length": "2"}, b"hi"))


# --- line length -------------------------------------------------------------------------

@case("line_too_long_status")
def _():
    raises(ProtocolError, resp, b"HTTP/1.1 200 " + b"x" * httpcodec.MAX_LINE + b"\r\n\r\n")


@case("line_too_long_header")
def _():
    e = raises(ProtocolError, resp, head("200 OK", "X-Long: " + "y" * httpcodec.MAX_LINE))
    ok("longer" in str(e), "message names the limit: %s" % e)


@case("line_at_limit_ok")
def _():
    line = "X-Long: " + "y" * (httpcodec.MAX_LINE - 10)  # + CRLF = MAX_LINE bytes
    s, h, b = resp(head("200 OK", line, "Content-Length: 0"))
    eq(len(h["x-long"]), httpcodec.MAX_LINE - 10)


# --- Content-Length ----------------------------------------------------------------------

@case("content_length_body")
def _():
    eq(resp(head("200 OK", "Content-Length: 5") + b"hello"), (200, {"content-length": "5"}, b"hello"))


@case("content_length_extra_bytes_ignored")
def _():
    eq(resp(head("200 OK", "Content-Length: 2") + b"hiTRAILING")[2], b"hi")


@case("content_length_zero")
def _():
    eq(resp(head("200 OK", "Content-Length: 0") + b"ignored")[2], b"")


@case("content_length_same_twice_ok")
def _():
    eq(resp(head("200 OK", "Content-Length: 3", "Content-Length: 3") + b"abc")[2], b"abc")


@case("content_length_conflicting")
def _():
    e = raises(ProtocolError, resp, head("200 OK", "Content-Length: 3", "Content-Length: 4") + b"abcd")
    ok("onflicting" in str(e), str(e))


table("content_length_bad_", [
    ("letters", "abc"), ("negative", "-1"), ("list", "3, 3"), ("plus", "+3"),
    ("underscore", "1_0"), ("hex", "0x3"), ("empty", ""), ("float", "3.0"),
], lambda v: raises(ProtocolError, resp, head("200 OK", "Content-Length: " + v) + b"abcdefghijk"))


@case("closed_mid_body")
def _():
    e = raises(ProtocolError, resp, head("200 OK", "Content-Length: 10") + b"12345")
    ok("5 of 10" in str(e), "message says how much arrived: %s" % e)


# --- body cap ------------------------------------------------------------------------------

@case("cap_content_length_over")
def _():
    e = raises(BodyTooLarge, resp, head("200 OK", "Content-Length: %d" % (CAP + 1)) + b"x" * (CAP + 1))
    ok("max_body" in str(e), str(e))


@case("cap_content_length_equal_ok")
def _():
    eq(len(resp(head("200 OK", "Content-Length: %d" % CAP) + b"x" * CAP)[2]), CAP)


@case("cap_chunked_over")
def _():
    chunk = ("%x\r\n%s\r\n" % (40, "y" * 40)).encode()
    raises(BodyTooLarge, resp, head("200 OK", "Transfer-Encoding: chunked") + chunk + chunk + b"0\r\n\r\n")


@case("cap_close_delimited_over")
def _():
    raises(BodyTooLarge, resp, head("200 OK") + b"z" * (CAP + 1))


@case("cap_close_delimited_large")
def _():
    raises(BodyTooLarge, resp, head("200 OK") + b"z" * 5000, "GET", 1024)


@case("body_too_large_is_protocol_error")
def _():
    ok(issubclass(BodyTooLarge, ProtocolError), "BodyTooLarge subclasses ProtocolError")


# --- chunked -------------------------------------------------------------------------------

CH = head("200 OK", "Transfer-Encoding: chunked")


@case("chunked_one")
def _():
    eq(resp(CH + b"5\r\nhello\r\n0\r\n\r\n")[2], b"hello")


@case("chunked_three_joined")
def _():
    eq(resp(CH + b"3\r\nabc\r\n4\r\ndefg\r\nA\r\n0123456789\r\n0\r\n\r\n")[2], b"abcdefg0123456789")


@case("chunked_extensions")
def _():
    eq(resp(CH + b"3;name=value\r\nabc\r\n2 ; x=\"y\"\r\nde\r\n0;last\r\n\r\n")[2], b"abcde")


@case("chunked_trailers")
def _():
    eq(resp(CH + b"2\r\nok\r\n0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n")[2], b"ok")


@case("chunked_uppercase_hex")
def _():
    eq(resp(CH + b"B\r\nhello world\r\n0\r\n\r\n")[2], b"hello world")


@case("chunked_wins_over_content_length")
def _():
    raw = head("200 OK", "Content-Length: 100", "Transfer-Encoding: chunked") + b"2\r\nhi\r\n0\r\n\r\n"
    eq(resp(raw)[2], b"hi")


@case("chunked_after_gzip")
def _():
    raw = head("200 OK", "Transfer-Encoding: gzip, chunked") + b"2\r\nhi\r\n0\r\n\r\n"
    eq(resp(raw)[2], b"hi")


@case("transfer_encoding_unsupported")
def _():
    raises(ProtocolError, resp, head("200 OK", "Transfer-Encoding: gzip") + b"xx")


table("chunked_bad_", [
    ("size_letters", b"zz\r\nab\r\n0\r\n\r\n"),
    ("size_empty", b"\r\nab\r\n0\r\n\r\n"),
    ("size_negative", b"-2\r\nab\r\n0\r\n\r\n"),
    ("size_0x", b"0x2\r\nab\r\n0\r\n\r\n"),
    ("size_underscore", b"1_0\r\n0123456789abcdef\r\n0\r\n\r\n"),
    ("no_crlf_after_data", b"2\r\nabXX\r\n0\r\n\r\n"),
    ("closed_mid_chunk", b"10\r\nabc"),
    ("closed_before_last", b"2\r\nab\r\n"),
], lambda body: raises(ProtocolError, resp, CH + body))


# --- close-delimited, no-body answers, interim answers ------------------------------------

@case("close_delimited")
def _():
    eq(resp(head("200 OK") + b"until the end")[2], b"until the end")


@case("close_delimited_empty")
def _():
    eq(resp(head("200 OK"))[2], b"")


table("no_body_", [
    ("head", "200 OK", "HEAD"),
    ("204", "204 No Content", "GET"),
    ("304", "304 Not Modified", "GET"),
], lambda status, method: eq(resp(head(status, "Content-Length: 5") + b"hello", method)[2], b""))


@case("interim_100_skipped")
def _():
    raw = head("100 Continue") + head("200 OK", "Content-Length: 2") + b"ok"
    eq(resp(raw)[:1] + (resp(raw)[2],), (200, b"ok"))


@case("interim_103_with_headers_skipped")
def _():
    raw = head("103 Early Hints", "Link: </x>") + head("102 Processing") + \
        head("201 Created", "Content-Length: 1") + b"!"
    s, h, b = resp(raw)
    eq((s, b), (201, b"!"))
    ok("link" not in h, "interim headers are dropped")


@case("switching_101_only_when_asked")
def _():
    raw = head("101 Switching Protocols", "Upgrade: websocket") + b"frames"
    raises(ProtocolError, resp, raw)  # unsolicited: the server is confused
    s, h, b = httpcodec.read_response(io.BytesIO(raw), "GET", CAP, upgrade=True)
    eq((s, h.get("upgrade"), b), (101, "websocket", b""))


@case("interim_1xx_bounded")
def _():
    eq(resp(head("100 Continue") * 5 + head("200 OK", "Content-Length: 0"))[0], 200)
    raises(ProtocolError, resp, head("100 Continue") * 6 + head("200 OK", "Content-Length: 0"))


@case("head_size_bounded")
def _():
    # 200 repeats of one name merge into one value: the head's total size is what counts.
    raw = head("200 OK", *(["X-Rep: " + "v" * 40] * 200))
    e = raises(ProtocolError, resp, raw)
    ok("larger than" in str(e), str(e))


table("malformed_", [
    ("empty", b""),
    ("garbage", b"garbage\r\n\r\n"),
    ("json_not_http", b'{"error": "x"}'),
    ("tls_alert", b"\x15\x03\x01\x00\x02\x02\x28"),
    ("only_interim", head("100 Continue")),
], lambda raw: raises(ProtocolError, resp, raw))


# --- split_url ---------------------------------------------------------------------------------

table("split_url_", [
    ("https", "https://api-tr.vmmaker.com/v1/x", ("https", "api-tr.vmmaker.com", 443, "/v1/x")),
    ("http_default_port", "http://h.example/v1/x", ("http", "h.example", 80, "/v1/x")),
    ("port", "https://clod-api-fr.vmmaker.com:8443/v1/a?b=c",
     ("https", "clod-api-fr.vmmaker.com", 8443, "/v1/a?b=c")),
    ("no_path", "https://api-de.vmmaker.com", ("https", "api-de.vmmaker.com", 443, "/")),
    ("query_no_slash", "https://h?x=1", ("https", "h", 443, "/?x=1")),
    ("case", "HTTPS://API-TR.VMMaker.COM/V1/X", ("https", "api-tr.vmmaker.com", 443, "/V1/X")),
], lambda url, want: eq(httpcodec.split_url(url), want))

table("split_url_bad_", [
    ("relative", "/v1/x"),
    ("scheme", "ftp://h/x"),
    ("userinfo", "https://user:pw@h/x"),
    ("port", "https://h:abc/x"),
    ("no_host", "https:///x"),
    ("port_only", "https://:443/x"),
], lambda url: raises(ConfigError, httpcodec.split_url, url))


# --- encode_request ---------------------------------------------------------------------------

@case("encode_get")
def _():
    eq(httpcodec.encode_request("GET", "api-tr.vmmaker.com", "/v1/x", {"X-API-Key": "k"}, None),
       b"GET /v1/x HTTP/1.1\r\nHost: api-tr.vmmaker.com\r\nX-API-Key: k\r\nConnection: close\r\n\r\n")


@case("encode_post_body_length")
def _():
    raw = httpcodec.encode_request("POST", "h", "/v1/x", {"Content-Type": "application/json"}, b'{"a":1}')
    ok(b"\r\nContent-Length: 7\r\n" in raw, raw)
    ok(raw.startswith(b"POST /v1/x HTTP/1.1\r\nHost: h\r\n"), raw)
    ok(raw.endswith(b"\r\n\r\n"), "head ends with a blank line (body sent separately)")


@case("encode_empty_body_has_length")
def _():
    ok(b"Content-Length: 0\r\n" in httpcodec.encode_request("PUT", "h", "/", {}, b""), "length 0")


table("encode_injection_", [
    ("crlf_value", {"X-A": "v\r\nX-Evil: 1"}),
    ("lf_value", {"X-A": "v\nX-Evil: 1"}),
    ("cr_value", {"X-A": "v\rX"}),
    ("crlf_name", {"X-A\r\nX-Evil": "1"}),
], lambda hdrs: raises(ConfigError, httpcodec.encode_request, "GET", "h", "/v1/x", hdrs, None))

table("encode_request_line_injection_", [
    ("path_crlf", "GET", "/v1/x HTTP/1.1\r\nX-Evil: 1\r\n\r\nGET /v1/y"),
    ("path_cr", "GET", "/v1/x\rX"),
    ("path_space", "GET", "/v1/x y"),
    ("method_crlf", "GET /\r\n", "/v1/x"),
], lambda method, path: raises(ConfigError, httpcodec.encode_request, method, "h", path, {}, None))


# --- Retry-After ------------------------------------------------------------------------------

DATE = "Sun, 06 Nov 1994 08:49:37 GMT"
T = 784111777  # that date in Unix seconds

table("retry_after_", [
    ("seconds", "120", 0, 120),
    ("zero", "0", 0, 0),
    ("spaces", " 7 ", 0, 7),
    ("date_future", DATE, T - 30, 30),
    ("date_now", DATE, T, 0),
    ("date_past", DATE, T + 3600, 0),
    ("date_lower_month", "Sun, 06 nov 1994 08:49:37 GMT", T - 5, 5),
    ("absent", None, 0, None),
    ("minus", "-1", 0, None),
    ("plus", "+1", 0, None),
    ("float", "1.0", 0, None),
    ("exponent", "1e3", 0, None),
    ("empty", "", 0, None),
    ("garbage", "soon", 0, None),
    ("superscript", "\u00b2", 0, None),
    ("nbsp", "\u00a05", 0, None),
    ("not_gmt", "Sun, 06 Nov 1994 08:49:37 PST", 0, None),
    ("bad_month", "Sun, 06 Foo 1994 08:49:37 GMT", 0, None),
    ("bad_hour", "Sun, 06 Nov 1994 25:49:37 GMT", 0, None),
    ("bad_time", "Sun, 06 Nov 1994 08:49 GMT", 0, None),
], lambda value, now, want: eq(retryafter.parse(value, now), want))


@case("http_date_epoch_values")
def _():
    eq(retryafter.http_date(DATE), T)
    eq(retryafter.http_date("Thu, 01 Jan 1970 00:00:00 GMT"), 0)
    eq(retryafter.http_date("Sat, 29 Feb 2020 12:00:00 GMT"), 1582977600)
    eq(retryafter.http_date("Fri, 31 Dec 2038 23:59:59 GMT"), 2177452799)


if __name__ == "__main__":
    run()
