"""``secnode policy init``, ``policy member add|list``, ``policy purpose add|list``.

Attached under ``secnode policy`` by ``cli/_root.py``; what they do is
:mod:`secnode.policy.authoring`'s.
"""

from __future__ import annotations

from pathlib import Path

import click

from certs.cliutil import echo_json, echo_table
from secnode.cli.options import by_option, json_option, node_command
from secnode.core.policy.vocabulary import DPV_PURPOSES, LegalType
from secnode.home import NodeHome
from secnode.policy import authoring

LEGAL_TYPES = click.Choice([t.value for t in LegalType])


@click.command("init")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--name", required=True, help="This member's name, e.g. 会津若松市.")
@click.option(
    "--legal-type",
    type=LEGAL_TYPES,
    default=LegalType.PUBLIC_BODY.value,
    show_default=True,
    help="Which APPI rules apply to this member.",
)
@node_command
def policy_init(node: NodeHome, file: str, name: str, legal_type: str) -> None:
    """Write a minimal policy for this node's member to FILE, with notes, to edit and import."""
    authoring.write_template(Path(file), node.member_id, name, LegalType(legal_type))
    click.echo(
        f"wrote {file}: member {node.member_id} and one example purpose; edit it (the "
        f"'$comment' notes say what goes where), then 'secnode policy import {file}'"
    )


@click.group("member")
def member_group() -> None:
    """Members (organisations) the policy knows."""


@member_group.command("add")
@click.argument("member_id")
@click.option("--name", required=True)
@click.option("--legal-type", type=LEGAL_TYPES, required=True)
@click.option("--country", default=None, help="ISO 3166 alpha-2 (default JP).")
@click.option("--address", default=None)
@click.option("--representative", default=None)
@by_option
@node_command
def member_add(
    node: NodeHome,
    member_id: str,
    name: str,
    legal_type: str,
    country: str | None,
    address: str | None,
    representative: str | None,
    by: str | None,
) -> None:
    """Add MEMBER_ID (e.g. JP/GOV/372013) to the stored policy."""
    entry = {"id": member_id, "legal_type": legal_type, "name": name}
    optional = {"country": country, "address": address, "representative": representative}
    entry.update({k: v for k, v in optional.items() if v is not None})
    authoring.add_member(node, entry, by)
    click.echo(f"added member {member_id} ({legal_type}) to the policy")


@member_group.command("list")
@json_option
@node_command
def member_list(node: NodeHome, as_json: bool) -> None:
    """Members in the stored policy."""
    rows = authoring.members(node)
    if as_json:
        echo_json(rows)
        return
    echo_table(rows, ["id", "legal_type", "name", "status"])


@click.group("purpose")
def purpose_group() -> None:
    """Purpose codes requests may name (X-Road-Purpose)."""


@purpose_group.command("add")
@click.argument("code")
@click.option("--label-ja", required=True, help="Japanese label, e.g. 生活保護の要否判定.")
@click.option("--label-en", required=True, help="English label.")
@click.option("--dpv", "dpv_purpose", type=click.Choice(sorted(DPV_PURPOSES)), default=None)
@by_option
@node_command
def purpose_add(
    node: NodeHome,
    code: str,
    label_ja: str,
    label_en: str,
    dpv_purpose: str | None,
    by: str | None,
) -> None:
    """Add purpose CODE (e.g. WELFARE-ELIGIBILITY) to the stored policy."""
    entry = {"code": code, "label_ja": label_ja, "label_en": label_en}
    if dpv_purpose:
        entry["dpv_purpose"] = dpv_purpose
    authoring.add_purpose(node, entry, by)
    click.echo(f"added purpose {code} to the policy")


@purpose_group.command("list")
@json_option
@node_command
def purpose_list(node: NodeHome, as_json: bool) -> None:
    """Purpose codes in the stored policy."""
    rows = authoring.purposes(node)
    if as_json:
        echo_json(rows)
        return
    echo_table(rows, ["code", "label_ja", "label_en", "dpv_purpose"])
