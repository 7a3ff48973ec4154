# Credentials. The secret lives in one attribute and is never part of a repr or message.
from .errors import ConfigError, AuthError


class ApiKey:
    header = "X-API-Key"

    def __init__(self, key):
        if not key or not isinstance(key, str):
            raise ConfigError("api_key is missing or empty: put the device's API key in the config")
        self._value = key  # the whole header value, built once rather than per request

    def apply(self, headers):
        headers[self.header] = self._value

    def remove(self, headers):
        if self.header in headers:
            del headers[self.header]

    def refresh(self):
        return False

    def __repr__(self):
        return "<%s ****>" % type(self).__name__


class Bearer(ApiKey):
    """JWT for TR own systems; token_provider() is called for a fresh token on expiry."""
    header = "Authorization"

    def __init__(self, token=None, provider=None):
        if provider is None and not token:
            raise ConfigError("service 'own' needs a JWT: set 'token' or 'token_provider'")
        self._provider = provider
        self._value = "Bearer " + (token or self._fetch())

    def _fetch(self):
        try:
            t = self._provider()
        except Exception as e:
            raise AuthError("token_provider failed: %s" % type(e).__name__)
        if not t or not isinstance(t, str):
            raise AuthError("token_provider returned no token")
        return t

    def refresh(self):
        if self._provider is None:
            return False
        self._value = "Bearer " + self._fetch()
        return True


CREDENTIAL_HEADERS = ("x-api-key", "authorization", "cookie", "proxy-authorization")


def from_config(cfg):
    if cfg.get("service") == "own":
        return Bearer(cfg.get("token"), cfg.get("token_provider"))
    return ApiKey(cfg.get("api_key"))
