"""Provider-side commands: services, access rights, and which local systems may call out."""

from __future__ import annotations

import hashlib
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from certs.ca import load_certificate
from certs.cliutil import UserError, echo_json, echo_table
from secnode.core.identifiers import IdentifierError, ServiceId, SubsystemId, parse_client
from secnode.home import NodeHome
from secnode.store import models


def _service_row(node: NodeHome, session, service: str) -> models.Service:  # type: ignore[no-untyped-def]
    """Find a service by ``SUBSYSTEM/CODE[/VERSION]`` or a full service identifier."""
    parts = service.split("/")
    if len(parts) >= 5:
        sid = ServiceId.parse(service)
        if sid.member != node.member_id:
            raise UserError(f"{service} is not a service of this node's member {node.member_id}")
        sub, code, version = sid.subsystem, sid.service, sid.version or ""
    elif len(parts) in (2, 3):
        sub, code, version = parts[0], parts[1], parts[2] if len(parts) == 3 else ""
    else:
        raise UserError(f"service {service!r}: use SUBSYSTEM/SERVICE[/VERSION] or a full id")
    row = session.scalars(select(models.Service).where(
        models.Service.subsystem == sub, models.Service.service_code == code,
        models.Service.version == version)).first()
    if row is None:
        raise UserError(f"unknown service {service}")
    return row


def _service_id(node: NodeHome, row: models.Service) -> ServiceId:
    return ServiceId.of(SubsystemId.of(node.member_id, row.subsystem), row.service_code,
                        row.version or None)


def _caller_rule(address: str | None, cert_file: str | None,
                 any_caller: bool) -> tuple[str, str]:
    """(kind, value) of a client whitelist rule from exactly one of the options."""
    chosen = [x for x in (address, cert_file, any_caller or None) if x]
    if len(chosen) != 1:
        raise UserError("give exactly one of --address, --cert, --any")
    if cert_file:
        der = load_certificate(cert_file).public_bytes(serialization.Encoding.DER)
        return "cert", hashlib.sha256(der).hexdigest()
    if address:
        return "address", address
    return "any", "*"


def register(main: click.Group) -> None:
    from secnode.cli import node_command

    @main.group("service")
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
    @click.option("--log-bodies/--no-log-bodies", default=None,
                  help="Override messagelog.bodies for this service.")
    @node_command
    def service_add(node: NodeHome, subsystem: str, service: str, url: str, kind: str,
                    version: str, openapi: str | None, timeout: float,
                    log_bodies: bool | None) -> None:
        """Add SERVICE of SUBSYSTEM, served by the system at --url."""
        sid = ServiceId.of(SubsystemId.of(node.member_id, subsystem), service, version or None)
        if not url.startswith(("http://", "https://")):
            raise UserError("--url must be an http:// or https:// URL")
        if timeout <= 0:
            raise UserError("--timeout must be positive")
        text = Path(openapi).read_text() if openapi else None
        try:
            with node.session() as s:
                s.add(models.Service(subsystem=subsystem, service_code=service, version=version,
                                     type=kind, url=url, timeout=timeout, openapi=text,
                                     log_bodies=log_bodies))
        except IntegrityError as exc:
            raise UserError(f"service {sid} already exists") from exc
        click.echo(f"added {kind} service {sid} -> {url}")

    @service_group.command("list")
    @click.option("--json", "as_json", is_flag=True)
    @node_command
    def service_list(node: NodeHome, as_json: bool) -> None:
        """List services and their access rights."""
        with node.sessions() as s:
            rights: dict[int, list[str]] = {}
            for r in s.scalars(select(models.AccessRight)):
                rights.setdefault(r.service_id, []).append(r.client)
            rows = [{"id": str(_service_id(node, r)), "type": r.type, "url": r.url,
                     "timeout": r.timeout, "openapi": r.openapi is not None,
                     "log_bodies": r.log_bodies, "granted": sorted(rights.get(r.id, []))}
                    for r in s.scalars(select(models.Service).order_by(models.Service.id))]
        if as_json:
            echo_json(rows)
        else:
            echo_table([{**r, "granted": ", ".join(r["granted"])} for r in rows],
                       ["id", "type", "url", "granted"])

    @service_group.command("remove")
    @click.argument("service")
    @node_command
    def service_remove(node: NodeHome, service: str) -> None:
        """Remove SERVICE (SUBSYSTEM/SERVICE[/VERSION]) and its access rights."""
        with node.session() as s:
            row = _service_row(node, s, service)
            for r in s.scalars(select(models.AccessRight).where(
                    models.AccessRight.service_id == row.id)):
                s.delete(r)
            s.delete(row)
        click.echo(f"removed service {service}")

    @main.group("acl")
    def acl_group() -> None:
        """Access rights: which clients (subsystems, members, global groups) may call a service."""

    def _client_ref(client: str) -> str:
        if client.startswith("group:"):
            code = client.removeprefix("group:")
            if not code:
                raise UserError("group: needs a global group code")
            return client
        try:
            return str(parse_client(client))
        except IdentifierError as exc:
            raise UserError(str(exc)) from exc

    @acl_group.command("grant")
    @click.argument("service")
    @click.argument("client")
    @node_command
    def acl_grant(node: NodeHome, service: str, client: str) -> None:
        """Grant SERVICE to CLIENT (a subsystem/member id or group:CODE)."""
        ref = _client_ref(client)
        try:
            with node.session() as s:
                row = _service_row(node, s, service)
                s.add(models.AccessRight(service_id=row.id, client=ref))
        except IntegrityError as exc:
            raise UserError(f"{ref} already has access to {service}") from exc
        click.echo(f"granted {service} to {ref}")

    @acl_group.command("revoke")
    @click.argument("service")
    @click.argument("client")
    @node_command
    def acl_revoke(node: NodeHome, service: str, client: str) -> None:
        """Revoke CLIENT's access to SERVICE."""
        ref = _client_ref(client)
        with node.session() as s:
            row = _service_row(node, s, service)
            right = s.scalars(select(models.AccessRight).where(
                models.AccessRight.service_id == row.id,
                models.AccessRight.client == ref)).first()
            if right is None:
                raise UserError(f"{ref} has no access right to {service}")
            s.delete(right)
        click.echo(f"revoked {service} from {ref}")

    @acl_group.command("list")
    @click.argument("service", required=False)
    @click.option("--json", "as_json", is_flag=True)
    @node_command
    def acl_list(node: NodeHome, service: str | None, as_json: bool) -> None:
        """List access rights (of one SERVICE, or all)."""
        with node.sessions() as s:
            services = {r.id: r for r in s.scalars(select(models.Service))}
            if service:
                only = _service_row(node, s, service).id
                rights = s.scalars(select(models.AccessRight).where(
                    models.AccessRight.service_id == only)).all()
            else:
                rights = s.scalars(select(models.AccessRight)).all()
            rows = [{"service": str(_service_id(node, services[r.service_id])),
                     "client": r.client, "granted_at": r.granted_at.isoformat()}
                    for r in rights]
        if as_json:
            echo_json(rows)
        else:
            echo_table(rows, ["service", "client", "granted_at"])

    @main.group("client")
    def client_group() -> None:
        """Which local information systems may send requests as which subsystem."""

    @client_group.command("allow")
    @click.argument("subsystem")
    @click.option("--address", default=None, help="Caller IP address, e.g. 127.0.0.1.")
    @click.option("--cert", "cert_file", default=None, type=click.Path(exists=True),
                  help="Caller's TLS client certificate (client interface over HTTPS).")
    @click.option("--any", "any_caller", is_flag=True, help="Any caller (test setups only).")
    @node_command
    def client_allow(node: NodeHome, subsystem: str, address: str | None, cert_file: str | None,
                     any_caller: bool) -> None:
        """Allow a local system to use SUBSYSTEM (code) as client."""
        SubsystemId.of(node.member_id, subsystem)
        kind, value = _caller_rule(address, cert_file, any_caller)
        try:
            with node.session() as s:
                s.add(models.ClientWhitelist(subsystem=subsystem, kind=kind, value=value))
        except IntegrityError as exc:
            raise UserError("that caller is already allowed") from exc
        click.echo(f"allowed {kind} {value} to act as {SubsystemId.of(node.member_id, subsystem)}")

    @client_group.command("remove")
    @click.argument("subsystem")
    @click.option("--address", default=None)
    @click.option("--cert", "cert_file", default=None, type=click.Path(exists=True))
    @click.option("--any", "any_caller", is_flag=True)
    @node_command
    def client_remove(node: NodeHome, subsystem: str, address: str | None, cert_file: str | None,
                      any_caller: bool) -> None:
        """Stop allowing a local system to use SUBSYSTEM."""
        kind, value = _caller_rule(address, cert_file, any_caller)
        with node.session() as s:
            row = s.scalars(select(models.ClientWhitelist).where(
                models.ClientWhitelist.subsystem == subsystem,
                models.ClientWhitelist.kind == kind, models.ClientWhitelist.value == value)).first()
            if row is None:
                raise UserError(f"no such rule for {subsystem}: {kind} {value}")
            s.delete(row)
        click.echo(f"removed {kind} {value} from {subsystem}")

    @client_group.command("list")
    @click.option("--json", "as_json", is_flag=True)
    @node_command
    def client_list(node: NodeHome, as_json: bool) -> None:
        """List allowed local callers."""
        with node.sessions() as s:
            rows = [{"subsystem": w.subsystem, "kind": w.kind, "value": w.value}
                    for w in s.scalars(select(models.ClientWhitelist))]
        if as_json:
            echo_json(rows)
        else:
            echo_table(rows, ["subsystem", "kind", "value"])
