"""Shared click plumbing for the three CLIs: one-line errors, passphrases, JSON output."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from certs import keys

F = TypeVar("F", bound=Callable[..., Any])


class UserError(click.ClickException):
    """A refusal the operator can act on; printed as one line, exit status 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def guarded(*error_types: type[BaseException]) -> Callable[[F], F]:
    """Turn the listed domain errors into ``error: reason`` and exit 1 (no traceback)."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except click.ClickException:
                raise
            except (keys.KeyFileError, *error_types) as exc:
                raise UserError(str(exc)) from exc

        return wrapper  # type: ignore[return-value]

    return decorate


passphrase_option = click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="File holding the key passphrase (else $SECNODE_PASSPHRASE).",
)


def get_passphrase(passphrase_file: str | None) -> bytes:
    try:
        return keys.resolve_passphrase(passphrase_file)
    except keys.PassphraseMissing as exc:
        raise UserError(str(exc)) from exc


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False))


def echo_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, "") or "")) for r in rows)) for c in columns}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        click.echo("  ".join(str(row.get(c, "") or "").ljust(widths[c]) for c in columns).rstrip())


def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)
