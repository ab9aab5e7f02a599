"""``certs tsa ...`` commands (RFC 3161 time-stamping authority)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import click

from certs import logs
from certs.ca import load_certificate, serial_hex
from certs.cliutil import echo_json, get_passphrase, log_format_option, passphrase_option
from certs.names import display_name
from certs.tsa import (
    DEFAULT_ACCURACY_SECONDS,
    DEFAULT_POLICY,
    DIGEST_SIZES,
    SerialStore,
    TSAConfig,
    TSAError,
    init_tsa,
)

DEFAULT_PORT = 3161  # after the RFC number; the IANA TSP port 318 is privileged


@click.group("tsa")
def tsa_group() -> None:
    """Time-stamping authority (RFC 3161)."""


@tsa_group.command("init")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "--ca",
    "ca_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="CA directory that issues the TSA certificate (tsa profile).",
)
@click.option("--name", required=True, help="TSA common name.")
@click.option(
    "--policy",
    default=DEFAULT_POLICY,
    show_default=True,
    help="TSA policy OID put in every token (use your own arc in production).",
)
@click.option(
    "--accuracy",
    "accuracy",
    default=DEFAULT_ACCURACY_SECONDS,
    show_default=True,
    type=click.IntRange(min=0),
    help="Accuracy of genTime in seconds (0: omit).",
)
@click.option(
    "--type", "key_type", type=click.Choice(["ec", "rsa"]), default="ec", show_default=True
)
@click.option("--days", default=1825, show_default=True, type=click.IntRange(min=1))
@passphrase_option
@click.option(
    "--ca-passphrase-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Passphrase of the CA key, if it differs from the TSA key's.",
)
def tsa_init(
    directory: str,
    ca_dir: str,
    name: str,
    policy: str,
    accuracy: int,
    key_type: str,
    days: int,
    passphrase_file: str | None,
    ca_passphrase_file: str | None,
) -> None:
    """Create a TSA in DIRECTORY: key, certificate from the CA, policy and serial store."""
    passphrase = get_passphrase(passphrase_file)
    ca_passphrase = get_passphrase(ca_passphrase_file) if ca_passphrase_file else passphrase
    cert = init_tsa(
        directory,
        ca_dir,
        name,
        passphrase,
        ca_passphrase=ca_passphrase,
        policy=policy,
        accuracy_seconds=accuracy,
        key_type=key_type,
        days=days,
    )
    click.echo(
        f"created TSA {name!r} in {directory} (certificate serial "
        f"{serial_hex(cert.serial_number)}, policy {policy})"
    )


@tsa_group.command("serve")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(1, 65535))
@passphrase_option
@log_format_option
def tsa_serve(
    directory: str, host: str, port: int, passphrase_file: str | None, log_format: str
) -> None:
    """Answer application/timestamp-query POSTs on http://HOST:PORT/ (and GET /metrics)."""
    from aiohttp import web

    from certs.tsa_server import build_tsa_app

    logs.configure(log_format)
    app = build_tsa_app(directory, get_passphrase(passphrase_file))
    config = TSAConfig.load(directory)
    log = logging.getLogger("certs.tsa")

    async def started(_app: web.Application) -> None:
        log.info("TSA %r serving on %s:%d (policy %s)", config.name, host, port, config.policy)

    async def stopped(_app: web.Application) -> None:
        log.info("TSA %r on %s:%d stopped", config.name, host, port)

    app.on_startup.append(started)
    app.on_cleanup.append(stopped)
    web.run_app(
        app,
        host=host,
        port=port,
        access_log=None,
        print=lambda _: click.echo(
            f"TSA {config.name!r} listening on http://{host}:{port}/ (policy {config.policy})"
        ),
    )


@tsa_group.command("show")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True)
def tsa_show(directory: str, as_json: bool) -> None:
    """Print the TSA's name, policy, certificate and how many tokens it issued."""
    config = TSAConfig.load(directory)
    cert = load_certificate(Path(directory) / "tsa.pem")
    info = {
        "name": config.name,
        "policy": config.policy,
        "accuracy_seconds": config.accuracy_seconds,
        "subject": display_name(cert.subject),
        "issuer": display_name(cert.issuer),
        "serial": serial_hex(cert.serial_number),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "tokens_issued": SerialStore(Path(directory) / "tsa.db").count(),
    }
    if as_json:
        echo_json(info)
    else:
        for key, value in info.items():
            click.echo(f"{key + ':':18}{value}")


@tsa_group.command("stamp")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--url", required=True, help="TSA URL, e.g. http://127.0.0.1:3161/")
@click.option(
    "--ca",
    "ca_files",
    required=True,
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Trusted CA (or pinned TSA) certificate; repeatable.",
)
@click.option(
    "--hash",
    "hash_name",
    type=click.Choice(list(DIGEST_SIZES)),
    default="sha256",
    show_default=True,
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the token (DER ContentInfo, as the message log stores it).",
)
def tsa_stamp(file: str, url: str, ca_files: tuple[str, ...], hash_name: str, out: str) -> None:
    """Time-stamp FILE at the TSA, verify the token and write it to OUT."""
    from certs.tsa_client import request_token_sync
    from certs.tsa_verify import build_request, token_from_response, verify_token

    digest = hashlib.new(hash_name, Path(file).read_bytes()).digest()
    der, nonce = build_request(digest, hash_name)
    resp = request_token_sync(url, der)
    info = verify_token(resp, digest, hash_name, [load_certificate(c) for c in ca_files], nonce)
    Path(out).write_bytes(token_from_response(resp))
    click.echo(
        f"token serial {info.serial} genTime {info.gen_time.isoformat()} "
        f"from {display_name(info.tsa_cert.subject)} -> {out}"
    )


@tsa_group.command("verify")
@click.argument("token", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--data",
    "data_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The file the token is said to stamp.",
)
@click.option(
    "--ca",
    "ca_files",
    required=True,
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Trusted CA (or pinned TSA) certificate; repeatable.",
)
@click.option(
    "--untrusted",
    "extra_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="TSA or intermediate certificate not in the token; repeatable.",
)
@click.option("--json", "as_json", is_flag=True)
def tsa_verify(
    token: str,
    data_file: str,
    ca_files: tuple[str, ...],
    extra_files: tuple[str, ...],
    as_json: bool,
) -> None:
    """Verify TOKEN (bare token or whole reply) over the file given by --data."""
    from certs.tsa_verify import token_contents, verify_token

    der = Path(token).read_bytes()
    hash_name = token_contents(der).hash_name
    if hash_name not in DIGEST_SIZES:
        raise TSAError(f"token imprint uses {hash_name}, which is not accepted")
    digest = hashlib.new(hash_name, Path(data_file).read_bytes()).digest()
    extra = [load_certificate(c) for c in extra_files]
    info = verify_token(
        der,
        digest,
        hash_name,
        [load_certificate(c) for c in ca_files],
        intermediates=extra,
        tsa_certs=extra,
    )
    result = {
        "verified": True,
        "gen_time": info.gen_time.isoformat(),
        "serial": info.serial,
        "policy": info.policy,
        "hash": info.hash_name,
        "tsa": display_name(info.tsa_cert.subject),
        "accuracy_seconds": info.accuracy.total_seconds() if info.accuracy else None,
    }
    if as_json:
        echo_json(result)
    else:
        click.echo(
            f"Verification: OK (serial {info.serial}, genTime {result['gen_time']}, "
            f"TSA {result['tsa']})"
        )
