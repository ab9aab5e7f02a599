"""The append-only admin audit trail: who changed what, when, and whether it was allowed.

Rows are only ever inserted (the table's triggers refuse UPDATE and DELETE); the console
shows them newest first. Details never hold passwords, codes or keys.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, insert, select

from secnode.console import clock
from secnode.console.tables import audit


def record(
    engine: Engine,
    actor: str,
    role: str,
    action: str,
    target: str,
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one entry."""
    with engine.begin() as conn:
        conn.execute(
            insert(audit).values(
                at=clock.text(clock.now()),
                actor=actor,
                role=role,
                action=action,
                target=target,
                outcome=outcome,
                detail=json.dumps(detail or {}, sort_keys=True, ensure_ascii=False),
            )
        )


def entries(engine: Engine, limit: int = 200) -> list[dict[str, Any]]:
    """The newest ``limit`` entries, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(audit).order_by(audit.c.id.desc()).limit(limit))
        return [dict(r._mapping) for r in rows]
