"""``certs``: keys, CSRs, a certificate authority, OCSP responder and TSA."""

from __future__ import annotations

from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization

from certs import keys
from certs.ca import (
    REVOCATION_REASONS,
    CAError,
    CertificateAuthority,
    cert_pem,
    load_certificate,
    load_csr,
    parse_serial,
    serial_hex,
)
from certs.cliutil import (
    ErrorMappingGroup,
    echo_json,
    echo_table,
    get_passphrase,
    passphrase_option,
)
from certs.names import display_name
from certs.profiles import PROFILES


@click.group(cls=ErrorMappingGroup)
@click.version_option(package_name="secnode")
def main() -> None:
    """PKI toolkit: CA, certificate profiles, OCSP responder, time-stamping authority."""


# ----- keys and CSRs ------------------------------------------------------------------
@main.group("key")
def key_group() -> None:
    """Private keys (always written encrypted)."""


@key_group.command("new")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False))
@click.option(
    "--type",
    "key_type",
    type=click.Choice(["ec", "rsa"]),
    default="ec",
    show_default=True,
    help="EC P-256 or RSA 3072.",
)
@passphrase_option
def key_new(out: str, key_type: str, passphrase_file: str | None) -> None:
    """Create a private key as encrypted PKCS#8."""
    passphrase = get_passphrase(passphrase_file)
    if Path(out).exists():
        raise CAError(f"{out} exists; refusing to overwrite a key")
    keys.write_key(out, keys.generate_key(key_type), passphrase)
    click.echo(f"wrote encrypted {key_type} key {out}")


@main.command("csr")
@click.option("--key", "key_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--subject",
    required=True,
    help="e.g. 'serialNumber=JP/GOV/072028, O=Aizu-Wakamatsu City, C=JP'",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@passphrase_option
def csr_cmd(key_path: str, subject: str, out: str, passphrase_file: str | None) -> None:
    """Write a PKCS#10 certificate request for KEY."""
    key = keys.load_key(key_path, get_passphrase(passphrase_file))
    csr = keys.build_csr(key, keys.parse_subject(subject))
    Path(out).write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    click.echo(f"wrote CSR {out} for {display_name(csr.subject)}")


# ----- CA -------------------------------------------------------------------------------
@main.group("ca")
def ca_group() -> None:
    """Certificate authority directory."""


@ca_group.command("init")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--name", required=True, help="CA common name.")
@click.option("--ocsp-url", default=None, help="OCSP URL put in AIA of sign/auth certificates.")
@click.option(
    "--type", "key_type", type=click.Choice(["ec", "rsa"]), default="ec", show_default=True
)
@click.option("--days", default=3650, show_default=True, type=int)
@passphrase_option
def ca_init(
    directory: str,
    name: str,
    ocsp_url: str | None,
    key_type: str,
    days: int,
    passphrase_file: str | None,
) -> None:
    """Create a CA in DIRECTORY (ca.pem, encrypted ca.key, ca.db)."""
    ca = CertificateAuthority.init(
        directory,
        name,
        get_passphrase(passphrase_file),
        ocsp_url=ocsp_url,
        key_type=key_type,
        days=days,
    )
    click.echo(f"created CA {name!r} in {ca.dir} (certificate {ca.dir / 'ca.pem'})")


@ca_group.command("list")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True)
def ca_list(directory: str, as_json: bool) -> None:
    """List certificates issued by the CA."""
    rows = CertificateAuthority(directory).list_issued()
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["serial", "profile", "subject", "not_after", "revoked_at"])


@main.command("issue")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--csr", "csr_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--profile", required=True, type=click.Choice(PROFILES))
@click.option("--days", default=730, show_default=True, type=int)
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@passphrase_option
def issue_cmd(
    directory: str, csr_path: str, profile: str, days: int, out: str, passphrase_file: str | None
) -> None:
    """Issue a certificate of PROFILE from a CSR made by any tool."""
    ca = CertificateAuthority(directory)
    cert = ca.issue(load_csr(csr_path), profile, get_passphrase(passphrase_file), days=days)
    Path(out).write_bytes(cert_pem(cert))
    click.echo(
        f"issued {profile} certificate serial {serial_hex(cert.serial_number)} "
        f"for {display_name(cert.subject)} -> {out}"
    )


@main.command("revoke")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.argument("target")
@click.option(
    "--reason",
    default="unspecified",
    show_default=True,
    type=click.Choice(list(REVOCATION_REASONS)),
)
def revoke_cmd(directory: str, target: str, reason: str) -> None:
    """Revoke TARGET (a hex serial or a certificate file); effective at OCSP immediately."""
    ca = CertificateAuthority(directory)
    serial = (
        load_certificate(target).serial_number if Path(target).is_file() else parse_serial(target)
    )
    when = ca.revoke(serial, reason)
    click.echo(f"revoked serial {serial_hex(serial)} at {when.isoformat()} ({reason})")


def _register_optional_groups() -> None:
    """OCSP and TSA command groups live in their own modules."""
    from certs.ocsp_cli import ocsp_group
    from certs.tsa_cli import tsa_group

    main.add_command(ocsp_group)
    main.add_command(tsa_group)


_register_optional_groups()
