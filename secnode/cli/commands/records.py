"""``secnode records`` (Art. 33(5) disclosure to one individual) and ``secnode report
transparency`` (the yearly report), both made from the node's policy records."""

from __future__ import annotations

from pathlib import Path

import click

from certs.cliutil import echo_json, echo_table
from secnode.cli.options import dir_option, json_option, node_command
from secnode.core.policy import render_report
from secnode.core.policy.report import FORMATS
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
@node_command
def transparency_cmd(
    node: NodeHome, fiscal_year: int, fmt: str, out_file: str | None, suppress_below: int | None
) -> None:
    """Provisions, subjects and refusals per reason and recipient, from the decision log."""
    threshold = suppress_below or node.dir.config.policy.report_suppression_threshold
    report = transparency_report(node.engine, fiscal_year, threshold)
    text = render_report(report, fmt)
    if out_file:
        Path(out_file).write_text(text, encoding="utf-8")
        click.echo(f"wrote {fmt} report for FY{fiscal_year} to {out_file}")
    else:
        click.echo(text, nl=False)
