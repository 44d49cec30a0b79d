"""Certificates for the REST API: one CA per cluster, one certificate per node (`raftpg certs`).

A private CA keeps the trust decision inside the cluster: members and `raftpg ctl` trust only
certificates it signed, and node certificates serve both as TLS server certificates and as
client certificates when restapi.verify_client is on. Keys are EC P-256, written 0600 and
unencrypted, because the daemon has to read them without an operator at hand.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

logger = logging.getLogger(__name__)

CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
CA_VALID_DAYS = 3650
NODE_VALID_DAYS = 825
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_BACKDATE = datetime.timedelta(minutes=5)
"""Certificates start slightly in the past so a peer whose clock lags a little accepts them."""


@dataclass(frozen=True)
class NodeCertFiles:
    cert: Path
    key: Path
    ca_cert: Path


def create_ca(common_name: str, valid_days: int = CA_VALID_DAYS) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA that may sign node certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def create_node_cert(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    name: str,
    sans: Sequence[str],
    valid_days: int = NODE_VALID_DAYS,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A certificate for member `name`, valid for the given IP addresses and DNS names."""
    if not sans:
        raise ValueError("at least one subject alternative name (IP address or DNS name) is required")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName([_general_name(san) for san in sans]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def write_ca(ca_dir: Path | str, common_name: str = "raftpg cluster CA", *, overwrite: bool = False) -> Path:
    """Create ca.crt and ca.key (0600) in `ca_dir`; refuses to replace an existing CA key.

    Replacing a CA by accident would invalidate every node certificate of the cluster.
    """
    directory = Path(ca_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_path, cert_path = directory / CA_KEY_FILE, directory / CA_CERT_FILE
    if not overwrite and (key_path.exists() or cert_path.exists()):
        raise FileExistsError(f"a CA already exists in {directory}; pass overwrite=True to replace it")
    key, cert = create_ca(common_name)
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    logger.info("wrote CA %r to %s", common_name, directory)
    return cert_path


def load_ca(ca_dir: Path | str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    directory = Path(ca_dir)
    key = serialization.load_pem_private_key((directory / CA_KEY_FILE).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{directory / CA_KEY_FILE} is not an EC private key")
    cert = x509.load_pem_x509_certificate((directory / CA_CERT_FILE).read_bytes())
    return key, cert


def write_node_cert(ca_dir: Path | str, out_dir: Path | str, name: str, sans: Sequence[str]) -> NodeCertFiles:
    """Sign a certificate for member `name`: writes <name>.crt, <name>.key (0600) and a copy of ca.crt.

    `out_dir` then holds everything one node needs for restapi.certfile/keyfile/cafile.
    """
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"member name {name!r} must consist of letters, digits, '_', '.' and '-'")
    ca_key, ca_cert = load_ca(ca_dir)
    key, cert = create_node_cert(ca_key, ca_cert, name, sans)
    directory = Path(out_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = NodeCertFiles(cert=directory / f"{name}.crt", key=directory / f"{name}.key",
                          ca_cert=directory / CA_CERT_FILE)
    _write(files.key, _key_pem(key), 0o600)
    _write(files.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    if files.ca_cert.resolve() != (Path(ca_dir) / CA_CERT_FILE).resolve():
        _write(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    logger.info("wrote certificate for %s (%s) to %s", name, ", ".join(sans), directory)
    return files


def _general_name(san: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(san))
    except ValueError:
        pass
    if not san or any(ch.isspace() or ch in "/:@" for ch in san):
        raise ValueError(f"{san!r} is neither an IP address nor a DNS name")
    return x509.DNSName(san)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write via a temporary file created with `mode`, so a key is never readable by others, even briefly."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
