"""The versioned policy document: load (strict), validate, export, digest.

A document is the import/export form of the node's policy registry. Loading is
all-or-nothing: the first violation raises :class:`PolicyFormatError` naming the
path (e.g. ``agreements[0].permission[0].constraint[2].leftOperand``), and nothing
half-loaded is ever returned.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from . import codec
from .codec_agreement import agreement_to_json, parse_agreement
from .codec_consent import (
    consent_to_json,
    parse_consent,
    parse_stop_request,
    stop_request_to_json,
)
from .model import PolicySnapshot
from .strict_json import PolicyFormatError, Value, parse_json

FORMAT = "secnode-policy"
FORMAT_VERSION = 1
"""Bump on any incompatible change; loaders refuse versions they do not know."""

_SECTIONS = (
    "members",
    "ordinance_bases",
    "purposes",
    "exception_profiles",
    "services",
    "agreements",
    "consents",
    "stop_requests",
)
T = TypeVar("T")


def parse_policy(data: object) -> PolicySnapshot:
    """Build a snapshot from a parsed JSON document, refusing anything outside the schema."""
    root = Value(data)
    f = root.obj(("format", "format_version"), ("policy_version", "settings", *_SECTIONS))
    fmt = f.req("format")
    if fmt.text() != FORMAT:
        fmt.fail(f"expected format {FORMAT!r}, got {fmt.raw!r}")
    version = f.req("format_version")
    if version.integer() != FORMAT_VERSION:
        version.fail(f"unsupported format_version {version.raw} (this node reads {FORMAT_VERSION})")
    pv = f.opt("policy_version")
    settings = f.opt("settings")
    snap = PolicySnapshot.build(
        settings=codec.parse_settings(settings) if settings else None,
        policy_version=pv.text() if pv else None,
    )

    def section(name: str, parse: Callable[[Value], T], key: Callable[[T], object]) -> list[T]:
        v = f.opt(name)
        out: list[T] = []
        seen: set[object] = set()
        for item in v.items() if v else ():
            entity = parse(item)
            k = key(entity)
            if k in seen:
                item.fail(f"duplicate id {k!s} in {name}")
            seen.add(k)
            out.append(entity)
        return out

    # Order matters: each section may only reference sections parsed before it.
    members = section("members", codec.parse_member, lambda m: m.id)
    snap = replace(snap, members=PolicySnapshot.build(members=members).members)
    ords = section("ordinance_bases", codec.parse_ordinance_basis, lambda o: o.code)
    snap = replace(snap, ordinance_bases=PolicySnapshot.build(ordinance_bases=ords).ordinance_bases)
    purposes = section("purposes", lambda v: codec.parse_purpose(v, snap), lambda p: p.code)
    snap = replace(snap, purposes=PolicySnapshot.build(purposes=purposes).purposes)
    _check_compatible(f, snap)
    profiles = section(
        "exception_profiles", lambda v: codec.parse_exception_profile(v, snap), lambda p: p.id
    )
    snap = replace(
        snap,
        exception_profiles=PolicySnapshot.build(exception_profiles=profiles).exception_profiles,
    )
    services = section("services", lambda v: codec.parse_service(v, snap), lambda s: s.id)
    snap = replace(snap, services=PolicySnapshot.build(services=services).services)
    agreements = section("agreements", lambda v: parse_agreement(v, snap), lambda a: a.uid)
    consents = section("consents", lambda v: parse_consent(v, snap), lambda c: c.consent_id)
    stops = section("stop_requests", lambda v: parse_stop_request(v, snap), lambda s: s.id)
    built = PolicySnapshot.build(
        members=members,
        ordinance_bases=ords,
        purposes=purposes,
        exception_profiles=profiles,
        services=services,
        agreements=agreements,
        consents=consents,
        stop_requests=stops,
        settings=snap.settings,
        policy_version=snap.policy_version,
    )
    return replace(built, digest=policy_digest(built))


def _check_compatible(f: Any, snap: PolicySnapshot) -> None:
    v = f.opt("purposes")
    for i, p in enumerate(snap.purposes.values()):
        for j, other in enumerate(p.compatible_with):
            if other not in snap.purposes:
                raise PolicyFormatError(
                    f"{v.path}[{i}].compatible_with[{j}]", f"unknown purpose code {other!r}"
                )


def loads_policy(text: str | bytes, *, source: str | None = None) -> PolicySnapshot:
    """Parse policy JSON text; errors carry ``source`` (a file name) and the path."""
    try:
        return parse_policy(parse_json(text))
    except PolicyFormatError as exc:
        raise exc.in_source(source) if source else exc from None


def load_policy(path: str | os.PathLike[str]) -> PolicySnapshot:
    """Load a policy file. Raises ``PolicyFormatError`` (with file and path) or ``OSError``."""
    p = Path(path)
    return loads_policy(p.read_bytes(), source=str(p))


def dump_policy(snapshot: PolicySnapshot) -> dict[str, Any]:
    """Export a snapshot as a document that :func:`parse_policy` reads back to an equal one."""
    doc: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION}
    if snapshot.policy_version is not None:
        doc["policy_version"] = snapshot.policy_version
    doc["settings"] = codec.settings_to_json(snapshot.settings)
    doc["members"] = [codec.member_to_json(m) for m in snapshot.members.values()]
    doc["ordinance_bases"] = [
        codec.ordinance_basis_to_json(o) for o in snapshot.ordinance_bases.values()
    ]
    doc["purposes"] = [codec.purpose_to_json(p) for p in snapshot.purposes.values()]
    doc["exception_profiles"] = [
        codec.exception_profile_to_json(p) for p in snapshot.exception_profiles.values()
    ]
    doc["services"] = [codec.service_to_json(s) for s in snapshot.services.values()]
    doc["agreements"] = [agreement_to_json(a) for a in snapshot.agreements.values()]
    doc["consents"] = [consent_to_json(c) for c in snapshot.consents.values()]
    doc["stop_requests"] = [stop_request_to_json(s) for s in snapshot.all_stop_requests()]
    return doc


def dumps_policy(snapshot: PolicySnapshot) -> str:
    """Human-readable JSON (UTF-8 Japanese kept as is)."""
    return json.dumps(dump_policy(snapshot), ensure_ascii=False, indent=2) + "\n"


def save_policy(snapshot: PolicySnapshot, path: str | os.PathLike[str]) -> None:
    """Write atomically (temp file + rename), so a crash never leaves half a policy."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(dumps_policy(snapshot))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def policy_digest(snapshot: PolicySnapshot) -> str:
    """SHA-256 over the canonical export (sorted keys, no whitespace): the bundle hash."""
    canonical = json.dumps(
        dump_policy(snapshot), ensure_ascii=False, sort_keys=True, separators=(",", ":")
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def validate_snapshot(snapshot: PolicySnapshot) -> PolicySnapshot:
    """Check a snapshot built elsewhere (e.g. from database rows) against the same schema.

    Returns the re-parsed snapshot with its digest; raises ``PolicyFormatError`` whose
    path is the position in the exported document.
    """
    return parse_policy(json.loads(json.dumps(dump_policy(snapshot))))
