"""Test credentials for a Flower deployment: a CA, the SuperLink's TLS certificate, SuperNode keys.

Usage::

    .venv/bin/python fl/deploy/make_certs.py certs --supernodes 2 --host superlink.example.org

writes into ``certs/``:

* ``ca.crt`` / ``ca.key``: a self-signed certificate authority. ``ca.crt`` is the root certificate
  that SuperNodes (``--root-certificates``) and ``flwr`` (``root-certificates`` in the SuperLink
  connection) use to verify the SuperLink; ``ca.key`` stays with whoever signs certificates.
* ``server.crt`` / ``server.key``: the SuperLink's certificate, signed by the CA, valid for
  ``localhost``, ``127.0.0.1``, ``::1`` and every ``--host`` (DNS name or IP address) under which
  SuperNodes reach it (``flower-superlink --ssl-ca-certfile ca.crt --ssl-certfile server.crt
  --ssl-keyfile server.key``).
* ``supernode-<i>`` / ``supernode-<i>.pub``: one ECDSA P-384 key pair per SuperNode in OpenSSH
  format (what ``ssh-keygen -t ecdsa -b 384`` writes). The public key is registered on the
  SuperLink with ``flwr supernode register supernode-<i>.pub <connection>``; the private key stays
  on the device (``flower-supernode --auth-supernode-private-key supernode-<i>``).

These are for tests and trials: keys are unencrypted and the CA is throw-away. Use your own PKI in
production. Only the ``cryptography`` package (a Flower dependency) is needed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        os.chmod(path, 0o600)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):  # de-duplicated, order kept
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def make_ca(days: int) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tandem test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_server_cert(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, hosts: Sequence[str], days: int
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP384R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def make_supernode_keys(out: Path, name: str) -> tuple[Path, Path]:
    """An ECDSA P-384 key pair in OpenSSH format: ``<name>`` (private) and ``<name>.pub``."""
    key = ec.generate_private_key(ec.SECP384R1())
    private = out / name
    public = out / f"{name}.pub"
    _write(
        private,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
        private=True,
    )
    pub = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    _write(public, pub + f" {name}\n".encode())
    return private, public


def make_certs(
    out: str | Path, supernodes: int = 2, hosts: Sequence[str] = (), days: int = 365
) -> Path:
    """Write the CA, the SuperLink certificate and ``supernodes`` key pairs into ``out``."""
    if supernodes < 0:
        raise ValueError(f"supernodes must be >= 0, got {supernodes}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = make_ca(days)
    _write(out / "ca.crt", ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(out / "ca.key", _pem_key(ca_key), private=True)
    server_cert, server_key = make_server_cert(ca_cert, ca_key, [*DEFAULT_HOSTS, *hosts], days)
    _write(out / "server.crt", server_cert.public_bytes(serialization.Encoding.PEM))
    _write(out / "server.key", _pem_key(server_key), private=True)
    for i in range(1, supernodes + 1):
        make_supernode_keys(out, f"supernode-{i}")
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="output directory (created if missing)")
    parser.add_argument(
        "--supernodes", type=int, default=2, help="SuperNode key pairs to make (default 2)"
    )
    parser.add_argument(
        "--host",
        action="append",
        default=[],
        help="extra DNS name or IP address of the SuperLink (repeatable); localhost, 127.0.0.1 "
        "and ::1 are always included",
    )
    parser.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    args = parser.parse_args(argv)
    out = make_certs(args.out, args.supernodes, args.host, args.days)
    print(
        f"wrote the CA, the SuperLink certificate and {args.supernodes} SuperNode key pair(s) to {out}"
    )


if __name__ == "__main__":
    main()
