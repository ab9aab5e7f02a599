"""The tests' federation: :class:`secnode.demo.federation.Federation` with the test
passphrase, commands in-process (:mod:`tests.support.cli`) and a 20 s server timeout.

Build step by step (``create(base)``, then ``fed.add_node(...)`` with ``register=False``
to stop before registration, ``fed.approve_all()``, ``fed.sync_all()``), or all at once
with :func:`build_federation` (what the ``federation`` fixtures use).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from secnode.demo.federation import Federation
from secnode.demo.node import NodeHandle
from secnode.demo.two_cities import CITIES
from tests.support.cli import in_process
from tests.support.common import PASSPHRASE, cli_env

__all__ = ["CITIES", "Federation", "NodeHandle", "build_federation", "create", "new_federation"]

CA_NAME = "Test Municipal CA"


def _quiet(_message: str) -> None:
    """Tests' federations print nothing."""


def new_federation(base: Path) -> Federation:
    """An empty federation under ``base`` (nothing built yet)."""
    fed = Federation(
        base,
        say=_quiet,
        passphrase=PASSPHRASE.decode(),
        runner=in_process,
        timeout=20,
        extra_env={"PYTHONPATH": cli_env()["PYTHONPATH"]},
    )
    fed.prepare()
    return fed


def create(
    base: Path, settings: dict[str, int] | None = None, start_servers: bool = True
) -> Federation:
    """CA with OCSP responder and a central registry approving it; both serving."""
    fed = new_federation(base)
    try:
        fed.pki(CA_NAME, tsa_name=None, start=start_servers)
        fed.registry(CA_NAME, tsa_id=None, settings=settings, start=start_servers)
    except BaseException:
        fed.close()
        raise
    return fed


def build_federation(
    base: Path,
    members: int | Sequence[tuple[str, str, str]] = 2,
    *,
    settings: dict[str, int] | None = None,
    node_config: dict[str, dict[str, Any]] | None = None,
    db_urls: dict[str, str] | None = None,
) -> Federation:
    """CA, central and registered nodes, approved, published and synced (status: registered)."""
    cities = CITIES[:members] if isinstance(members, int) else list(members)
    fed = create(base, settings)
    try:
        for name, member, member_name in cities:
            fed.add_node(
                name, member, member_name, config=node_config, db_url=(db_urls or {}).get(name, "")
            )
        fed.register()
    except BaseException:
        fed.close()
        raise
    return fed
