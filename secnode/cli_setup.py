"""Day-one node setup commands: certificates, subsystems, registration, status, sync."""

from __future__ import annotations

import click


def register(main: click.Group) -> None:
    """Attach this module's commands to the ``secnode`` group."""
