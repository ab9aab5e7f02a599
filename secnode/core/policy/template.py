"""The policy a node starts from: ``secnode policy init`` writes it, with notes.

A minimal document that loads (the node's own member, one purpose, empty sections),
each part carrying a ``$comment`` that says what goes there and which command or
section of ``docs/policy.md`` explains it, so that a privacy officer can begin without
reading the 20 KB worked example first.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from secnode.core.identifiers import MemberId

from .loader import FORMAT, FORMAT_VERSION, loads_policy
from .strict_json import COMMENT_KEY
from .vocabulary import LegalType


def policy_template(
    member: MemberId, name: str, legal_type: LegalType, today: dt.date
) -> dict[str, Any]:
    """The starting document for ``member``; it loads as it is (checked by the caller)."""
    types = ", ".join(t.value for t in LegalType)
    return {
        COMMENT_KEY: "secnode policy (docs/policy.md). Edit it, then 'secnode policy import "
        "FILE'. Every key is checked and an unknown one refuses the file; '$comment' keys "
        "like this one are notes and decide nothing.",
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "policy_version": f"{today.isoformat()}.1",
        "settings": {
            COMMENT_KEY: "require_issue: personal-data requests must name their case "
            "(X-Road-Issue). max_clock_skew_seconds: how far a request's time may be from "
            "this node's. record_retention: provision records are kept this long, at least "
            "P3Y (APPI).",
            "require_issue": True,
            "max_clock_skew_seconds": 300,
            "record_retention": "P3Y",
        },
        "members": [
            {
                COMMENT_KEY: "Every organisation that provides or receives personal data "
                f"through this node, this one first. legal_type is one of {types}: it "
                "decides which APPI rules apply (docs/policy.md section 1). Add others "
                "with 'secnode policy member add'.",
                "id": str(member),
                "legal_type": legal_type.value,
                "name": name,
            }
        ],
        "ordinance_bases": [],
        "purposes": [
            {
                COMMENT_KEY: "The closed list of purposes a request may name (X-Road-Purpose). "
                "Replace this example with yours ('secnode policy purpose add'); "
                "dpv_purpose maps it to the W3C DPV vocabulary.",
                "code": "RESIDENT-ADMIN",
                "label_ja": "住民行政事務",
                "label_en": "Resident administration",
                "dpv_purpose": "dpv:ServiceProvision",
            }
        ],
        "exception_profiles": [],
        "services": [],
        "agreements": [],
        "consents": [],
        "stop_requests": [],
    }


def render_template(member: MemberId, name: str, legal_type: LegalType, today: dt.date) -> str:
    """The template as the file text, after checking that it loads."""
    text = json.dumps(
        policy_template(member, name, legal_type, today), ensure_ascii=False, indent=2
    )
    loads_policy(text, source="the policy template")
    return text + "\n"
