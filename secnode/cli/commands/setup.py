"""Day-one node setup: init, keys, certificates, subsystems, registration, sync, serve.

These are the commands a municipality's operator runs after ``secnode init``
and ``secnode keys new`` (see ``docs/operations.md`` for the order). The steps
are :mod:`secnode.enrolment`'s; a refusal is one ``error:`` line that says what
to do next.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from certs import logs
from certs.cliutil import (
    UserError,
    echo_json,
    echo_table,
    get_passphrase,
    log_format_option,
    passphrase_option,
)
from secnode import enrolment
from secnode.app import jobs
from secnode.cli.options import json_option, node_command
from secnode.core.jsonfmt import format_time
from secnode.home import InitOptions, NodeHome, init_node
from secnode.store.db import redact


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--member", required=True, help="Owner member, e.g. JP/GOV/072028.")
@click.option("--server-code", required=True, help="This node's code, e.g. ss1.")
@click.option("--central", "central_url", required=True, help="Central registry base URL.")
@click.option(
    "--anchor",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Configuration anchor (central's anchor.pem), handed over out of band.",
)
@click.option(
    "--db",
    "db_url",
    default="",
    help="SQLAlchemy URL, e.g. postgresql+psycopg://secnode@db/secnode "
    "(default: SQLite in DIR). A missing PostgreSQL database is created if allowed.",
)
@click.option(
    "--host",
    "server_host",
    default="0.0.0.0",
    show_default=True,
    help="Address the node-to-node interface listens on ([server] host).",
)
@click.option(
    "--port",
    "--server-port",
    "server_port",
    default=5500,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port of the node-to-node interface ([server] port).",
)
@click.option(
    "--client-host",
    default="127.0.0.1",
    show_default=True,
    help="Address of the interface for your information systems ([client] host).",
)
@click.option("--client-port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--admin-host",
    default="127.0.0.1",
    show_default=True,
    help="Address of /health and /metrics ([admin] host).",
)
@click.option("--admin-port", default=5588, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--address",
    default="",
    help="host:port other nodes use to reach this node (default: 127.0.0.1:PORT).",
)
def init_cmd(
    directory: str,
    member: str,
    server_code: str,
    central_url: str,
    anchor: str,
    db_url: str,
    server_host: str,
    server_port: int,
    client_host: str,
    client_port: int,
    admin_host: str,
    admin_port: int,
    address: str,
) -> None:
    """Create a node directory: secnode.toml, database, anchor copy (all or nothing)."""
    options = InitOptions(
        db_url=db_url,
        client_host=client_host,
        client_port=client_port,
        server_host=server_host,
        server_port=server_port,
        admin_host=admin_host,
        admin_port=admin_port,
        address=address or f"127.0.0.1:{server_port}",
    )
    node, created = init_node(directory, member, server_code, central_url, anchor, options)
    if created:
        click.echo(f"created database {redact(db_url)}")
    click.echo(f"initialised node {node.node_id} in {node.path}")
    node.close()


# ----- keys -------------------------------------------------------------------------------------
@click.group("keys")
def keys_group() -> None:
    """The node's auth key (TLS between nodes) and the member's sign key."""


@keys_group.command("new")
@click.option("--usage", required=True, type=click.Choice(["auth", "sign"]))
@click.option(
    "--type", "key_type", type=click.Choice(["ec", "rsa"]), default="ec", show_default=True
)
@click.option("--org", default=None, help="Organisation name for the CSR subject.")
@click.option("--subject", default=None, help="Override the whole CSR subject.")
@click.option(
    "--renew",
    is_flag=True,
    help="The node has a key of this usage in use: write keys/<usage>-N.* beside it.",
)
@passphrase_option
@node_command
def keys_new(
    node: NodeHome,
    usage: str,
    key_type: str,
    org: str | None,
    subject: str | None,
    renew: bool,
    passphrase_file: str | None,
) -> None:
    """Create a key (encrypted PKCS#8) and write its CSR for the CA."""
    csr = node.new_key(usage, get_passphrase(passphrase_file), key_type, org, subject, renew)
    click.echo(f"wrote {usage} key {csr.with_suffix('.key')} and CSR {csr}")


# ----- certs ------------------------------------------------------------------------------------
@click.group("certs")
def certs_group() -> None:
    """The node's auth and sign certificates (issued by an approved CA from keys/*.csr)."""


@certs_group.command("import")
@click.argument("cert_file", type=click.Path(exists=True, dir_okay=False))
@json_option
@node_command
def certs_import(node: NodeHome, cert_file: str, as_json: bool) -> None:
    """Check and import CERT_FILE (PEM or DER): key match, profile, approved CA, OCSP good."""
    imported = enrolment.import_certificate(node, Path(cert_file).read_bytes())
    summary = imported.summary
    if as_json:
        echo_json(summary)
        return
    click.echo(
        f"imported {summary['usage']} certificate {summary['subject']} "
        f"(sha256 {summary['sha256'][:16]}..., valid until {summary['not_after']}, "
        f"OCSP {summary['ocsp_status']}) -> {summary['file']}"
    )
    if imported.pending:
        click.echo(
            "pending: the auth certificate in use stays in use; run 'secnode register' "
            "now; the node switches once the registry has approved and every peer's "
            "global configuration lists the new one (secnode status shows when)"
        )
    if imported.replaced:
        click.echo(f"deactivated {imported.replaced} older {summary['usage']} certificate(s)")


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds}s"
    return f"{seconds // 60}m" if seconds < 7200 else f"{seconds // 3600}h"


@certs_group.command("list")
@json_option
@node_command
def certs_list(node: NodeHome, as_json: bool) -> None:
    """Imported certificates with validity, OCSP status and the age of that status."""
    out = enrolment.certificate_rows(node)
    if as_json:
        echo_json(out)
        return
    echo_table(
        [
            {
                **r,
                "active": "yes" if r["active"] else "pending" if r["pending"] else "no",
                "ocsp": r["ocsp_status"] or "none",
                "ocsp_age": _age(r["ocsp_age_seconds"]),
                "sha256": r["sha256"][:16],
            }
            for r in out
        ],
        ["usage", "active", "subject", "not_after", "ocsp", "ocsp_age", "sha256"],
    )
    for r in out:
        if r["active"] and r["ocsp_error"]:
            click.echo(f"{r['usage']}: OCSP refresh failing: {r['ocsp_error']}")


# ----- subsystems -------------------------------------------------------------------------------
@click.group("subsystem")
def subsystem_group() -> None:
    """This member's subsystems (information systems) served by the node."""


@subsystem_group.command("add")
@click.argument("code")
@node_command
def subsystem_add(node: NodeHome, code: str) -> None:
    """Add subsystem CODE (e.g. 'juminhyo'); 'secnode register' announces it centrally."""
    click.echo(f"added subsystem {enrolment.add_subsystem(node, code)}")


@subsystem_group.command("list")
@json_option
@node_command
def subsystem_list(node: NodeHome, as_json: bool) -> None:
    """Subsystems and whether the held global configuration lists them."""
    rows = enrolment.subsystem_rows(node, enrolment.held_conf(node)[0])
    if as_json:
        echo_json(rows)
        return
    echo_table(
        [
            {**r, "registered": {None: "unknown", True: "yes", False: "no"}[r["registered"]]}
            for r in rows
        ],
        ["id", "registered", "registration_sent_at"],
    )


# ----- register ---------------------------------------------------------------------------------
@click.command("register")
@passphrase_option
@json_option
@node_command
def register_cmd(node: NodeHome, passphrase_file: str | None, as_json: bool) -> None:
    """Send the registration request (auth certificate + subsystems) to the central registry.

    Signed with the auth key and the member's sign key; the registry operator
    approves it, and the node appears in the next published configuration.
    """
    record = enrolment.register(node, get_passphrase(passphrase_file))
    if as_json:
        echo_json(record)
        return
    click.echo(
        f"registration request {record['id']} sent to {record['url']} ({record['state']}):"
        f" node {node.node_id} at {node.dir.config.server.address}, subsystems "
        f"{', '.join(record['subsystems']) or 'none'}"
    )
    click.echo(
        "the registry operator must approve and publish; then 'secnode sync' and "
        "'secnode status' show it registered"
    )


# ----- sync -------------------------------------------------------------------------------------
@click.command("sync")
@json_option
@node_command
def sync_cmd(node: NodeHome, as_json: bool) -> None:
    """Run the background jobs once: fetch the global configuration, then OCSP responses."""
    report = asyncio.run(jobs.run_once(node))
    conf = report.conf
    data: dict[str, Any] = {
        "ok": report.ok,
        "conf": {
            "ok": conf.ok,
            "version": conf.version,
            "previous": conf.previous,
            "changed": conf.changed,
            "error": conf.error,
            "expires_at": format_time(conf.expires_at) if conf.expires_at else None,
        },
        "ocsp": [
            {"usage": o.usage, "sha256": o.cert_sha256, "status": o.status, "error": o.error}
            for o in report.ocsp
        ],
    }
    if as_json:
        echo_json(data)
    else:
        if conf.ok:
            what = "new" if conf.changed else "unchanged"
            click.echo(
                f"global configuration: version {conf.version} ({what}), expires "
                f"{data['conf']['expires_at']}"
            )
        else:
            held = f"keeping version {conf.version}" if conf.version else "none held"
            click.echo(f"global configuration: refresh failed ({held}): {conf.error}")
        for o in report.ocsp:
            click.echo(
                f"{o.usage} certificate: OCSP "
                + (o.status if o.status else f"fetch failed: {o.error}")
            )
    if not report.ok:
        problems = ([] if conf.ok else ["global configuration"]) + [
            f"OCSP for the {o.usage} certificate" for o in report.ocsp if o.status != "good"
        ]
        raise UserError(f"sync incomplete: {', '.join(problems)}")


# ----- serve ------------------------------------------------------------------------------------
@click.command("serve")
@passphrase_option
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@log_format_option
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=None,
    envvar="SECNODE_WORKERS",
    help="Node processes sharing the ports [default: the number of cores; $SECNODE_WORKERS].",
)
@node_command
def serve_cmd(
    node: NodeHome,
    passphrase_file: str | None,
    log_level: str,
    log_format: str,
    workers: int | None,
) -> None:
    """Run the node: client and node-to-node interfaces, /health and /metrics, background jobs."""
    from secnode.app import serve
    from secnode.app.workers import Supervisor, default_workers

    passphrase = get_passphrase(passphrase_file)
    logs.configure(log_format, log_level)
    count = workers or default_workers()
    try:
        if count == 1:
            serve.serve_forever(node, passphrase)
        else:
            Supervisor(node, passphrase, count, log_format, log_level).run()
    except OSError as exc:
        raise UserError(f"cannot start the node: {exc}") from exc
