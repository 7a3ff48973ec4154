"""HS256 JSON Web Tokens for the simulated auth service (stdlib only).

Just enough of RFC 7519 for the TR own-systems endpoint: sign a claims dict, verify the
signature and the `exp` claim. The algorithm is pinned to HS256 so a token with
`"alg": "none"` (or any other) is rejected, whatever its signature says.
"""

import base64
import hashlib
import hmac
import json
import time

HEADER = {"alg": "HS256", "typ": "JWT"}


class TokenInvalid(Exception):
    """Malformed token, wrong algorithm or bad signature."""


class TokenExpired(TokenInvalid):
    """Well-signed token whose `exp` is in the past."""


def _b64url_encode(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_decode(text):
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def _json_segment(obj):
    return _b64url_encode(json.dumps(obj, separators=(",", ":"), sort_keys=True).encode())


def _signature(signing_input, secret):
    return hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()


def encode(claims, secret):
    """Return a compact HS256 JWT for `claims` signed with `secret` (bytes)."""
    signing_input = _json_segment(HEADER) + "." + _json_segment(claims)
    return signing_input + "." + _b64url_encode(_signature(signing_input, secret))


def issue(subject, ttl_s, secret, now=None):
    """Token for `subject` valid for `ttl_s` seconds (negative gives an expired token)."""
    iat = int(time.time() if now is None else now)
    return encode({"sub": subject, "iat": iat, "exp": iat + int(ttl_s)}, secret)


def decode(token, secret, now=None):
    """Verify `token` and return its claims; raise TokenInvalid or TokenExpired."""
    try:
        header_seg, claims_seg, sig_seg = token.split(".")
        header = json.loads(_b64url_decode(header_seg))
        claims = json.loads(_b64url_decode(claims_seg))
        signature = _b64url_decode(sig_seg)
    except (ValueError, AttributeError, UnicodeError) as exc:
        raise TokenInvalid("malformed token: %s" % exc) from None
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise TokenInvalid("unsupported algorithm")
    expected = _signature(header_seg + "." + claims_seg, secret)
    if not hmac.compare_digest(signature, expected):
        raise TokenInvalid("bad signature")
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), (int, float)):
        raise TokenInvalid("missing exp claim")
    if claims["exp"] <= (time.time() if now is None else now):
        raise TokenExpired("token expired")
    return claims
