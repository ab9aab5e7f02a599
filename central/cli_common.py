"""Plumbing shared by the ``central`` commands: the registry directory, operator, output."""

from __future__ import annotations

import datetime as dt
import functools
import getpass
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from central import config as config_mod
from central.config import CentralConfig
from central.store import Store
from certs.cliutil import echo_json, echo_table
from secnode.core.jsonfmt import format_time

F = TypeVar("F", bound=Callable[..., Any])
OPERATOR_ENV = "CENTRAL_OPERATOR"


def default_operator() -> str:
    """Who is recorded in the audit trail: ``--operator``, ``$CENTRAL_OPERATOR``, OS user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


@dataclass
class Registry:
    """What a command works on; the store is opened on first use and closed after."""

    config: CentralConfig
    operator: str
    _store: Store | None = field(default=None, repr=False)

    @property
    def store(self) -> Store:
        if self._store is None:
            from central.instance import open_store

            self._store = open_store(self.config)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


operator_option = click.option(
    "--operator",
    envvar=OPERATOR_ENV,
    default=None,
    help=f"Name recorded in the audit trail (else ${OPERATOR_ENV}, else the OS user).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def registry_command(func: F) -> F:
    """Add ``--dir`` / ``--operator``, hand the command a :class:`Registry`, map errors."""

    @click.option(
        "--dir",
        "directory",
        envvar=config_mod.DIR_ENV,
        default=None,
        type=click.Path(file_okay=False),
        help=f"Registry directory (else ${config_mod.DIR_ENV}, else the current one).",
    )
    @operator_option
    @functools.wraps(func)
    def wrapper(*args: Any, directory: str | None, operator: str | None, **kwargs: Any) -> Any:
        registry = Registry(
            config_mod.load(config_mod.resolve_dir(directory)), operator or default_operator()
        )
        try:
            return func(*args, registry=registry, **kwargs)
        finally:
            registry.close()

    return wrapper  # type: ignore[return-value]


def plain(value: Any) -> Any:
    """Datetimes as RFC 3339 UTC, recursively (for JSON and tables)."""
    if isinstance(value, dt.datetime):
        return format_time(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def output(value: Any, as_json: bool, columns: list[str] | None = None) -> None:
    """``--json``: the value as JSON; else a table (lists) or ``key: value`` lines."""
    value = plain(value)
    if as_json:
        echo_json(value)
    elif isinstance(value, list):
        rows = [
            {k: ", ".join(map(str, v)) if isinstance(v, list) else v for k, v in r.items()}
            for r in value
        ]
        echo_table(rows, columns or (list(rows[0]) if rows else []))
    else:
        for key, item in value.items():
            if isinstance(item, list):
                item = (
                    ", ".join(
                        str(i) if not isinstance(i, dict) else i.get("id", str(i)) for i in item
                    )
                    or "-"
                )
            click.echo(f"{key}: {item if item is not None else '-'}")
