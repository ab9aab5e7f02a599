"""Shared readers for the policy codecs: typed, reference-checked values with paths.

Each reader refuses what the closed vocabulary does not contain and names the
JSON path, so all entity codecs report errors the same way.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

from ..identifiers import ClientId, ServiceId
from .model import PolicySnapshot
from .strict_json import Fields, PolicyFormatError, Value
from .vocabulary import COUNTRY_CODE, FORBIDDEN_BASES, PURPOSE_CODE, Route

JsonObj = dict[str, Any]
E = TypeVar("E", bound=Enum)


def put_opt(d: JsonObj, key: str, value: object) -> None:
    """Export optional values only when set, so exported files stay short and diffable."""
    if value is not None and value != () and value is not False:
        d[key] = value


def text_opt(v: Value | None) -> str | None:
    return v.text() if v is not None else None


def flag(f: Fields, key: str) -> bool:
    v = f.opt(key)
    return v.flag() if v is not None else False


def instant_opt(v: Value | None) -> datetime | None:
    return v.instant() if v is not None else None


def enum_opt(v: Value | None, enum: type[E], what: str) -> E | None:
    return v.enum(enum, what) if v is not None else None


def country_opt(v: Value | None) -> str | None:
    return v.text(pattern=COUNTRY_CODE, what="country code (ISO 3166 alpha-2)") if v else None


def countries(v: Value) -> tuple[str, ...]:
    return v.strs(pattern=COUNTRY_CODE, what="country code (ISO 3166 alpha-2)", nonempty=True)


def purposes(v: Value, ctx: PolicySnapshot, *, nonempty: bool = False) -> tuple[str, ...]:
    codes = v.strs(pattern=PURPOSE_CODE, what="purpose code", nonempty=nonempty)
    for i, code in enumerate(codes):
        if code not in ctx.purposes:
            raise PolicyFormatError(
                f"{v.path}[{i}]", f"unknown purpose code {code!r} (declare it under 'purposes')"
            )
    return codes


def basis_code(v: Value, ctx: PolicySnapshot, *, any_route: bool) -> str:
    code = v.text()
    if code in FORBIDDEN_BASES:
        v.fail(f"{code!r} is not a basis under APPI (there is no legitimate-interest basis)")
    basis = ctx.basis(code)
    if basis is None:
        v.fail(
            f"unknown legal basis code {code!r} (see docs/policy.md for the closed list; "
            "ordinance reasons must be declared under 'ordinance_bases')"
        )
    if not any_route and basis.route is Route.EXCEPTION:
        v.fail(
            f"{code!r} is an exception basis: configure it in an exception profile, "
            "not in an agreement"
        )
    return code


def basis_codes(v: Value, ctx: PolicySnapshot, *, any_route: bool) -> tuple[str, ...]:
    items = list(v.items(nonempty=True))
    codes = tuple(basis_code(item, ctx, any_route=any_route) for item in items)
    if len(set(codes)) != len(codes):
        v.fail("a basis code is listed twice")
    return codes


def known_client(v: Value, ctx: PolicySnapshot) -> ClientId:
    client = v.client_id()
    if client.member not in ctx.members:
        v.fail(f"unknown member {str(client.member)!r} (declare it under 'members')")
    return client


def known_service(v: Value, ctx: PolicySnapshot, controller: object) -> ServiceId:
    sid = v.service_id()
    if ctx.service(sid) is None:
        v.fail(f"unknown service {str(sid)!r}")
    if sid.member != controller:
        v.fail(f"service {str(sid)!r} does not belong to the controller {controller!s}")
    return sid
