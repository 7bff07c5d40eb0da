"""Deliveries over HTTPS to a real TLS receiver on loopback whose certificate comes from a
private CA: refused (retryably) until that CA is trusted through ``outbound_ca_file``."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hookline.delivery.sender import Sender
from tests.conftest import make_settings


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    signer: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture
def private_ca(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(CA bundle, server certificate, server key) as PEM files."""
    ca_key, server_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hookline test CA")])
    ca_cert = _certificate("hookline test CA", ca_key, ca_name, ca_key, ca=True)
    server_cert = _certificate("127.0.0.1", server_key, ca_name, ca_key, ca=False)
    paths = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture
async def tls_receiver(private_ca: tuple[Path, Path, Path]) -> AsyncIterator[tuple[str, list]]:
    received: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(text="ok over tls")

    app = web.Application()
    app.router.add_post("/hook", hook)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(private_ca[1], private_ca[2])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"https://127.0.0.1:{port}/hook", received
    finally:
        await runner.cleanup()


async def test_a_private_ca_is_refused_until_trusted(
    tmp_path: Path, private_ca: tuple[Path, Path, Path], tls_receiver: tuple[str, list]
) -> None:
    url, received = tls_receiver
    untrusted = make_settings(tmp_path, "sqlite", None)
    async with Sender(untrusted) as sender:
        refused = await sender.send(url, b"{}", {})
    assert refused.status is None and refused.retryable_error
    assert refused.error_class == "ClientConnectorCertificateError"
    assert received == []

    trusted = make_settings(tmp_path, "sqlite", None, outbound_ca_file=private_ca[0])
    async with Sender(trusted) as sender:
        first = await sender.send(url, b'{"n":1}', {})
        second = await sender.send(url, b'{"n":2}', {})
    assert (first.status, first.excerpt, second.status) == (200, "ok over tls", 200)
    assert received == [b'{"n":1}', b'{"n":2}']


def test_a_missing_ca_file_is_a_configuration_error(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="outbound_ca_file"):
        make_settings(tmp_path, "sqlite", None, outbound_ca_file=tmp_path / "missing.pem")
