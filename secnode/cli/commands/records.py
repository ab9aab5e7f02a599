"""``secnode records`` (Art. 33(5) disclosure to one individual) and ``secnode report
transparency`` (the yearly report), both made from the node's policy records."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from certs.cliutil import echo_json, echo_table
from secnode.cli.options import dir_option, json_option, node_command
from secnode.core.policy import JST, render_report
from secnode.core.policy.report import FORMATS, GROUPINGS
from secnode.home import NodeHome
from secnode.policy import records
from secnode.policy.report import transparency_report


@click.group("records", invoke_without_command=True)
@click.option(
    "--subject",
    "subject_ref",
    default=None,
    help="The pseudonymous subject reference the individual was given.",
)
@json_option
@dir_option
@click.pass_context
def records_cmd(
    ctx: click.Context, subject_ref: str | None, as_json: bool, node_dir: str | None
) -> None:
    """Provision (Art. 29) and receipt (Art. 30) records of one individual (Art. 33(5))."""
    if ctx.invoked_subcommand is not None:
        return
    if subject_ref is None:
        raise click.UsageError("Missing option '--subject'.")
    node = NodeHome.open(node_dir)
    try:
        _show_records(node, subject_ref, as_json)
    finally:
        node.close()


def _show_records(node: NodeHome, subject_ref: str, as_json: bool) -> None:
    out = records.subject_records(node.engine, subject_ref)
    if as_json:
        echo_json(out)
        return
    click.echo(
        f"subject {subject_ref}: {len(out['provisions'])} provision(s), "
        f"{len(out['receipts'])} receipt(s)"
    )
    rows = [
        {
            "at": p["at"],
            "to": p.get("recipient"),
            "service": p.get("service"),
            "items": ",".join(p.get("data_items") or []),
            "basis": p.get("basis"),
            "consent": p.get("consent_id"),
        }
        for p in out["provisions"]
    ]
    if rows:
        click.echo("provided (APPI Art. 29):")
        echo_table(rows, ["at", "to", "service", "items", "basis", "consent"])
    rows = [
        {
            "at": r["at"],
            "from": r.get("provider_name") or r.get("provider"),
            "service": r.get("service"),
            "items": ",".join(r.get("data_items") or []),
            "basis": r.get("basis"),
            "acquired": r.get("acquisition_circumstances"),
        }
        for r in out["receipts"]
    ]
    if rows:
        click.echo("received (APPI Art. 30):")
        echo_table(rows, ["at", "from", "service", "items", "basis", "acquired"])


@click.group("report")
def report_group() -> None:
    """Reports made from the node's records."""


@report_group.command("transparency")
@click.option(
    "--fiscal-year",
    required=True,
    type=int,
    help="Japanese fiscal year (April 1 - March 31), e.g. 2026.",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write to this file instead of standard output.",
)
@click.option(
    "--suppress-below",
    type=int,
    default=None,
    help="Hide subject counts below this (default: [policy] report_suppression_threshold).",
)
@click.option(
    "--by",
    "group_by",
    type=click.Choice(GROUPINGS),
    default="member",
    show_default=True,
    help="One row per recipient member, or per receiving unit (subsystem) under its member.",
)
@click.option(
    "--publisher",
    default=None,
    help="City name (default: [policy] report_publisher, "
    "else this node's member name in the registry).",
)
@click.option(
    "--contact",
    default=None,
    help="Office to ask (default: [policy] report_contact; required for html).",
)
@click.option(
    "--published",
    "published_text",
    default=None,
    help="Date of publication YYYY-MM-DD (default: today, Japan time).",
)
@node_command
def transparency_cmd(
    node: NodeHome,
    fiscal_year: int,
    fmt: str,
    out_file: str | None,
    suppress_below: int | None,
    group_by: str,
    publisher: str | None,
    contact: str | None,
    published_text: str | None,
) -> None:
    """Provisions, subjects and refusals per reason and recipient, from the decision log."""
    conf = node.dir.config
    threshold = suppress_below or conf.policy.report_suppression_threshold
    contact = contact or conf.policy.report_contact or None
    if fmt == "html" and not contact:
        raise click.UsageError(
            "a published report names the office to ask: give --contact or set "
            "[policy] report_contact"
        )
    try:
        published = (
            dt.date.fromisoformat(published_text) if published_text else dt.datetime.now(JST).date()
        )
    except ValueError:
        raise click.BadParameter(
            f"expected a date YYYY-MM-DD, got {published_text!r}", param_hint="--published"
        ) from None
    report = transparency_report(
        node.engine,
        fiscal_year,
        threshold,
        group_by=group_by,
        own_member=conf.member_id,
        publisher=publisher or conf.policy.report_publisher or None,
        contact=contact,
        published=published,
    )
    text = render_report(report, fmt)
    if out_file:
        Path(out_file).write_text(text, encoding="utf-8")
        click.echo(f"wrote {fmt} report for FY{fiscal_year} to {out_file}")
    else:
        click.echo(text, nl=False)
