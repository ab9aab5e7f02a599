"""``secnode``: the security node's CLI."""

from __future__ import annotations

import click


@click.group()
def main() -> None:
    """Security node: keys, registration, services, message exchange, log, policy."""
