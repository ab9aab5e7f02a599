"""Strict JSON reading with paths: every refusal names where in the document it happened.

Unknown keys are errors, not warnings (research §2: EDC's "unbound constraints are
not evaluated" is a fail-open trap). Duplicate keys and NaN are refused at parse.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from enum import Enum
from re import Pattern
from typing import NoReturn, TypeVar

from certs.errors import SecnodeError

from ..identifiers import ClientId, IdentifierError, MemberId, ServiceId, parse_client
from .timeutil import IsoDuration, parse_bound, parse_instant

E = TypeVar("E", bound=Enum)


class PolicyFormatError(SecnodeError, ValueError):
    """A policy document, entity or request that does not match the closed schema."""

    def __init__(self, path: str, message: str, *, source: str | None = None) -> None:
        self.path = path or "$"
        self.message = message
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{self.path}: {message}")

    def in_source(self, source: str) -> PolicyFormatError:
        return PolicyFormatError(self.path, self.message, source=source)


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise PolicyFormatError("", f"duplicate key {key!r} in one object")
        out[key] = value
    return out


def _no_constant(name: str) -> NoReturn:
    raise PolicyFormatError("", f"{name} is not valid JSON")


def parse_json(text: str | bytes) -> object:
    """Parse JSON text, refusing duplicate keys and NaN/Infinity."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise PolicyFormatError("", f"not valid JSON: {exc}") from None


class Value:
    """A JSON value at a known path, with typed, strict accessors."""

    __slots__ = ("path", "raw")

    def __init__(self, raw: object, path: str = "") -> None:
        self.raw = raw
        self.path = path

    def fail(self, message: str) -> NoReturn:
        raise PolicyFormatError(self.path, message)

    def child(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def text(self, *, pattern: Pattern[str] | None = None, what: str = "value") -> str:
        if not isinstance(self.raw, str) or not self.raw.strip():
            self.fail(f"expected a non-empty string, got {_show(self.raw)}")
        if pattern is not None and not pattern.match(self.raw):
            self.fail(f"invalid {what} {self.raw!r}")
        return self.raw

    def integer(self, *, minimum: int | None = None) -> int:
        if isinstance(self.raw, bool) or not isinstance(self.raw, int):
            self.fail(f"expected an integer, got {_show(self.raw)}")
        if minimum is not None and self.raw < minimum:
            self.fail(f"must be at least {minimum}, got {self.raw}")
        return self.raw

    def flag(self) -> bool:
        if not isinstance(self.raw, bool):
            self.fail(f"expected true or false, got {_show(self.raw)}")
        return self.raw

    def enum(self, enum: type[E], what: str) -> E:
        text = self.text()
        try:
            return enum(text)
        except ValueError:
            allowed = ", ".join(str(e.value) for e in enum)
            self.fail(f"unknown {what} {text!r} (allowed: {allowed})")

    def items(self, *, nonempty: bool = False) -> Iterator[Value]:
        if not isinstance(self.raw, list):
            self.fail(f"expected a list, got {_show(self.raw)}")
        if nonempty and not self.raw:
            self.fail("must not be empty")
        for i, item in enumerate(self.raw):
            yield Value(item, self.child(i))

    def strs(
        self,
        *,
        pattern: Pattern[str] | None = None,
        what: str = "value",
        nonempty: bool = False,
        unique: bool = True,
    ) -> tuple[str, ...]:
        out = tuple(v.text(pattern=pattern, what=what) for v in self.items(nonempty=nonempty))
        if unique and len(set(out)) != len(out):
            dup = next(x for x in out if out.count(x) > 1)
            self.fail(f"duplicate {what} {dup!r}")
        return out

    def obj(self, required: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> Fields:
        return Fields(self, required, optional)

    def instant(self) -> datetime:
        try:
            return parse_instant(self.text())
        except ValueError as exc:
            self.fail(str(exc))

    def bound(self, *, end: bool) -> datetime:
        try:
            return parse_bound(self.text(), end=end)
        except ValueError as exc:
            self.fail(str(exc))

    def duration(self) -> IsoDuration:
        try:
            return IsoDuration.parse(self.text())
        except ValueError as exc:
            self.fail(str(exc))

    def member_id(self) -> MemberId:
        try:
            return MemberId.parse(self.text())
        except IdentifierError as exc:
            self.fail(str(exc))

    def client_id(self) -> ClientId:
        try:
            return parse_client(self.text())
        except IdentifierError as exc:
            self.fail(str(exc))

    def service_id(self) -> ServiceId:
        try:
            return ServiceId.parse(self.text())
        except IdentifierError as exc:
            self.fail(str(exc))


#: The one key every object may carry besides its own: a note for the people who edit the
#: file (JSON has no comments). It must be text, and it never decides anything; the
#: canonical export leaves it out.
COMMENT_KEY = "$comment"


class Fields:
    """An object whose keys are closed: unknown keys fail, required keys must be present."""

    __slots__ = ("_data", "value")

    def __init__(self, value: Value, required: tuple[str, ...], optional: tuple[str, ...]):
        if not isinstance(value.raw, dict):
            value.fail(f"expected an object, got {_show(value.raw)}")
        self.value = value
        self._data: dict[str, object] = value.raw
        allowed = set(required) | set(optional)
        for key in self._data:
            if key == COMMENT_KEY:
                Value(self._data[key], value.child(key)).text(what="comment")
                continue
            if key not in allowed:
                hint = ", ".join(sorted(allowed))
                raise PolicyFormatError(value.child(key), f"unknown key {key!r} (allowed: {hint})")
        for key in required:
            if key not in self._data or self._data[key] is None:
                raise PolicyFormatError(value.child(key), "required key is missing")

    def req(self, key: str) -> Value:
        return Value(self._data[key], self.value.child(key))

    def opt(self, key: str) -> Value | None:
        raw = self._data.get(key)
        return None if raw is None else Value(raw, self.value.child(key))

    def has(self, key: str) -> bool:
        return self._data.get(key) is not None


def _show(raw: object) -> str:
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, dict):
        return "an object"
    if isinstance(raw, list):
        return "a list"
    return repr(raw)
