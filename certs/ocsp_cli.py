"""``certs ocsp ...`` commands (OCSP responder)."""

from __future__ import annotations

import click

from certs import logs
from certs.cliutil import get_passphrase, log_format_option, passphrase_option


@click.group("ocsp")
def ocsp_group() -> None:
    """OCSP responder (RFC 6960) for a CA directory."""


@ocsp_group.command("serve")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8888, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--validity",
    default=3600,
    show_default=True,
    type=click.IntRange(min=1),
    help="Seconds from thisUpdate to nextUpdate in each response.",
)
@passphrase_option
@log_format_option
def serve_cmd(
    directory: str,
    host: str,
    port: int,
    validity: int,
    passphrase_file: str | None,
    log_format: str,
) -> None:
    """Answer OCSP requests for the CA in DIRECTORY (GET and POST, any path).

    Signs with DIRECTORY/ocsp.pem + ocsp.key, issuing them with the CA's ocsp
    profile on first start. Revocations in ca.db apply to the next request.
    """
    from certs.ocsp_server import serve

    logs.configure(log_format)
    serve(directory, host, port, get_passphrase(passphrase_file), validity)
