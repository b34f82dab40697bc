"""The trust material of a local or compose cluster: a CA, broker certificates and SCRAM passwords.

Everything is made with the ``cryptography`` package and written under one folder with mode 0700
(files 0600):

```
security/
  ca.pem  ca.key              the cluster's own certificate authority (ECDSA P-256, 10 years)
  brokers/<host>.pem          a broker's private key (PKCS#8) + certificate chain: Kafka's PEM keystore
  users/<principal>.password  one random SCRAM password per principal
```

A broker certificate names ``localhost``, ``127.0.0.1`` and the broker's own host names, so clients verify
the host they connect to. The broker's certificate also authenticates it on the TLS-only controller and
inter-broker listeners (mutual TLS, principal = the certificate's CN).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

BROKER_CN = "kafka-broker"
"""The CN (and so the principal) of every broker certificate; a super user of the cluster."""


def _private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only (created 0600, never world-readable)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Samverkan Hub"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Pki:
    """The security folder of one cluster; every method is idempotent (what exists is kept)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key_file(self) -> Path:
        return self.root / "ca.key"

    @property
    def users_dir(self) -> Path:
        return self.root / "users"

    def broker_pem(self, host: str) -> Path:
        return self.root / "brokers" / f"{host}.pem"

    def password_file(self, principal: str) -> Path:
        return self.users_dir / f"{principal}.password"

    def ensure_dirs(self) -> None:
        for d in (self.root, self.users_dir, self.root / "brokers"):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(d, 0o700)

    # -- the CA ----------------------------------------------------------------------------------------

    def ensure_ca(self) -> None:
        self.ensure_dirs()
        if self.ca_file.exists() and self.ca_key_file.exists():
            return
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name("Samverkan Hub cluster CA"))
            .issuer_name(_name("Samverkan Hub cluster CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256())
        )
        _private(self.ca_key_file, _key_pem(key))
        _private(self.ca_file, cert.public_bytes(serialization.Encoding.PEM))

    def _ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        cert = x509.load_pem_x509_certificate(self.ca_file.read_bytes())
        key = serialization.load_pem_private_key(self.ca_key_file.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{self.ca_key_file} is not the CA's EC key")
        return cert, key

    # -- certificates --------------------------------------------------------------------------------------

    def issue(self, path: Path, cn: str, hosts: Iterable[str], *, server: bool) -> Path:
        """A key and certificate signed by the CA, as one PEM file (key, certificate, CA): Kafka's PEM
        keystore format, and what a client of mutual TLS loads."""
        if path.exists():
            return path
        self.ensure_ca()
        ca_cert, ca_key = self._ca()
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in dict.fromkeys(hosts):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        now = dt.datetime.now(dt.UTC)
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=825))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        pem = (_key_pem(key) + cert.public_bytes(serialization.Encoding.PEM)
               + ca_cert.public_bytes(serialization.Encoding.PEM))
        _private(path, pem)
        return path

    def ensure_broker(self, host: str, extra_hosts: Iterable[str] = ()) -> Path:
        """The PEM keystore of the broker reached as ``host`` (CN ``kafka-broker``)."""
        return self.issue(self.broker_pem(host), BROKER_CN, [host, *extra_hosts, "localhost", "127.0.0.1"],
                          server=True)

    # -- SCRAM passwords -------------------------------------------------------------------------------------

    def ensure_password(self, principal: str) -> str:
        """The principal's SCRAM password, made (48 random bytes, URL-safe) the first time it is asked for."""
        path = self.password_file(principal)
        if not path.exists():
            self.ensure_dirs()
            _private(path, secrets.token_urlsafe(48).encode())
        return path.read_text().strip()

    def set_password(self, principal: str, password: str) -> None:
        _private(self.password_file(principal), password.encode())
