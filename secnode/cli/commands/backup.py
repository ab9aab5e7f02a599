"""``secnode backup`` and ``secnode restore``: the node in one file, and back."""

from __future__ import annotations

from pathlib import Path

import click

from certs.cliutil import echo_json
from secnode import backup as backup_lib
from secnode.cli.options import dir_option, json_option
from secnode.config import NodeDir


@click.command("backup")
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False), help="The backup file to write."
)
@json_option
@dir_option
def backup_cmd(node_dir: str | None, out: str, as_json: bool) -> None:
    """Back up the node, online: database snapshots, config, keys (encrypted), archives."""
    summary = backup_lib.backup(NodeDir.open(node_dir), Path(out))
    if as_json:
        echo_json(summary.as_dict())
        return
    dbs = ", ".join(f"{d.role} ({d.kind}, at {d.revision})" for d in summary.databases)
    click.echo(
        f"wrote {summary.path}: node {summary.node_id}, databases {dbs}, "
        f"{summary.files} files ({summary.archives} archives)"
    )


@click.command("restore")
@click.argument("backup_file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--dir",
    "target",
    required=True,
    type=click.Path(file_okay=False),
    help="The new node directory (must not exist or be empty).",
)
@click.option(
    "--db",
    "db_url",
    default=None,
    help="PostgreSQL backups: a new, empty database to restore the node database into.",
)
@click.option(
    "--log-db",
    "log_db_url",
    default=None,
    help="PostgreSQL backups with a separate message log database: where it goes.",
)
@json_option
def restore_cmd(
    backup_file: str, target: str, db_url: str | None, log_db_url: str | None, as_json: bool
) -> None:
    """Restore BACKUP_FILE into a new node directory; its message log is verified first."""
    summary = backup_lib.restore(Path(backup_file), Path(target), db_url, log_db_url)
    if as_json:
        echo_json(summary.as_dict())
        return
    if summary.log_empty:
        log = "message log empty (the node never exchanged a message)"
    else:
        log = (
            f"message log verified: {summary.records} records in {summary.chains} chains, "
            f"{summary.archives} archives"
        )
    click.echo(f"restored node {summary.node_id} to {summary.path}; {log}")
    for name in summary.left_out:
        click.echo(f"left out {name}: written after the database snapshot, named by no row")
