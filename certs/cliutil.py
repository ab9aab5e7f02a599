"""Shared click plumbing for the three CLIs: the error mapper, passphrases, JSON output."""

from __future__ import annotations

import json
from typing import Any

import click
import wcwidth

from certs import keys
from certs.errors import SecnodeError


class UserError(SecnodeError):
    """A refusal a command itself makes (a bad combination of options, say)."""


class ErrorMappingGroup(click.Group):
    """The root group of each CLI: the one place where library errors meet the operator.

    A :class:`SecnodeError` raised anywhere below (a command, a sub-group, the
    ``--dir`` opener) becomes one ``error: <reason>`` line and its exit code;
    every other exception is a bug and keeps its traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SecnodeError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


passphrase_option = click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="File holding the key passphrase (else $SECNODE_PASSPHRASE).",
)


log_format_option = click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines on stderr: text, or one JSON object per line (docs/operations.md, Logs).",
)


def get_passphrase(passphrase_file: str | None) -> bytes:
    """The key passphrase; :class:`keys.PassphraseMissing` (a SecnodeError) when none is given."""
    return keys.resolve_passphrase(passphrase_file)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False))


def cell_width(text: str) -> int:
    """Columns ``text`` takes in a terminal: a Japanese character takes two, a combining
    mark none (``wcwidth``; a control character counts as one, it is never printed raw)."""
    width = wcwidth.wcswidth(text)
    if width >= 0:
        return width
    return sum(w if (w := wcwidth.wcwidth(ch)) >= 0 else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - cell_width(text))


def echo_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Columns aligned by displayed width, not by ``len()`` (CJK text is two columns wide)."""
    if not rows:
        click.echo("(none)")
        return
    cells = [[str(row.get(c, "") or "") for c in columns] for row in rows]
    widths = [max(cell_width(c), *(cell_width(r[i]) for r in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(_pad(c.upper(), w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        click.echo("  ".join(_pad(v, w) for v, w in zip(r, widths, strict=True)).rstrip())
