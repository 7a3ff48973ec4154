# VM Maker device SDK. `Client(config)` is the entry point; see docs/PROTOCOL.md.
from .client import Client, load_config, VERSION
from .errors import (VMMakerError, ConfigError, AuthError, ProtocolError, BodyTooLarge,
                     ConnectError, RequestTimeout, TLSError, RedirectError, CircuitOpen)
