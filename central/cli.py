"""``central``: the central registry operator's CLI."""

from __future__ import annotations

import click


@click.group()
def main() -> None:
    """Central registry: members, nodes, trust services, signed global configuration."""
