"""The webhook's HTTPS server: kopf's, with the certificate from ``--webhook-cert-dir``.

With a directory (``tls.crt``, ``tls.key``, optionally ``ca.crt``; a mounted
cert-manager Secret has exactly these), kopf serves that certificate and reloads it
when the files change. Without one, kopf makes a self-signed development certificate.
With ``--webhook-client-ca`` the server requires a client certificate from that CA: the one the
API server presents to webhooks when its admission configuration says so; nobody else connects.
kopf builds that with the optional ``certbuilder`` package; this subclass builds the same
certificate (CA flag, server and client auth, the host names as SANs) with
``cryptography``, which Lifeline already depends on, so the dev mode needs no extra.
"""
from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Collection
from pathlib import Path

import kopf


class WebhookServer(kopf.WebhookServer):
    @staticmethod
    def build_certificate(hostnames: Collection[str], password: str | None = None) -> tuple[bytes, bytes]:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        names, ips = [], []
        for host in hostnames:
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                names.append(host)
            else:
                if not ip.is_unspecified:
                    ips.append(ip)
        common = names[0] if names else str(ips[0])
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])
        now = datetime.datetime.now(datetime.timezone.utc)
        sans = [x509.DNSName(n) for n in dict.fromkeys(names)] + [x509.IPAddress(i) for i in dict.fromkeys(ips)]
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=365))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(key, hashes.SHA256()))
        encryption = (serialization.BestAvailableEncryption(password.encode()) if password
                      else serialization.NoEncryption())
        return (cert.public_bytes(serialization.Encoding.PEM),
                key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))


def server(options) -> WebhookServer:
    """The server for ``options.webhook_port`` (and ``webhook_cert_dir``, ``webhook_host``)."""
    kwargs: dict = {}
    cert_dir = getattr(options, "webhook_cert_dir", None)
    if cert_dir:
        d = Path(cert_dir)
        kwargs.update(certfile=d / "tls.crt", pkeyfile=d / "tls.key")
        if (d / "ca.crt").exists():
            kwargs["cafile"] = d / "ca.crt"
    client_ca = getattr(options, "webhook_client_ca", None)
    if client_ca:  # only the API server (its admission configuration's certificate) gets through
        kwargs.update(verify_mode=ssl.CERT_REQUIRED, verify_cafile=client_ca)
    host = getattr(options, "webhook_host", None)
    return WebhookServer(addr=getattr(options, "webhook_addr", None) or "0.0.0.0", port=options.webhook_port,
                         host=host, extra_sans=[host] if host else (), **kwargs)
