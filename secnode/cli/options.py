"""Options and decorators the ``secnode`` commands share: ``--dir``, ``--json``, ``--by``."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar, cast

import click

from certs.cliutil import UserError
from secnode.config import DIR_ENV
from secnode.core.policy.timeutil import TimeFormatError, parse_instant
from secnode.home import NodeHome

P = ParamSpec("P")
R = TypeVar("R")

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
by_option = click.option(
    "--by",
    "by",
    default=None,
    help="Who makes this change (default: $SECNODE_ACTOR or the OS user).",
)
dir_option = click.option(
    "--dir",
    "node_dir",
    envvar=DIR_ENV,
    default=None,
    type=click.Path(file_okay=False),
    help="Node directory (default: cwd).",
)


def node_command(func: Callable[Concatenate[NodeHome, P], R]) -> Callable[P, R]:
    """Add ``--dir`` and hand the command the opened node, closed when it ends.

    Errors are not handled here: a :class:`certs.errors.SecnodeError` reaches the
    root group, which prints it as one line.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        node = NodeHome.open(cast("str | None", kwargs.pop("node_dir", None)))
        try:
            return func(node, *args, **kwargs)
        finally:
            node.close()

    return dir_option(wrapper)


def when(text: str | None, what: str) -> dt.datetime:
    """An instant with offset from an option (``what`` names it in the error); default now."""
    if text is None:
        return dt.datetime.now(dt.UTC)
    try:
        return parse_instant(text)
    except TimeFormatError as exc:
        raise UserError(f"{what}: {exc}") from None
