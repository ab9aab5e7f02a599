"""``certs tsa ...`` commands (RFC 3161 time-stamping authority)."""

from __future__ import annotations

import click


@click.group("tsa")
def tsa_group() -> None:
    """Time-stamping authority (RFC 3161)."""
