"""`raftpg certs`: the CA and node certificates verify with the ssl module and carry the SANs asked for."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from raftpg.cli.certs import create_ca, create_node_cert, load_ca, write_ca, write_node_cert

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, server_hostname: str) -> None:
    """A full TLS handshake in memory; raises ssl.SSLError (e.g. SSLCertVerificationError) on failure."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client_side = client.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    server_side = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, side in (("client", client_side), ("server", server_side)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


@pytest.fixture
def node(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    ca_cert = write_ca(tmp_path / "ca")
    files = write_node_cert(tmp_path / "ca", tmp_path / "out", "node1", ["127.0.0.1", "db1.example.internal", "::1"])
    return tmp_path, ca_cert, files.cert, files.key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.mark.parametrize("hostname", ["127.0.0.1", "db1.example.internal", "::1"])
def test_node_certificate_verifies_against_the_ca_for_each_san(
    node: tuple[Path, Path, Path, Path], hostname: str
) -> None:
    _, ca_cert, cert, key = node
    client = ssl.create_default_context(cafile=str(ca_cert))
    handshake(server_context(cert, key), client, hostname)


@pytest.mark.parametrize("hostname", ["127.0.0.2", "db2.example.internal", "node1"])
def test_names_outside_the_sans_are_refused(node: tuple[Path, Path, Path, Path], hostname: str) -> None:
    _, ca_cert, cert, key = node
    client = ssl.create_default_context(cafile=str(ca_cert))
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server_context(cert, key), client, hostname)


def test_another_ca_does_not_verify_it(node: tuple[Path, Path, Path, Path]) -> None:
    tmp_path, _, cert, key = node
    other = write_ca(tmp_path / "other-ca")
    client = ssl.create_default_context(cafile=str(other))
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server_context(cert, key), client, "127.0.0.1")


def test_node_certificate_works_as_a_client_certificate(node: tuple[Path, Path, Path, Path]) -> None:
    tmp_path, ca_cert, cert, key = node
    client_files = write_node_cert(tmp_path / "ca", tmp_path / "ctl", "ctl", ["localhost"])
    server = server_context(cert, key)
    server.load_verify_locations(cafile=str(ca_cert))
    server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.create_default_context(cafile=str(ca_cert))
    client.load_cert_chain(client_files.cert, client_files.key)
    handshake(server, client, "127.0.0.1")


def test_certificate_contents(node: tuple[Path, Path, Path, Path]) -> None:
    _, ca_cert_path, cert_path, _ = node
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    assert sans.get_values_for_type(x509.DNSName) == ["db1.example.internal"]
    assert cert.issuer == ca_cert.subject
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    ca_constraints = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert ca_constraints.ca is True
    assert ca_constraints.path_length == 0
    lifetime = ca_cert.not_valid_after_utc - ca_cert.not_valid_before_utc
    assert lifetime.days >= 3650


def test_key_files_are_private(node: tuple[Path, Path, Path, Path]) -> None:
    tmp_path, _, _, key = node
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ca" / "ca.key").stat().st_mode) == 0o600
    assert (tmp_path / "out" / "ca.crt").read_bytes() == (tmp_path / "ca" / "ca.crt").read_bytes()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_existing_ca_is_not_replaced(tmp_path: Path) -> None:
    write_ca(tmp_path)
    before = (tmp_path / "ca.key").read_bytes()
    with pytest.raises(FileExistsError):
        write_ca(tmp_path)
    assert (tmp_path / "ca.key").read_bytes() == before
    write_ca(tmp_path, overwrite=True)
    assert (tmp_path / "ca.key").read_bytes() != before


def test_bad_input_is_refused(tmp_path: Path) -> None:
    write_ca(tmp_path / "ca")
    with pytest.raises(ValueError, match="subject alternative name"):
        write_node_cert(tmp_path / "ca", tmp_path / "out", "node1", [])
    with pytest.raises(ValueError, match="neither an IP address nor a DNS name"):
        write_node_cert(tmp_path / "ca", tmp_path / "out", "node1", ["http://x"])
    with pytest.raises(ValueError, match="member name"):
        write_node_cert(tmp_path / "ca", tmp_path / "out", "../evil", ["localhost"])
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_in_memory_api() -> None:
    ca_key, ca_cert = create_ca("test CA", valid_days=1)
    _, cert = create_node_cert(ca_key, ca_cert, "n", ["10.0.0.1"], valid_days=1)
    cert.verify_directly_issued_by(ca_cert)
    assert cert.subject.rfc4514_string() == "CN=n"


def test_load_ca_round_trip(tmp_path: Path) -> None:
    write_ca(tmp_path)
    key, cert = load_ca(tmp_path)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
