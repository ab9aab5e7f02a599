"""``central db``: the registry database's schema revision, and upgrading it."""

from __future__ import annotations

import click

from central import config as config_mod
from central import store
from central.cli_common import json_option
from certs.cliutil import echo_json


@click.group("db")
def db_group() -> None:
    """The registry database: its Alembic revision and upgrades."""


_dir_option = click.option(
    "--dir",
    "directory",
    envvar=config_mod.DIR_ENV,
    default=None,
    type=click.Path(file_okay=False),
    help=f"Registry directory (else ${config_mod.DIR_ENV}, else the current one).",
)


def _report(url: str, before: str | None, after: str | None, as_json: bool) -> None:
    current = after == store.SCHEMA_HEAD
    if as_json:
        echo_json(
            {
                "url": store.redact(url),
                "before": before,
                "after": after,
                "head": store.SCHEMA_HEAD,
                "current": current,
            }
        )
    elif before != after:
        click.echo(
            f"registry database {store.redact(url)}: upgraded {before or 'empty'} -> {after}"
        )
    elif current:
        click.echo(f"registry database {store.redact(url)}: at {after} (newest)")
    else:
        click.echo(
            f"registry database {store.redact(url)}: at {after or 'empty'}, newest is "
            f"{store.SCHEMA_HEAD}: run 'central db upgrade'"
        )


@db_group.command("upgrade")
@json_option
@_dir_option
def db_upgrade(directory: str | None, as_json: bool) -> None:
    """Migrate the registry database to this version's newest revision (safe to rerun)."""
    url = config_mod.load(config_mod.resolve_dir(directory)).db_url
    registry = store.Store(url, run_migrations=False)
    try:
        before = store.current_revision(registry.engine)
        store.migrate(registry.engine)
        _report(url, before, store.current_revision(registry.engine), as_json)
    finally:
        registry.close()


@db_group.command("status")
@json_option
@_dir_option
def db_status(directory: str | None, as_json: bool) -> None:
    """The revision the registry database is at, and the newest (read only)."""
    url = config_mod.load(config_mod.resolve_dir(directory)).db_url
    registry = store.Store(url, run_migrations=False)
    try:
        revision = store.current_revision(registry.engine)
        _report(url, revision, revision, as_json)
    finally:
        registry.close()


COMMANDS = [db_group]
