"""``secnode db``: show and upgrade the schema revisions of the node's databases."""

from __future__ import annotations

import click

from certs.cliutil import echo_json
from secnode import dbadmin
from secnode.cli.options import dir_option, json_option
from secnode.config import NodeDir


@click.group("db")
def db_group() -> None:
    """The node database and the message log database: revisions and upgrades."""


def _print(states: list[dbadmin.SchemaState], as_json: bool, upgraded: bool) -> None:
    if as_json:
        echo_json([s.as_dict() for s in states])
        return
    for s in states:
        before = s.before or "empty"
        if upgraded and s.before != s.after:
            click.echo(f"{s.name} {s.url}: upgraded {before} -> {s.after}")
        elif s.current:
            click.echo(f"{s.name} {s.url}: at {s.after} (newest)")
        else:
            click.echo(
                f"{s.name} {s.url}: at {before}, newest is {s.head}: run 'secnode db upgrade'"
            )


@db_group.command("upgrade")
@json_option
@dir_option
def db_upgrade(node_dir: str | None, as_json: bool) -> None:
    """Migrate both databases to this version's newest revision (safe to run again)."""
    _print(dbadmin.schema_states(NodeDir.open(node_dir), upgrade=True), as_json, True)


@db_group.command("status")
@json_option
@dir_option
def db_status(node_dir: str | None, as_json: bool) -> None:
    """The revision each database is at and the newest this version knows (read only)."""
    _print(dbadmin.schema_states(NodeDir.open(node_dir)), as_json, False)
