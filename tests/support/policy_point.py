"""The policy point on a node database, for the message-path tests (no tests here): request
files as the headers a client node signs, a point on a database URL, its decision rows."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from sqlalchemy import Engine

from secnode.core.identifiers import ServiceId, parse_client
from secnode.core.message import MessageHeaders
from secnode.core.policy.timeutil import parse_instant
from secnode.policy import records
from secnode.policy.point import PolicyPoint
from secnode.store import db
from tests.support.policy_node import AT, REQUESTS

MEMBER = "JP/GOV/CITY-A"


def request(name: str, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((REQUESTS / f"{name}.json").read_text())
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def headers_for(r: dict[str, Any], message_id: str | None = None) -> MessageHeaders:
    """The MessageHeaders a client node signs for request file ``r``."""
    return MessageHeaders(
        protocol="rest",
        client=parse_client(r["client"]),
        service=ServiceId.parse(r["service"]),
        message_id=message_id or str(uuid.uuid4()),
        user_id=r.get("user_id"),
        issue=r.get("issue"),
        purpose=r.get("purpose"),
        legal_basis=r.get("legal_basis"),
        data_subject=r.get("subject"),
        agreement=r.get("agreement"),
        consent_id=r.get("consent_id"),
        data_items=",".join(r["fields"]) if "fields" in r else None,
        evidence=json.dumps(r["evidence"]) if "evidence" in r else r.get("raw_evidence"),
        rest_method="GET",
        rest_path="/1001",
    )


def point_on(url: str, member: str = MEMBER, at: str = AT) -> PolicyPoint:
    when = parse_instant(at)
    return PolicyPoint(db.make_engine(url), f"{member}/ss1", member, 3, clock=lambda: when)


def decisions(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return records.decision_rows(conn)


def run(coro: Any) -> Any:
    return asyncio.run(coro)
