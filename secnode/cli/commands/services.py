"""Provider-side commands: services, access rights, and which local systems may call out.

Thin over :mod:`secnode.services`: parse the options, call it, print.
"""

from __future__ import annotations

from pathlib import Path

import click

from certs.cliutil import echo_json, echo_table, get_passphrase, passphrase_option
from secnode import services
from secnode.cli.options import json_option, node_command
from secnode.home import NodeHome
from secnode.trust import provider_tls


# ----- service ----------------------------------------------------------------------------------
@click.group("service")
def service_group() -> None:
    """Services this node provides (deny by default: grant with 'acl grant')."""


@service_group.command("add")
@click.argument("subsystem")
@click.argument("service")
@click.option("--url", required=True, help="Base URL of the provider system.")
@click.option("--type", "kind", type=click.Choice(["rest", "soap"]), required=True)
@click.option("--version", default="", help="Service version (optional).")
@click.option("--openapi", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--timeout", default=30.0, show_default=True, type=float)
@click.option("--wsdl", default=None, help="SOAP: the service's WSDL (file or http(s) URL).")
@click.option(
    "--log-bodies/--no-log-bodies",
    default=None,
    help="Override messagelog.bodies for this service.",
)
@click.option(
    "--tls-ca",
    default=None,
    help="https: CA file the provider's certificate must chain to ('system': the system store).",
)
@click.option("--tls-pin", default=None, help="https: SHA-256 of the provider's certificate.")
@click.option(
    "--tls-client-cert",
    is_flag=True,
    help="https: present the node's internal TLS client certificate (made if missing).",
)
@passphrase_option
@node_command
def service_add(
    node: NodeHome,
    subsystem: str,
    service: str,
    url: str,
    kind: str,
    version: str,
    openapi: str | None,
    timeout: float,
    wsdl: str | None,
    log_bodies: bool | None,
    tls_ca: str | None,
    tls_pin: str | None,
    tls_client_cert: bool,
    passphrase_file: str | None,
) -> None:
    """Add SERVICE of SUBSYSTEM, served by the system at --url.

    SUBSYSTEM is a subsystem code, or this node's member id (INSTANCE/CLASS/CODE) for a
    service of the member itself (SOAP only: X-Road's REST paths always name a subsystem).
    An https:// URL needs --tls-pin or --tls-ca (deny by default).
    """
    if tls_client_cert and url.startswith("https://"):
        _ensure_internal_cert(node, passphrase_file)
    sid = services.add_service(
        node,
        services.NewService(
            subsystem,
            service,
            url,
            kind,
            version,
            Path(openapi) if openapi else None,
            timeout,
            log_bodies,
            wsdl,
            tls_ca,
            tls_pin,
            tls_client_cert,
        ),
    )
    click.echo(f"added {kind} service {sid} -> {url}")


def _ensure_internal_cert(node: NodeHome, passphrase_file: str | None) -> None:
    passphrase = get_passphrase(passphrase_file)
    if provider_tls.ensure_internal_cert(node.path, str(node.node_id), passphrase):
        click.echo(f"made the internal TLS client certificate {provider_tls.INTERNAL_CERT}")


@service_group.command("tls")
@click.argument("service")
@click.option("--tls-ca", default=None, help="CA file for the provider's certificate, or 'system'.")
@click.option("--tls-pin", default=None, help="SHA-256 of the provider's certificate.")
@click.option(
    "--tls-client-cert/--no-tls-client-cert",
    default=None,
    help="Present the node's internal TLS client certificate (made if missing).",
)
@click.option("--plain", is_flag=True, help="Drop the TLS setting (for an http:// URL).")
@passphrase_option
@json_option
@node_command
def service_tls(
    node: NodeHome,
    service: str,
    tls_ca: str | None,
    tls_pin: str | None,
    tls_client_cert: bool | None,
    plain: bool,
    passphrase_file: str | None,
    as_json: bool,
) -> None:
    """Show or change how SERVICE's https:// provider system is trusted (and mutual TLS)."""
    if tls_ca is None and tls_pin is None and tls_client_cert is None and not plain:
        view = services.service_tls(node, service)
    else:
        if tls_client_cert:
            _ensure_internal_cert(node, passphrase_file)
        view = services.set_service_tls(node, service, tls_ca, tls_pin, tls_client_cert, plain)
    if as_json:
        echo_json(view)
        return
    for key in ("service", "url", "tls", "client_cert_file", "client_cert_sha256"):
        if key in view:
            click.echo(f"{key + ':':<20}{view[key]}")


@service_group.command("wsdl")
@click.argument("service")
@click.argument("source", required=False)
@click.option("--refresh", is_flag=True, help="Read the WSDL again from where it came from.")
@node_command
def service_wsdl(node: NodeHome, service: str, source: str | None, refresh: bool) -> None:
    """Store SERVICE's WSDL from SOURCE (file or URL), or --refresh it; getWsdl serves it."""
    if refresh == (source is not None):
        raise click.UsageError("give either SOURCE or --refresh")
    if source is not None:
        services.set_wsdl(node, service, source)
    else:
        source = services.refresh_wsdl(node, service)
    click.echo(f"stored the WSDL of {service} from {source}")


@service_group.command("list")
@json_option
@node_command
def service_list(node: NodeHome, as_json: bool) -> None:
    """List services and their access rights."""
    rows = services.list_services(node)
    if as_json:
        echo_json(rows)
    else:
        echo_table(
            [{**r, "granted": ", ".join(r["granted"])} for r in rows],
            ["id", "type", "url", "tls", "granted"],
        )


@service_group.command("remove")
@click.argument("service")
@node_command
def service_remove(node: NodeHome, service: str) -> None:
    """Remove SERVICE (SUBSYSTEM/SERVICE[/VERSION]) and its access rights."""
    services.remove_service(node, service)
    click.echo(f"removed service {service}")


# ----- acl --------------------------------------------------------------------------------------
@click.group("acl")
def acl_group() -> None:
    """Access rights: which clients (subsystems, members, global groups) may call a service."""


@acl_group.command("grant")
@click.argument("service")
@click.argument("client")
@node_command
def acl_grant(node: NodeHome, service: str, client: str) -> None:
    """Grant SERVICE to CLIENT (a subsystem/member id or group:CODE)."""
    ref = services.grant(node, service, client)
    click.echo(f"granted {service} to {ref}")


@acl_group.command("revoke")
@click.argument("service")
@click.argument("client")
@node_command
def acl_revoke(node: NodeHome, service: str, client: str) -> None:
    """Revoke CLIENT's access to SERVICE."""
    ref = services.revoke(node, service, client)
    click.echo(f"revoked {service} from {ref}")


@acl_group.command("list")
@click.argument("service", required=False)
@json_option
@node_command
def acl_list(node: NodeHome, service: str | None, as_json: bool) -> None:
    """List access rights (of one SERVICE, or all)."""
    rows = services.list_rights(node, service)
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["service", "client", "granted_at"])


# ----- client -----------------------------------------------------------------------------------
@click.group("client")
def client_group() -> None:
    """Which local information systems may send requests as which subsystem."""


@client_group.command("allow")
@click.argument("subsystem")
@click.option("--address", default=None, help="Caller IP address, e.g. 127.0.0.1.")
@click.option(
    "--cert",
    "cert_file",
    default=None,
    type=click.Path(exists=True),
    help="Caller's TLS client certificate (client interface over HTTPS).",
)
@click.option("--any", "any_caller", is_flag=True, help="Any caller (test setups only).")
@node_command
def client_allow(
    node: NodeHome, subsystem: str, address: str | None, cert_file: str | None, any_caller: bool
) -> None:
    """Allow a local system to use SUBSYSTEM (code) as client, or the member itself when
    SUBSYSTEM is this node's member id (INSTANCE/CLASS/CODE)."""
    sid, kind, value = services.allow_caller(node, subsystem, address, cert_file, any_caller)
    click.echo(f"allowed {kind} {value} to act as {sid}")


@client_group.command("remove")
@click.argument("subsystem")
@click.option("--address", default=None)
@click.option("--cert", "cert_file", default=None, type=click.Path(exists=True))
@click.option("--any", "any_caller", is_flag=True)
@node_command
def client_remove(
    node: NodeHome, subsystem: str, address: str | None, cert_file: str | None, any_caller: bool
) -> None:
    """Stop allowing a local system to use SUBSYSTEM."""
    kind, value = services.remove_caller(node, subsystem, address, cert_file, any_caller)
    click.echo(f"removed {kind} {value} from {subsystem}")


@client_group.command("list")
@json_option
@node_command
def client_list(node: NodeHome, as_json: bool) -> None:
    """List allowed local callers."""
    rows = services.list_callers(node)
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["subsystem", "kind", "value"])
