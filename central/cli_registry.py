"""``central member|subsystem|node|ca|tsa|group|settings|audit`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import click

from central import registry as reg
from central.cli_common import Registry, json_option, output, registry_command


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


# ----- members ----------------------------------------------------------------------------
@click.group("member")
def member_group() -> None:
    """Members (organisations): INSTANCE/CLASS/CODE."""


@member_group.command("add")
@click.argument("identifier")
@click.option("--name", required=True, help="The member's official name.")
@registry_command
def member_add(registry: Registry, identifier: str, name: str) -> None:
    """Add a member, e.g. JP/GOV/072028 --name 'Aizu-Wakamatsu City'."""
    row = reg.add_member(
        registry.store, registry.operator, registry.config.instance, identifier, name
    )
    click.echo(f"added member {row['id']} ({row['name']})")


@member_group.command("list")
@json_option
@registry_command
def member_list(registry: Registry, as_json: bool) -> None:
    """List members with their subsystems and nodes."""
    output(reg.list_members(registry.store), as_json, ["id", "name", "subsystems", "nodes"])


@member_group.command("show")
@click.argument("identifier")
@json_option
@registry_command
def member_show(registry: Registry, identifier: str, as_json: bool) -> None:
    """Show one member."""
    output(reg.show_member(registry.store, registry.config.instance, identifier), as_json)


@member_group.command("remove")
@click.argument("identifier")
@click.option(
    "--cascade", is_flag=True, help="Also remove its nodes, subsystems and group memberships."
)
@registry_command
def member_remove(registry: Registry, identifier: str, cascade: bool) -> None:
    """Remove a member (refused while it owns nodes or subsystems, unless --cascade)."""
    result = reg.remove_member(
        registry.store, registry.operator, registry.config.instance, identifier, cascade
    )
    extra = ""
    if result["nodes"] or result["subsystems"]:
        extra = f" with {len(result['nodes'])} node(s) and {len(result['subsystems'])} subsystem(s)"
    click.echo(f"removed member {result['removed']}{extra}")


# ----- subsystems -------------------------------------------------------------------------
@click.group("subsystem")
def subsystem_group() -> None:
    """Subsystems (information systems): INSTANCE/CLASS/CODE/SUBSYSTEM."""


@subsystem_group.command("add")
@click.argument("identifier")
@click.option("--name", default=None, help="Optional display name.")
@registry_command
def subsystem_add(registry: Registry, identifier: str, name: str | None) -> None:
    """Add a subsystem to an existing member."""
    row = reg.add_subsystem(
        registry.store, registry.operator, registry.config.instance, identifier, name
    )
    click.echo(f"added subsystem {row['id']}")


@subsystem_group.command("list")
@click.option("--member", default=None, help="Only this member's subsystems.")
@json_option
@registry_command
def subsystem_list(registry: Registry, member: str | None, as_json: bool) -> None:
    """List subsystems."""
    output(reg.list_subsystems(registry.store, member), as_json, ["id", "member", "name"])


@subsystem_group.command("remove")
@click.argument("identifier")
@registry_command
def subsystem_remove(registry: Registry, identifier: str) -> None:
    """Remove a subsystem."""
    result = reg.remove_subsystem(
        registry.store, registry.operator, registry.config.instance, identifier
    )
    click.echo(f"removed subsystem {result['removed']}")


# ----- nodes ------------------------------------------------------------------------------
@click.group("node")
def node_group() -> None:
    """Security nodes: INSTANCE/CLASS/CODE/SERVERCODE with address and auth certificate."""


@node_group.command("add")
@click.argument("identifier")
@click.option("--address", required=True, help="host or host:port other nodes connect to.")
@click.option(
    "--auth-cert",
    "auth_cert",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The node's auth certificate (PEM or DER), issued by an approved CA.",
)
@registry_command
def node_add(registry: Registry, identifier: str, address: str, auth_cert: str) -> None:
    """Register a node directly (the usual way is a registration request)."""
    row = reg.add_node(
        registry.store,
        registry.operator,
        registry.config.instance,
        identifier,
        address,
        _read(auth_cert),
    )
    click.echo(
        f"added node {row['id']} at {row['address']} (auth cert sha256 {row['auth_cert_sha256']})"
    )


@node_group.command("list")
@json_option
@registry_command
def node_list(registry: Registry, as_json: bool) -> None:
    """List nodes."""
    output(reg.list_nodes(registry.store), as_json, ["id", "owner", "address", "auth_cert_sha256"])


@node_group.command("drop-previous-auth-cert")
@click.argument("identifier")
@registry_command
def node_drop_previous(registry: Registry, identifier: str) -> None:
    """Stop publishing the auth certificate a renewal replaced (once the node presents the new
    one: its /health shows it); takes effect with the next publish."""
    row = reg.drop_previous_auth_cert(
        registry.store, registry.operator, registry.config.instance, identifier
    )
    click.echo(
        f"node {row['id']}: previous auth certificate dropped; only "
        f"{row['auth_cert_sha256'][:16]}... is published after the next publish"
    )


@node_group.command("remove")
@click.argument("identifier")
@registry_command
def node_remove(registry: Registry, identifier: str) -> None:
    """Remove a node (its auth certificate is no longer accepted after the next publish)."""
    result = reg.remove_node(
        registry.store, registry.operator, registry.config.instance, identifier
    )
    click.echo(f"removed node {result['removed']}")


# ----- approved CAs and TSAs --------------------------------------------------------------
@click.group("ca")
def ca_group() -> None:
    """Approved certificate authorities (issuers of auth and sign certificates)."""


@ca_group.command("add")
@click.argument("cert", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--ocsp-url", "ocsp_urls", multiple=True, help="OCSP responder URL of this CA (repeatable)."
)
@click.option("--name", default=None, help="Display name (default: the certificate subject).")
@registry_command
def ca_add(registry: Registry, cert: str, ocsp_urls: tuple[str, ...], name: str | None) -> None:
    """Approve a CA certificate (PEM or DER)."""
    row = reg.add_ca(registry.store, registry.operator, _read(cert), list(ocsp_urls), name)
    click.echo(f"approved CA {row['id']}: {row['name']} (sha256 {row['cert_sha256']})")


@ca_group.command("list")
@json_option
@registry_command
def ca_list(registry: Registry, as_json: bool) -> None:
    """List approved CAs."""
    output(reg.list_cas(registry.store), as_json, ["id", "name", "ocsp_urls", "cert_sha256"])


@ca_group.command("remove")
@click.argument("ref")
@click.option("--force", is_flag=True, help="Remove even if registered nodes depend on it.")
@registry_command
def ca_remove(registry: Registry, ref: str, force: bool) -> None:
    """Withdraw approval of a CA (by id, name or SHA-256 prefix)."""
    result = reg.remove_ca(registry.store, registry.operator, ref, force)
    click.echo(f"removed CA {result['removed']}")


@click.group("tsa")
def tsa_group() -> None:
    """Approved time-stamping authorities (RFC 3161)."""


@tsa_group.command("add")
@click.argument("name")
@click.option("--url", required=True, help="The TSA's RFC 3161 HTTP URL.")
@click.option(
    "--cert",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The TSA's signing certificate (EKU timeStamping).",
)
@registry_command
def tsa_add(registry: Registry, name: str, url: str, cert: str) -> None:
    """Approve a TSA."""
    row = reg.add_tsa(registry.store, registry.operator, name, url, _read(cert))
    click.echo(f"approved TSA {row['name']} at {row['url']}")


@tsa_group.command("list")
@json_option
@registry_command
def tsa_list(registry: Registry, as_json: bool) -> None:
    """List approved TSAs."""
    output(reg.list_tsas(registry.store), as_json, ["name", "url", "cert_sha256"])


@tsa_group.command("remove")
@click.argument("name")
@registry_command
def tsa_remove(registry: Registry, name: str) -> None:
    """Withdraw approval of a TSA."""
    click.echo(f"removed TSA {reg.remove_tsa(registry.store, registry.operator, name)['removed']}")


# ----- global groups ----------------------------------------------------------------------
@click.group("group")
def group_group() -> None:
    """Global groups of members and subsystems (usable in access rights)."""


@group_group.command("add")
@click.argument("code")
@click.option("--description", default="", help="What the group is for.")
@registry_command
def group_add(registry: Registry, code: str, description: str) -> None:
    """Create a global group."""
    reg.add_group(registry.store, registry.operator, code, description)
    click.echo(f"added global group {code}")


@group_group.command("add-member")
@click.argument("code")
@click.argument("client")
@registry_command
def group_add_member(registry: Registry, code: str, client: str) -> None:
    """Add a member or subsystem to a global group."""
    reg.add_group_member(registry.store, registry.operator, registry.config.instance, code, client)
    click.echo(f"added {client} to global group {code}")


@group_group.command("remove-member")
@click.argument("code")
@click.argument("client")
@registry_command
def group_remove_member(registry: Registry, code: str, client: str) -> None:
    """Remove a member or subsystem from a global group."""
    reg.remove_group_member(
        registry.store, registry.operator, registry.config.instance, code, client
    )
    click.echo(f"removed {client} from global group {code}")


@group_group.command("remove")
@click.argument("code")
@registry_command
def group_remove(registry: Registry, code: str) -> None:
    """Delete a global group."""
    reg.remove_group(registry.store, registry.operator, code)
    click.echo(f"removed global group {code}")


@group_group.command("list")
@json_option
@registry_command
def group_list(registry: Registry, as_json: bool) -> None:
    """List global groups and their members."""
    output(reg.list_groups(registry.store), as_json, ["code", "description", "members"])


# ----- settings and audit -----------------------------------------------------------------
@click.group("settings")
def settings_group() -> None:
    """Global settings carried in the configuration (seconds)."""


@settings_group.command("show")
@json_option
@registry_command
def settings_show(registry: Registry, as_json: bool) -> None:
    """Show the global settings."""
    output(reg.show_settings(registry.store), as_json)


@settings_group.command("set")
@click.argument("name")
@click.argument("value")
@registry_command
def settings_set(registry: Registry, name: str, value: str) -> None:
    """Change a global setting (effective with the next publish)."""
    values = reg.set_setting(registry.store, registry.operator, name, value)
    click.echo(f"{name} = {values[name]}")


@click.command("audit")
@click.option("--limit", default=50, show_default=True, type=int)
@json_option
@registry_command
def audit_cmd(registry: Registry, limit: int, as_json: bool) -> None:
    """Show the newest entries of the audit trail."""
    rows = [
        {
            "id": e.id,
            "at": e.at,
            "operator": e.operator,
            "action": e.action,
            "details": e.details if as_json else json.dumps(e.details, ensure_ascii=False),
        }
        for e in registry.store.audit(limit)
    ]
    output(rows, as_json, ["id", "at", "operator", "action", "details"])


@click.command("status")
@json_option
@registry_command
def status_cmd(registry: Registry, as_json: bool) -> None:
    """Counts of everything in the registry."""
    output(reg.counts(registry.store), as_json)


COMMANDS = [
    member_group,
    subsystem_group,
    node_group,
    ca_group,
    tsa_group,
    group_group,
    settings_group,
    audit_cmd,
    status_cmd,
]
