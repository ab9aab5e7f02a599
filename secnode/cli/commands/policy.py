"""``secnode policy`` (import/export, state, explain, history, decision log, enforcement,
purge) and ``secnode service classify``.

Thin over :mod:`secnode.policy.admin`. ``--by`` names who made a change
(default: ``$SECNODE_ACTOR``, else the OS user).
"""

from __future__ import annotations

import json

import click

from certs.cliutil import echo_json, echo_table
from secnode.cli.options import by_option, json_option, node_command, when
from secnode.core.policy import DataClass, explain, render_explanation
from secnode.home import NodeHome
from secnode.policy import admin


@click.group("policy")
def policy_group() -> None:
    """The node's policy: import/export, state, explain a decision."""


@policy_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--check", is_flag=True, help="Validate against the store; change nothing.")
@by_option
@node_command
def import_cmd(node: NodeHome, file: str, check: bool, by: str | None) -> None:
    """Validate FILE (strict: unknown vocabulary and terms that can never authorise anything
    are refused with their JSON path) and merge it into the store."""
    snapshot, counts = admin.import_policy(node, file, by, check=check)
    click.echo(
        f"{'checked (nothing stored)' if check else 'imported'} {file} "
        f"(policy {snapshot.policy_version or '-'}, "
        f"{snapshot.digest}): {counts['added']} added, {counts['updated']} updated, "
        f"{counts['unchanged']} unchanged"
    )


@policy_group.command("export")
@click.argument("file", type=click.Path(dir_okay=False))
@node_command
def export_cmd(node: NodeHome, file: str) -> None:
    """Write the stored policy (registry, consents, stop requests) as one document."""
    snapshot = admin.export_policy(node, file)
    click.echo(f"exported policy to {file} ({snapshot.digest})")


@policy_group.command("show")
@json_option
@node_command
def show_cmd(node: NodeHome, as_json: bool) -> None:
    """Enforcement, generation, version, digest and what the store holds."""
    out = admin.policy_state(node)
    if as_json:
        echo_json(out)
        return
    click.echo(f"enforcing: {'yes' if out['enforcing'] else 'no (no policy yet)'}")
    for key in ("generation", "policy_version", "registry_digest", "retention_years"):
        click.echo(f"{key}: {out[key]}")
    if out["load_error"]:
        click.echo(f"load error: {out['load_error']}")
    click.echo("holds: " + ", ".join(f"{k} {v}" for k, v in out["counts"].items()))


@policy_group.command("explain")
@click.argument("request_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--at", "at_text", default=None, help="Evaluation time with offset (default: now).")
@json_option
@node_command
def explain_cmd(node: NodeHome, request_file: str, at_text: str | None, as_json: bool) -> None:
    """Decide REQUEST.json as this node would (same function) and say why."""
    decision, registry = admin.explain_request(node, request_file, when(at_text, "--at"))
    if as_json:
        echo_json(explain(decision, registry))
    else:
        click.echo(render_explanation(decision, registry), nl=False)


@policy_group.command("history")
@click.option("--limit", default=50, show_default=True, type=int)
@json_option
@node_command
def history_cmd(node: NodeHome, limit: int, as_json: bool) -> None:
    """Registry changes, newest first: who changed what, when."""
    rows = admin.history(node, limit)
    if as_json:
        echo_json([{**r, "detail": json.loads(r["detail"]) if r["detail"] else None} for r in rows])
    else:
        echo_table(rows, ["at", "actor", "action", "kind", "key"])


@policy_group.command("log")
@click.option("--since", default=None, help="From this time (with offset).")
@click.option("--until", default=None, help="Before this time (with offset).")
@click.option("--subject", "subject_ref", default=None)
@click.option("--message-id", default=None)
@click.option("--side", type=click.Choice(["provider", "client"]), default=None)
@click.option("--limit", default=1000, show_default=True, type=int)
@json_option
@node_command
def log_cmd(
    node: NodeHome,
    since: str | None,
    until: str | None,
    subject_ref: str | None,
    message_id: str | None,
    side: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The decision log: every decision, allow and deny, with its digest."""
    rows = admin.decision_log(
        node,
        when(since, "--since") if since else None,
        when(until, "--until") if until else None,
        side,
        subject_ref,
        message_id,
        limit,
    )
    if as_json:
        echo_json(
            [
                {**json.loads(r["entry"]), "at": r["at"], "entry_sha256": r["entry_sha256"]}
                for r in rows
            ]
        )
        return
    echo_table(
        [{**r, "decision": "ALLOW" if r["allow"] else "DENY"} for r in rows],
        ["at", "side", "decision", "reason", "client", "service", "basis", "message_id"],
    )


@policy_group.command("disable")
@click.option("--reason", required=True, help="Why (recorded with your name).")
@by_option
@node_command
def disable_cmd(node: NodeHome, reason: str, by: str | None) -> None:
    """Stop enforcing: access rights alone decide (recorded; use for migrations only)."""
    admin.set_enforcing(node, False, by, reason)
    click.echo("policy enforcement is OFF: personal data is protected by access rights only")


@policy_group.command("enable")
@click.option("--reason", default="enabled", help="Why (recorded with your name).")
@by_option
@node_command
def enable_cmd(node: NodeHome, reason: str, by: str | None) -> None:
    """Enforce the stored policy again (deny by default)."""
    admin.set_enforcing(node, True, by, reason)
    click.echo("policy enforcement is ON")


@policy_group.command("purge")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@node_command
def purge_cmd(node: NodeHome, dry_run: bool) -> None:
    """Delete decision-log rows and records whose retention ended."""
    counts = admin.purge(node, dry_run)
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


# ----- service classify (a sub-command of 'service', attached in secnode.cli._root) -------------
_CLASSES = ", ".join(c.value for c in DataClass)


@click.command("classify")
@click.argument("service")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--non-personal", is_flag=True, help="No personal data at all.")
@click.option(
    "--field",
    "fields",
    multiple=True,
    metavar="NAME=CLASS",
    help=f"A field and its data class ({_CLASSES}); repeat for each field.",
)
@click.option(
    "--purpose", "purposes", multiple=True, help="A registered purpose (Art. 17 / Art. 61); repeat."
)
@click.option("--profile", "profiles", multiple=True, help="An exception profile id; repeat.")
@click.option(
    "--subject-required/--no-subject-required",
    default=None,
    help="Requests must name the data subject (per-person data).",
)
@click.option("--acquisition", default=None, help="取得の経緯 for the recipient's record.")
@click.option("--title", default=None)
@by_option
@node_command
def classify_cmd(
    node: NodeHome,
    service: str,
    file: str | None,
    non_personal: bool,
    fields: tuple[str, ...],
    purposes: tuple[str, ...],
    profiles: tuple[str, ...],
    subject_required: bool | None,
    acquisition: str | None,
    title: str | None,
    by: str | None,
) -> None:
    """Classify SERVICE's fields (FILE: one 'services' entry of a policy document)."""
    sid, outcome = admin.classify(
        node,
        service,
        admin.Classification(
            file, non_personal, fields, purposes, profiles, subject_required, acquisition, title
        ),
        by,
    )
    click.echo(f"classification of {sid}: {outcome}")
