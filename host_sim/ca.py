"""A certificate authority made per simulator run, and the server TLS contexts it signs.

Devices trust only `ca_pem`; every mock server gets a leaf for its own VM Maker host name, so
SNI and host-name checks are real. Two deliberately bad contexts simulate TLS failures:
a self-signed leaf (not chained to the CA) and a CA-signed leaf for the wrong host name.
"""

import datetime
import ssl

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

WRONG_HOST_NAME = "wrong-host.example.com"


def _server_context():
    return ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)


def _context_from_pem(cert_pem, key_pem):
    # SSLContext only loads key material from files; trustme's Blob gives a temp file.
    ctx = _server_context()
    with trustme.Blob(cert_pem + key_pem).tempfile() as path:
        ctx.load_cert_chain(path)
    return ctx


def self_signed_pem(hostnames):
    """(cert_pem, key_pem) of a self-signed leaf for `hostnames`, trusted by nobody."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(h) for h in hostnames]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


class CertificateAuthority:
    """Per-run CA; issues server contexts for VM Maker host names."""

    def __init__(self):
        self._ca = trustme.CA(organization_name="VM Maker simulator")
        self._wrong_host_context = None

    @property
    def cert_pem(self):
        """The CA certificate, PEM bytes (what a device config's `ca` holds)."""
        return self._ca.cert_pem.bytes()

    @property
    def cert_der(self):
        """The CA certificate, DER bytes (what MicroPython's `ssl` `cadata` wants)."""
        return ssl.PEM_cert_to_DER_cert(self.cert_pem.decode("ascii"))

    def server_context(self, hostnames):
        """Server-side SSLContext presenting a CA-signed leaf for `hostnames`."""
        ctx = _server_context()
        self._ca.issue_cert(*hostnames).configure_cert(ctx)
        return ctx

    def wrong_host_context(self):
        """Server context with a valid CA-signed leaf, but for WRONG_HOST_NAME (shared)."""
        if self._wrong_host_context is None:
            self._wrong_host_context = self.server_context([WRONG_HOST_NAME])
        return self._wrong_host_context

    def client_context(self):
        """Client-side context that trusts only this CA, with host-name checks on."""
        return ssl.create_default_context(cadata=self.cert_pem.decode("ascii"))


def self_signed_context(hostnames):
    """Server context presenting a self-signed leaf for `hostnames` (fails verification)."""
    return _context_from_pem(*self_signed_pem(hostnames))
