"""``secnode status``: what the node holds, read from disk (no network), for the operator."""

from __future__ import annotations

import click

from certs.cliutil import echo_json
from secnode import enrolment
from secnode.cli.options import json_option, node_command
from secnode.home import NodeHome


@click.command("status")
@json_option
@node_command
def status_cmd(node: NodeHome, as_json: bool) -> None:
    """Node id, registration state, configuration version and expiry, certificates and OCSP."""
    report = enrolment.status_report(node)
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
        click.echo(
            f"configuration:  version {conf['version']}, expires {conf['expires_at']}"
            f"{' (EXPIRED)' if conf['expired'] else ''}"
        )
    for usage, cert in report["certificates"].items():
        if cert is None:
            click.echo(f"{usage} cert:      none")
            continue
        ocsp = cert["ocsp"]
        age = "-" if ocsp["age_seconds"] is None else f"{ocsp['age_seconds']:.0f} s old"
        click.echo(
            f"{usage} cert:      {cert['subject']}, until {cert['not_after']}; OCSP "
            f"{ocsp['status'] or 'none'} ({age}{'' if ocsp['fresh'] else ', NOT fresh'})"
        )
    health = report["health"]
    click.echo(f"health:         {health['status']}")
    for reason in health["reasons"]:
        click.echo(f"  reason:  {reason}")
    for warning in health["warnings"]:
        click.echo(f"  warning: {warning}")
