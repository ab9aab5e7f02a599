"""``central init|conf|request|serve``: the instance, its signed configuration, registration."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from central import instance, publish, registration
from central.cli_common import (
    Registry,
    default_operator,
    json_option,
    operator_option,
    output,
    plain,
    registry_command,
)
from central.errors import RegistryError
from certs import logs
from certs.cliutil import (
    UserError,
    echo_json,
    get_passphrase,
    log_format_option,
    passphrase_option,
)
from certs.names import display_name
from secnode.core import globalconf
from secnode.core.jsonfmt import format_time


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--instance", "instance_code", required=True, help="Instance code, e.g. JP.")
@click.option(
    "--db",
    "db_url",
    default=None,
    help="SQLAlchemy URL (default: SQLite file DIR/central.db), e.g. "
    "postgresql+psycopg://user@host/db",
)
@click.option("--key-type", type=click.Choice(["ec", "rsa"]), default="ec", show_default=True)
@passphrase_option
@operator_option
def init_cmd(
    directory: str,
    instance_code: str,
    db_url: str | None,
    key_type: str,
    passphrase_file: str | None,
    operator: str | None,
) -> None:
    """Create a registry in DIRECTORY: database, signing key, anchor.pem."""
    passphrase = get_passphrase(passphrase_file)
    result = instance.init(
        Path(directory), instance_code, db_url, passphrase, operator or default_operator(), key_type
    )
    click.echo(
        f"initialised instance {result['instance']} in {result['directory']} "
        f"(database {result['database']})"
    )
    click.echo(
        f"configuration anchor: {result['anchor']} (sha256 {result['anchor_sha256']}); "
        "give it to node operators out of band"
    )


# ----- conf -------------------------------------------------------------------------------
@click.group("conf")
def conf_group() -> None:
    """The signed global configuration."""


@conf_group.command("publish")
@passphrase_option
@json_option
@registry_command
def conf_publish(registry: Registry, passphrase_file: str | None, as_json: bool) -> None:
    """Sign the registry as it is now as a new configuration version."""
    result = publish.publish(
        registry.store, registry.config, registry.operator, get_passphrase(passphrase_file)
    )
    if as_json:
        output(result, True)
    else:
        click.echo(f"published version {result['version']}, expires {plain(result['expires_at'])}")


@conf_group.command("list")
@click.option("--limit", default=20, show_default=True, type=int)
@json_option
@registry_command
def conf_list(registry: Registry, limit: int, as_json: bool) -> None:
    """List the newest configuration versions."""
    output(
        publish.list_versions(registry.store, limit),
        as_json,
        ["version", "kind", "generated_at", "expires_at", "signer_sha256"],
    )


@conf_group.command("export")
@click.option("--out-dir", required=True, type=click.Path(file_okay=False))
@click.option("--version", "version", type=int, default=None, help="Default: the latest.")
@registry_command
def conf_export(registry: Registry, out_dir: str, version: int | None) -> None:
    """Write conf.json and conf.sig of a version (for offline checks)."""
    row = publish.get_version(registry.store, version)
    if row is None:
        raise RegistryError("no such configuration version" if version else "nothing published yet")
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    (target / "conf.json").write_bytes(row.document)
    (target / "conf.sig").write_bytes(row.signature)
    click.echo(f"wrote version {row.version} to {target / 'conf.json'} and {target / 'conf.sig'}")


@conf_group.command("verify")
@click.argument("document", type=click.Path(exists=True, dir_okay=False))
@click.argument("signature", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--anchor",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The configuration anchor (PEM; may hold several certificates).",
)
@click.option("--allow-expired", is_flag=True, help="Check the signature of an old copy.")
@json_option
def conf_verify(
    document: str, signature: str, anchor: str, allow_expired: bool, as_json: bool
) -> None:
    """Verify a configuration document and signature as a node would."""
    conf = globalconf.verify(
        Path(document).read_bytes(),
        Path(signature).read_bytes(),
        globalconf.load_pem_certs(Path(anchor).read_bytes()),
        allow_expired=allow_expired,
    )
    result = {
        "instance": conf.instance,
        "version": conf.version,
        "generated_at": format_time(conf.generated_at),
        "expires_at": format_time(conf.expires_at),
        "expired": conf.is_expired(),
        "signer": display_name(conf.signer.subject),
        "members": len(conf.members),
        "nodes": len(conf.nodes),
        "approved_cas": len(conf.approved_cas),
        "approved_tsas": len(conf.tsas),
    }
    if as_json:
        echo_json(result)
    else:
        click.echo(
            f"OK: instance {conf.instance} version {conf.version}, signed by "
            f"{result['signer']}, expires {result['expires_at']}"
        )


@conf_group.command("rotate-key")
@click.option("--key-type", type=click.Choice(["ec", "rsa"]), default="ec", show_default=True)
@passphrase_option
@registry_command
def conf_rotate_key(registry: Registry, key_type: str, passphrase_file: str | None) -> None:
    """Step 1 of key rotation: create the next signing key and announce it."""
    result = instance.rotate_key(
        registry.store,
        registry.config,
        registry.operator,
        get_passphrase(passphrase_file),
        key_type,
    )
    click.echo(
        f"next signing key announced (sha256 {result['next_sha256']}) in version "
        f"{result['announced_in_version'] or '- (publish to announce it)'}"
    )
    click.echo(
        f"its certificate is {result['next_anchor']}; run 'central conf activate-key' "
        f"after {result['activate_after']}"
    )


@conf_group.command("activate-key")
@click.option(
    "--force", is_flag=True, help="Activate before every node can have seen the announcement."
)
@passphrase_option
@registry_command
def conf_activate_key(registry: Registry, force: bool, passphrase_file: str | None) -> None:
    """Step 2 of key rotation: sign with the announced key; retire the old one."""
    result = instance.activate_key(
        registry.store, registry.config, registry.operator, get_passphrase(passphrase_file), force
    )
    click.echo(
        f"signing with the new key (sha256 {result['anchor_sha256']}) from version "
        f"{result['version'] or '-'}; {result['anchor']} updated for new nodes"
    )


# ----- registration requests --------------------------------------------------------------
@click.group("request")
def request_group() -> None:
    """Registration requests sent by nodes (POST /register)."""


@request_group.command("list")
@click.option("--state", type=click.Choice(registration.STATES), default=None)
@json_option
@registry_command
def request_list(registry: Registry, state: str | None, as_json: bool) -> None:
    """List registration requests."""
    output(
        registration.list_requests(registry.store, state),
        as_json,
        ["id", "state", "node", "address", "subsystems", "received_at"],
    )


@request_group.command("show")
@click.argument("request_id", type=int)
@json_option
@registry_command
def request_show(registry: Registry, request_id: int, as_json: bool) -> None:
    """Show one request with its certificates."""
    output(registration.show_request(registry.store, request_id), as_json)


@request_group.command("approve")
@click.argument("request_id", type=int)
@registry_command
def request_approve(registry: Registry, request_id: int) -> None:
    """Approve: the node (and new subsystems) appear in the next published version."""
    row = registration.approve(registry.store, registry.operator, request_id)
    click.echo(
        f"approved request {request_id}: node {row['node']} at {row['address']}; "
        "run 'central conf publish' to publish it"
    )


@request_group.command("reject")
@click.argument("request_id", type=int)
@click.option("--reason", required=True, help="Recorded with the decision.")
@registry_command
def request_reject(registry: Registry, request_id: int, reason: str) -> None:
    """Reject a pending request."""
    registration.reject(registry.store, registry.operator, request_id, reason)
    click.echo(f"rejected request {request_id}")


# ----- serve ------------------------------------------------------------------------------
@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--no-resign", is_flag=True, help="Do not re-sign on a schedule.")
@passphrase_option
@log_format_option
@registry_command
def serve_cmd(
    registry: Registry,
    host: str,
    port: int,
    no_resign: bool,
    passphrase_file: str | None,
    log_format: str,
) -> None:
    """Serve /globalconf, /globalconf.sig, /register and /metrics; re-sign before expiry."""
    from aiohttp import web

    from central import server, signing

    passphrase = get_passphrase(passphrase_file)
    with registry.store.read() as s:  # fail now, not at the first re-signing
        signing.load_signer(registry.config, signing.active_key(s), passphrase)
    logs.configure(log_format)
    app = server.build_app(
        registry.store,
        registry.config,
        passphrase,
        f"{registry.operator} (serve)",
        resign=not no_resign,
    )
    ready = f"central serving instance {registry.config.instance} on http://{host}:{port}"
    log = logging.getLogger("central.server")

    async def started(_app: web.Application) -> None:
        log.info("%s", ready)

    async def stopped(_app: web.Application) -> None:
        log.info("central on %s:%d stopped", host, port)

    app.on_startup.append(started)
    app.on_cleanup.append(stopped)
    try:  # run_app calls print() once the socket is bound
        web.run_app(
            app, host=host, port=port, print=lambda _: click.echo(ready), handle_signals=True
        )
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc}") from exc


COMMANDS = [init_cmd, conf_group, request_group, serve_cmd]
