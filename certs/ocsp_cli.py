"""``certs ocsp ...`` commands (OCSP responder)."""

from __future__ import annotations

import click


@click.group("ocsp")
def ocsp_group() -> None:
    """OCSP responder (RFC 6960) for a CA directory."""
