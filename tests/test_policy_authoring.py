"""Policy authoring without the 20 KB example: ``policy init`` writes a template with
notes that loads as it is; members and purposes are added and listed one at a time,
through the same strict validation as ``policy import``, leaving enforcement alone."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.policy_node import NodeCli, make_node


def test_the_template_loads_and_names_this_member(tmp_path: Path) -> None:
    node = make_node(tmp_path, "JP/GOV/072028")
    path = tmp_path / "policy.json"
    node("policy", "init", path, "--name", "会津若松市")
    doc = json.loads(path.read_text())
    assert doc["members"][0] == {
        "$comment": doc["members"][0]["$comment"],
        "id": "JP/GOV/072028",
        "legal_type": "PUBLIC_BODY",
        "name": "会津若松市",
    }
    assert "secnode policy import" in doc["$comment"]  # the notes say what to do next
    assert "already" not in node("policy", "import", path).stdout
    shown = node.json("policy", "show")
    assert shown["enforcing"] is True
    assert node.json("policy", "member", "list")[0]["id"] == "JP/GOV/072028"
    exported = tmp_path / "export.json"
    node("policy", "export", exported)
    assert "$comment" not in exported.read_text()  # notes never reach the canonical form
    again = node("policy", "init", path, "--name", "x", ok=False)
    assert "exists" in again.stderr  # never overwrites


def test_a_comment_must_be_text(tmp_path: Path) -> None:
    node = make_node(tmp_path, "JP/GOV/072028")
    path = tmp_path / "policy.json"
    node("policy", "init", path, "--name", "会津若松市")
    doc = json.loads(path.read_text())
    doc["purposes"][0]["$comment"] = {"not": "text"}
    path.write_text(json.dumps(doc, ensure_ascii=False))
    refused = node("policy", "import", path, ok=False)
    assert "purposes[0].$comment" in refused.stderr
    doc["purposes"][0]["$note"] = "a typo of $comment is an unknown key"
    del doc["purposes"][0]["$comment"]
    path.write_text(json.dumps(doc, ensure_ascii=False))
    assert "unknown key '$note'" in node("policy", "import", path, ok=False).stderr


def loaded_template(tmp_path: Path) -> NodeCli:
    node = make_node(tmp_path, "JP/GOV/072028")
    path = tmp_path / "policy.json"
    node("policy", "init", path, "--name", "会津若松市")
    node("policy", "import", path)
    return node


def test_members_and_purposes_are_added_one_at_a_time(tmp_path: Path) -> None:
    node = loaded_template(tmp_path)
    generation = node.json("policy", "show")["generation"]
    node("policy", "disable", "--reason", "setting up")
    node(
        "policy",
        "member",
        "add",
        "JP/GOV/372013",
        "--name",
        "高松市",
        "--legal-type",
        "PUBLIC_BODY",
        "--by",
        "担当 山田",
    )
    node(
        "policy",
        "purpose",
        "add",
        "WELFARE-ELIGIBILITY",
        "--label-ja",
        "生活保護の要否判定",
        "--label-en",
        "Welfare eligibility",
        "--dpv",
        "dpv:LegalCompliance",
    )
    members = {m["id"]: m for m in node.json("policy", "member", "list")}
    assert members["JP/GOV/372013"]["name"] == "高松市"
    codes = [p["code"] for p in node.json("policy", "purpose", "list")]
    assert codes == ["RESIDENT-ADMIN", "WELFARE-ELIGIBILITY"]
    shown = node.json("policy", "show")
    assert shown["generation"] > generation
    assert shown["enforcing"] is False  # adding an entry leaves the switch as it was
    history = node.json("policy", "history")
    assert any(h.get("actor") == "担当 山田" for h in history), history


def test_a_bad_or_duplicate_entry_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    node = loaded_template(tmp_path)
    before = node.json("policy", "show")["generation"]
    dup = node(
        "policy",
        "member",
        "add",
        "JP/GOV/072028",
        "--name",
        "x",
        "--legal-type",
        "BUSINESS",
        ok=False,
    )
    assert "already in the policy" in dup.stderr
    bad = node(
        "policy", "purpose", "add", "lower case", "--label-ja", "x", "--label-en", "x", ok=False
    )
    assert bad.stderr.startswith("error: ") and "purpose code" in bad.stderr
    assert node.json("policy", "show")["generation"] == before


def test_adding_before_any_policy_says_how_to_start(tmp_path: Path) -> None:
    node = make_node(tmp_path, "JP/GOV/072028")
    refused = node(
        "policy", "purpose", "add", "X-1", "--label-ja", "x", "--label-en", "x", ok=False
    )
    assert "secnode policy init FILE" in refused.stderr
