"""Day-one node setup commands: certificates, subsystems, registration, status, sync, serve.

These are the commands a municipality's operator runs after ``secnode init``
and ``secnode keys new`` (see ``docs/operations.md`` for the order). Each one
refuses with a single ``error:`` line that says what to do next.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Any

import click
from cryptography import x509
from sqlalchemy import select

from certs.cliutil import UserError, echo_json, echo_table, get_passphrase, passphrase_option
from secnode.app import admin, jobs
from secnode.core.globalconf import GlobalConf, GlobalConfError
from secnode.core.identifiers import SubsystemId, validate_part
from secnode.core.jsonfmt import format_time
from secnode.core.registration import build_request
from secnode.globalconf import ConfStore
from secnode.home import NodeHome
from secnode.registration_client import submit
from secnode.store import models
from secnode.trust import own_certs

REGISTRATION_STATE_KEY = "registration"
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _node_command(func: Any) -> Any:
    from secnode.cli import node_command

    return node_command(func)


def held_conf(node: NodeHome) -> tuple[GlobalConf | None, str | None]:
    """The configuration on disk (no network) and, when unusable, why."""
    try:
        conf = ConfStore(node.dir.globalconf_dir).load_last_good()
    except GlobalConfError as exc:
        return None, str(exc)
    return conf, None if conf else "no global configuration yet (run 'secnode sync')"


# ----- certs --------------------------------------------------------------------------------
@click.group("certs")
def certs_group() -> None:
    """The node's auth and sign certificates (issued by an approved CA from keys/*.csr)."""


@certs_group.command("import")
@click.argument("cert_file", type=click.Path(exists=True, dir_okay=False))
@json_option
@_node_command
def certs_import(node: NodeHome, cert_file: str, as_json: bool) -> None:
    """Check and import CERT_FILE (PEM or DER): key match, profile, approved CA, OCSP good."""
    result = own_certs.import_certificate(node, Path(cert_file).read_bytes())
    summary = {
        "usage": result.usage, "subject": result.cert.subject.rfc4514_string(),
        "sha256": result.sha256, "not_after": format_time(result.cert.not_valid_after_utc),
        "ocsp_status": result.status.status,
        "ocsp_this_update": format_time(result.status.this_update),
        "file": str(result.path), "replaced": result.replaced, "pending": result.pending,
    }
    if as_json:
        echo_json(summary)
        return
    click.echo(f"imported {result.usage} certificate {summary['subject']} "
               f"(sha256 {result.sha256[:16]}..., valid until {summary['not_after']}, "
               f"OCSP {result.status.status}) -> {result.path}")
    if result.pending:
        click.echo("pending: the auth certificate in use stays in use; run 'secnode register' "
                   "now; the node switches once the registry has approved and every peer's "
                   "global configuration lists the new one (secnode status shows when)")
    if result.replaced:
        click.echo(f"deactivated {result.replaced} older {result.usage} certificate(s)")


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds}s"
    return f"{seconds // 60}m" if seconds < 7200 else f"{seconds // 3600}h"


@certs_group.command("list")
@json_option
@_node_command
def certs_list(node: NodeHome, as_json: bool) -> None:
    """Imported certificates with validity, OCSP status and the age of that status."""
    now = dt.datetime.now(dt.UTC)
    with node.sessions() as s:
        rows = list(s.scalars(select(models.NodeCertificate).order_by(
            models.NodeCertificate.usage, models.NodeCertificate.imported_at.desc())))
    out: list[dict[str, Any]] = []
    for row in rows:
        view = admin.cert_view(row)
        this_update = view.ocsp_this_update
        out.append({
            "usage": row.usage, "active": row.active, "pending": row.pending,
            "subject": row.subject,
            "serial": row.serial, "sha256": row.cert_sha256,
            "not_before": format_time(view.not_before), "not_after": format_time(view.not_after),
            "ocsp_status": row.ocsp_status,
            "ocsp_this_update": format_time(this_update) if this_update else None,
            "ocsp_age_seconds": None if this_update is None
            else int((now - this_update).total_seconds()),
            "ocsp_error": row.ocsp_error,
        })
    if as_json:
        echo_json(out)
        return
    echo_table([{**r, "active": "yes" if r["active"] else "pending" if r["pending"] else "no",
                 "ocsp": r["ocsp_status"] or "none", "ocsp_age": _age(r["ocsp_age_seconds"]),
                 "sha256": r["sha256"][:16]} for r in out],
               ["usage", "active", "subject", "not_after", "ocsp", "ocsp_age", "sha256"])
    for r in out:
        if r["active"] and r["ocsp_error"]:
            click.echo(f"{r['usage']}: OCSP refresh failing: {r['ocsp_error']}")


# ----- subsystems ---------------------------------------------------------------------------
@click.group("subsystem")
def subsystem_group() -> None:
    """This member's subsystems (information systems) served by the node."""


@subsystem_group.command("add")
@click.argument("code")
@_node_command
def subsystem_add(node: NodeHome, code: str) -> None:
    """Add subsystem CODE (e.g. 'juminhyo'); 'secnode register' announces it centrally."""
    validate_part(code, "subsystem code")
    with node.session() as s:
        if s.scalars(select(models.Subsystem).where(models.Subsystem.code == code)).first():
            raise UserError(f"subsystem {SubsystemId.of(node.member_id, code)} already exists")
        s.add(models.Subsystem(code=code))
    click.echo(f"added subsystem {SubsystemId.of(node.member_id, code)}")


def _subsystem_rows(node: NodeHome, conf: GlobalConf | None) -> list[dict[str, Any]]:
    with node.sessions() as s:
        rows = list(s.scalars(select(models.Subsystem).order_by(models.Subsystem.code)))
    out = []
    for row in rows:
        sid = SubsystemId.of(node.member_id, row.code)
        out.append({"id": str(sid), "code": row.code, "added_at": format_time(row.added_at),
                    "registration_sent_at": format_time(row.registration_sent_at)
                    if row.registration_sent_at else None,
                    "registered": None if conf is None else conf.has_client(sid)})
    return out


@subsystem_group.command("list")
@json_option
@_node_command
def subsystem_list(node: NodeHome, as_json: bool) -> None:
    """Subsystems and whether the held global configuration lists them."""
    rows = _subsystem_rows(node, held_conf(node)[0])
    if as_json:
        echo_json(rows)
        return
    echo_table([{**r, "registered": {None: "unknown", True: "yes", False: "no"}[r["registered"]]}
                for r in rows], ["id", "registered", "registration_sent_at"])


# ----- register -----------------------------------------------------------------------------
def _active(node: NodeHome, usage: str) -> models.NodeCertificate:
    row = node.active_certificate(usage)
    if row is None:
        raise UserError(f"no {usage} certificate imported; run 'secnode certs import' first")
    return row


@click.command("register")
@passphrase_option
@json_option
@_node_command
def register_cmd(node: NodeHome, passphrase_file: str | None, as_json: bool) -> None:
    """Send the registration request (auth certificate + subsystems) to the central registry.

    Signed with the auth key and the member's sign key; the registry operator
    approves it, and the node appears in the next published configuration.
    """
    passphrase = get_passphrase(passphrase_file)
    # A renewal registers the pending auth certificate (the one in use is registered already).
    auth_row = node.pending_certificate("auth") or _active(node, "auth")
    sign_row = _active(node, "sign")
    address = node.dir.config.server.address
    if not address:
        raise UserError("[server] address is empty in secnode.toml; set the host:port other "
                        "nodes use to reach this one")
    with node.sessions() as s:
        subsystems = list(s.scalars(select(models.Subsystem).order_by(models.Subsystem.code)))
    ids = [SubsystemId.of(node.member_id, sub.code) for sub in subsystems]
    envelope = build_request(
        node.node_id, address,
        x509.load_pem_x509_certificate(auth_row.cert_pem.encode()),
        node.signer("auth", passphrase, auth_row),
        x509.load_pem_x509_certificate(sign_row.cert_pem.encode()),
        node.signer("sign", passphrase, sign_row),
        ids, sign_ocsp=sign_row.ocsp_der,
    )
    url = jobs.register_url(node.dir.config)
    answer = submit(url, envelope)
    sent = dt.datetime.now(dt.UTC)
    with node.session() as s:
        for sub in s.scalars(select(models.Subsystem)):
            sub.registration_sent_at = sent
    record = {"id": answer.get("id"), "state": answer.get("state"), "sent_at": format_time(sent),
              "url": url, "auth_cert_sha256": auth_row.cert_sha256,
              "subsystems": [str(i) for i in ids]}
    node.set_state(REGISTRATION_STATE_KEY, json.dumps(record, sort_keys=True))
    if as_json:
        echo_json(record)
        return
    click.echo(f"registration request {record['id']} sent to {url} ({record['state']}): node "
               f"{node.node_id} at {address}, subsystems {', '.join(map(str, ids)) or 'none'}")
    click.echo("the registry operator must approve and publish; then 'secnode sync' and "
               "'secnode status' show it registered")


# ----- status -------------------------------------------------------------------------------
def registration_state(node: NodeHome, conf: GlobalConf | None,
                       auth_sha256: str | None) -> dict[str, Any]:
    """Registration as the held configuration shows it, plus the last request sent."""
    raw = node.get_state(REGISTRATION_STATE_KEY)
    request = json.loads(raw) if raw else None
    entry = conf.node(node.node_id) if conf is not None else None
    pending = node.pending_certificate("auth")
    if conf is None:
        state = "unknown (no global configuration)"
    elif pending is not None and entry is not None and entry.has_auth_cert(pending.cert_sha256):
        state = "registered (new auth certificate registered, switching)"
    elif pending is not None and request is not None and (
            request.get("auth_cert_sha256") == pending.cert_sha256):
        state = "registered (new auth certificate pending approval)"
    elif pending is not None:
        state = "registered (new auth certificate imported: run 'secnode register')"
    elif entry is not None and auth_sha256 is not None and entry.has_auth_cert(auth_sha256):
        state = "registered"
    elif request is not None and request.get("auth_cert_sha256") == auth_sha256:
        state = "pending approval" + (" (new auth certificate)" if entry is not None else "")
    elif entry is not None:
        state = "registered with another auth certificate"
    else:
        state = "not registered"
    return {"state": state, "registered": state == "registered" or state.startswith("registered ("),
            "address": entry.address if entry else None, "request": request}


def status_report(node: NodeHome) -> dict[str, Any]:
    conf, conf_error = held_conf(node)
    result = admin.node_health(node, conf, conf_error)
    auth = result.report["certificates"]["auth"]
    return {
        "node": str(node.node_id), "member": str(node.member_id),
        "address": node.dir.config.server.address,
        "central": jobs.central_base(node.dir.config),
        "registration": registration_state(node, conf, auth["sha256"] if auth else None),
        "subsystems": _subsystem_rows(node, conf),
        "conf": result.report["conf"],
        "certificates": result.report["certificates"],
        "health": {"status": result.status, "reasons": result.reasons,
                   "warnings": result.warnings},
    }


@click.command("status")
@json_option
@_node_command
def status_cmd(node: NodeHome, as_json: bool) -> None:
    """Node id, registration state, configuration version and expiry, certificates and OCSP."""
    report = status_report(node)
    if as_json:
        echo_json(report)
        return
    conf = report["conf"]
    click.echo(f"node:           {report['node']} at {report['address'] or '-'}")
    click.echo(f"registration:   {report['registration']['state']}")
    for sub in report["subsystems"]:
        mark = {None: "unknown", True: "registered", False: "not registered"}[sub["registered"]]
        click.echo(f"subsystem:      {sub['id']} ({mark})")
    if conf["version"] is None:
        click.echo("configuration:  none")
    else:
        click.echo(f"configuration:  version {conf['version']}, expires {conf['expires_at']}"
                   f"{' (EXPIRED)' if conf['expired'] else ''}")
    for usage, cert in report["certificates"].items():
        if cert is None:
            click.echo(f"{usage} cert:      none")
            continue
        ocsp = cert["ocsp"]
        age = "-" if ocsp["age_seconds"] is None else f"{ocsp['age_seconds']:.0f} s old"
        click.echo(f"{usage} cert:      {cert['subject']}, until {cert['not_after']}; OCSP "
                   f"{ocsp['status'] or 'none'} ({age}{'' if ocsp['fresh'] else ', NOT fresh'})")
    health = report["health"]
    click.echo(f"health:         {health['status']}")
    for reason in health["reasons"]:
        click.echo(f"  reason:  {reason}")
    for warning in health["warnings"]:
        click.echo(f"  warning: {warning}")


# ----- sync ---------------------------------------------------------------------------------
@click.command("sync")
@json_option
@_node_command
def sync_cmd(node: NodeHome, as_json: bool) -> None:
    """Run the background jobs once: fetch the global configuration, then OCSP responses."""
    report = asyncio.run(jobs.run_once(node))
    conf = report.conf
    data: dict[str, Any] = {
        "ok": report.ok,
        "conf": {"ok": conf.ok, "version": conf.version, "previous": conf.previous,
                 "changed": conf.changed, "error": conf.error,
                 "expires_at": format_time(conf.expires_at) if conf.expires_at else None},
        "ocsp": [{"usage": o.usage, "sha256": o.cert_sha256, "status": o.status,
                  "error": o.error} for o in report.ocsp],
    }
    if as_json:
        echo_json(data)
    else:
        if conf.ok:
            what = "new" if conf.changed else "unchanged"
            click.echo(f"global configuration: version {conf.version} ({what}), expires "
                       f"{data['conf']['expires_at']}")
        else:
            held = f"keeping version {conf.version}" if conf.version else "none held"
            click.echo(f"global configuration: refresh failed ({held}): {conf.error}")
        for o in report.ocsp:
            click.echo(f"{o.usage} certificate: OCSP "
                       + (o.status if o.status else f"fetch failed: {o.error}"))
    if not report.ok:
        problems = ([] if conf.ok else ["global configuration"]) + [
            f"OCSP for the {o.usage} certificate" for o in report.ocsp if o.status != "good"]
        raise UserError(f"sync incomplete: {', '.join(problems)}")


# ----- serve --------------------------------------------------------------------------------
def configure_logging(level: str) -> None:
    """One line per event: ``time level logger message`` (UTC, ISO 8601)."""
    handler = logging.StreamHandler()
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                  "%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


@click.command("serve")
@passphrase_option
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@_node_command
def serve_cmd(node: NodeHome, passphrase_file: str | None, log_level: str) -> None:
    """Run the node: client and node-to-node interfaces, /health and /metrics, background jobs."""
    from secnode.app import serve

    passphrase = get_passphrase(passphrase_file)
    configure_logging(log_level)
    try:
        serve.serve_forever(node, passphrase)
    except OSError as exc:
        raise UserError(f"cannot start the node: {exc}") from exc


def register(main: click.Group) -> None:
    """Attach this module's commands to the ``secnode`` group."""
    for command in (certs_group, subsystem_group, register_cmd, status_cmd, sync_cmd,
                    serve_cmd):
        main.add_command(command)
