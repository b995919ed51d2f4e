"""The certificates a local control plane needs, made with ``cryptography``.

One certificate authority signs everything: the API server's serving certificate, and the
client certificates that are people and components to Kubernetes (the common name is the user,
each organisation a group: ``O=system:masters`` is the admin). A second key pair signs and
verifies ServiceAccount tokens. Keys are EC P-256 (fast to make; the API server accepts them
for serving, clients and ServiceAccount tokens alike). Nothing here is meant to leave the
machine: the directory is the cluster's own and goes with it.
"""
from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=30)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, private: bool = False) -> Path:
    path.write_bytes(data)
    path.chmod(0o600 if private else 0o644)
    return path


@dataclass(frozen=True)
class Pair:
    """A certificate and its key, as files."""
    cert: Path
    key: Path


class Authority:
    """A CA in ``directory``: ``ca.crt``/``ca.key``; issues serving and client certificates there."""

    def __init__(self, directory: Path, name: str = "lifeline-local-ca"):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._key = _key()
        now = datetime.datetime.now(datetime.timezone.utc)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self._cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                      .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
                      .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
                      .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                      .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                   content_commitment=False, key_encipherment=False,
                                                   data_encipherment=False, key_agreement=False,
                                                   encipher_only=False, decipher_only=False), critical=True)
                      .sign(self._key, hashes.SHA256()))
        self.cert = _write(self.directory / "ca.crt", self._cert.public_bytes(serialization.Encoding.PEM))
        self.key = _write(self.directory / "ca.key", _pem_key(self._key), private=True)

    @property
    def pem(self) -> bytes:
        return self._cert.public_bytes(serialization.Encoding.PEM)

    def _issue(self, stem: str, subject: x509.Name, usage, sans: list | None = None) -> Pair:
        key = _key()
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(self._cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return Pair(_write(self.directory / f"{stem}.crt", cert.public_bytes(serialization.Encoding.PEM)),
                    _write(self.directory / f"{stem}.key", _pem_key(key), private=True))

    def serving(self, stem: str, hosts: list[str]) -> Pair:
        """A server certificate valid for ``hosts`` (names and IP addresses)."""
        sans = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
        return self._issue(stem, subject, ExtendedKeyUsageOID.SERVER_AUTH, sans)

    def client(self, stem: str, user: str, groups: tuple[str, ...] = ()) -> Pair:
        """A client certificate: to Kubernetes, ``user`` in ``groups``."""
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, user)]
        attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
        return self._issue(stem, x509.Name(attrs), ExtendedKeyUsageOID.CLIENT_AUTH)


def signing_key(directory: Path) -> tuple[Path, Path]:
    """The ServiceAccount token signing key pair: (private key, public key) files."""
    key = _key()
    private = _write(Path(directory) / "sa.key", _pem_key(key), private=True)
    public = _write(Path(directory) / "sa.pub", key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public
