"""X-Road style identifiers in their string form ``INSTANCE/CLASS/CODE[/...]``.

Pure core shared by ``certs``, ``central`` and ``secnode``: every identifier that
crosses a boundary (CSR subjects, HTTP headers, the global configuration, the
message log) is parsed here, strictly, so a malformed one is refused at the edge
instead of being compared wrongly later.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import ClassVar

from certs.errors import SecnodeError

MAX_PART_LENGTH = 255
# X-Road's strict identifier character set (pr-mess §2.7): A-Z a-z 0-9 ' ( ) + , - . = ?
# plus '_' which real deployments use in subsystem codes.
_ALLOWED = re.compile(r"^[A-Za-z0-9'()+,\-.=?_]+$")
_FORBIDDEN_HINT = set("/;:\\%")


class IdentifierError(SecnodeError, ValueError):
    """An identifier string that does not have the required form."""


@functools.lru_cache(maxsize=8192)
def _is_valid_part(part: str) -> bool:
    return 0 < len(part) <= MAX_PART_LENGTH and _ALLOWED.match(part) is not None


def validate_part(part: str, name: str) -> str:
    """Return ``part`` if it is a legal identifier component, else raise with the reason."""
    if _is_valid_part(part):  # the message path sees the same few identifiers all the time
        return part
    if part == "":
        raise IdentifierError(f"{name} is empty")
    if len(part) > MAX_PART_LENGTH:
        raise IdentifierError(f"{name} is longer than {MAX_PART_LENGTH} characters")
    if not _ALLOWED.match(part):
        bad = sorted({c for c in part if not _ALLOWED.match(c)})
        shown = " ".join(repr(c) for c in bad)
        reason = "forbidden" if set(bad) & _FORBIDDEN_HINT else "not allowed"
        raise IdentifierError(f"{name} {part!r} contains {reason} character(s) {shown}")
    return part


def _split(text: str, kind: str, names: tuple[str, ...], optional: int = 0) -> list[str]:
    if not isinstance(text, str):
        raise IdentifierError(f"{kind} identifier must be a string")
    if text == "":
        raise IdentifierError(f"{kind} identifier is empty")
    parts = text.split("/")
    low, high = len(names) - optional, len(names)
    if not low <= len(parts) <= high:
        expected = "/".join(names[:low]) + "".join(f"[/{n}]" for n in names[low:])
        raise IdentifierError(
            f"{kind} identifier {text!r} has {len(parts)} part(s); expected {expected}"
        )
    for part, name in zip(parts, names, strict=False):
        validate_part(part, f"{kind} {name}")
    return parts


@dataclass(frozen=True, order=True)
class MemberId:
    """A member (organisation): ``INSTANCE/CLASS/CODE``."""

    instance: str
    member_class: str
    code: str

    NAMES: ClassVar[tuple[str, ...]] = ("INSTANCE", "CLASS", "CODE")

    def __post_init__(self) -> None:
        for value, name in zip(self.parts(), self.NAMES, strict=True):
            validate_part(value, f"member {name}")

    @classmethod
    @functools.lru_cache(maxsize=4096)  # frozen values: safe to share; bounded
    def parse(cls, text: str) -> MemberId:
        return cls(*_split(text, "member", cls.NAMES))

    def parts(self) -> tuple[str, ...]:
        return (self.instance, self.member_class, self.code)

    def __str__(self) -> str:
        return "/".join(self.parts())

    @property
    def member(self) -> MemberId:
        return self


@dataclass(frozen=True, order=True)
class SubsystemId:
    """A member's subsystem (an information system): ``INSTANCE/CLASS/CODE/SUBSYSTEM``."""

    instance: str
    member_class: str
    code: str
    subsystem: str

    NAMES: ClassVar[tuple[str, ...]] = ("INSTANCE", "CLASS", "CODE", "SUBSYSTEM")

    def __post_init__(self) -> None:
        for value, name in zip(self.parts(), self.NAMES, strict=True):
            validate_part(value, f"subsystem {name}")

    @classmethod
    @functools.lru_cache(maxsize=4096)  # frozen values: safe to share; bounded
    def parse(cls, text: str) -> SubsystemId:
        return cls(*_split(text, "subsystem", cls.NAMES))

    @classmethod
    def of(cls, member: MemberId, subsystem: str) -> SubsystemId:
        return cls(member.instance, member.member_class, member.code, subsystem)

    def parts(self) -> tuple[str, ...]:
        return (self.instance, self.member_class, self.code, self.subsystem)

    @property
    def member(self) -> MemberId:
        return MemberId(self.instance, self.member_class, self.code)

    def __str__(self) -> str:
        return "/".join(self.parts())


@dataclass(frozen=True, order=True)
class ServiceId:
    """A service of a subsystem, ``INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/VERSION]``, or of
    a member itself (``subsystem`` None; identifiers.xsd makes ``subsystemCode`` optional):
    ``INSTANCE/CLASS/CODE/SERVICE``.

    A member-level service carries no version here: ``INSTANCE/CLASS/CODE/SERVICE/VERSION``
    would read as a subsystem's service, and the string form is what nodes sign. The one
    member-level service today is X-Road's ``getSecurityServerMetrics`` (unversioned).
    """

    instance: str
    member_class: str
    code: str
    subsystem: str | None
    service: str
    version: str | None = None

    NAMES: ClassVar[tuple[str, ...]] = (
        "INSTANCE",
        "CLASS",
        "CODE",
        "SUBSYSTEM",
        "SERVICE",
        "VERSION",
    )
    MEMBER_NAMES: ClassVar[tuple[str, ...]] = ("INSTANCE", "CLASS", "CODE", "SERVICE")

    def __post_init__(self) -> None:
        names = self.NAMES if self.subsystem is not None else self.MEMBER_NAMES
        for value, name in zip(self.parts(), names, strict=False):
            validate_part(value, f"service {name}")
        if self.subsystem is None and self.version is not None:
            raise IdentifierError(
                f"member-level service {self.service!r} with a version is not supported"
            )

    @classmethod
    @functools.lru_cache(maxsize=4096)  # frozen values: safe to share; bounded
    def parse(cls, text: str) -> ServiceId:
        return cls(*_split(text, "service", cls.NAMES, optional=1))

    @classmethod
    @functools.lru_cache(maxsize=1024)
    def parse_any(cls, text: str) -> ServiceId:
        """A subsystem's service (5 or 6 parts) or a member's (4 parts): the wire's form."""
        if isinstance(text, str) and len(text.split("/")) == len(cls.MEMBER_NAMES):
            instance, member_class, code, service = _split(text, "service", cls.MEMBER_NAMES)
            return cls(instance, member_class, code, None, service)
        return cls.parse(text)

    @classmethod
    def of(cls, subsystem: SubsystemId, service: str, version: str | None = None) -> ServiceId:
        return cls(
            subsystem.instance,
            subsystem.member_class,
            subsystem.code,
            subsystem.subsystem,
            service,
            version,
        )

    @classmethod
    def of_member(cls, member: MemberId, service: str) -> ServiceId:
        """A member-level service (no subsystem)."""
        return cls(member.instance, member.member_class, member.code, None, service)

    def parts(self) -> tuple[str, ...]:
        if self.subsystem is None:
            return (self.instance, self.member_class, self.code, self.service)
        base = (self.instance, self.member_class, self.code, self.subsystem, self.service)
        return base if self.version is None else (*base, self.version)

    @property
    def member(self) -> MemberId:
        return MemberId(self.instance, self.member_class, self.code)

    @property
    def member_level(self) -> bool:
        return self.subsystem is None

    @property
    def provider(self) -> MemberId | SubsystemId:
        """Whose service it is: the subsystem, or the member for a member-level service."""
        return self.member if self.subsystem is None else self.subsystem_id

    @property
    def subsystem_id(self) -> SubsystemId:
        if self.subsystem is None:
            raise IdentifierError(f"service {self} is a member's service, not a subsystem's")
        return SubsystemId(self.instance, self.member_class, self.code, self.subsystem)

    def __str__(self) -> str:
        return "/".join(self.parts())


@dataclass(frozen=True, order=True)
class NodeId:
    """A security node owned by a member: ``INSTANCE/CLASS/CODE/SERVERCODE``."""

    instance: str
    member_class: str
    code: str
    server_code: str

    NAMES: ClassVar[tuple[str, ...]] = ("INSTANCE", "CLASS", "CODE", "SERVERCODE")

    def __post_init__(self) -> None:
        for value, name in zip(self.parts(), self.NAMES, strict=True):
            validate_part(value, f"node {name}")

    @classmethod
    @functools.lru_cache(maxsize=4096)  # frozen values: safe to share; bounded
    def parse(cls, text: str) -> NodeId:
        return cls(*_split(text, "node", cls.NAMES))

    @classmethod
    def of(cls, member: MemberId, server_code: str) -> NodeId:
        return cls(member.instance, member.member_class, member.code, server_code)

    def parts(self) -> tuple[str, ...]:
        return (self.instance, self.member_class, self.code, self.server_code)

    @property
    def member(self) -> MemberId:
        return MemberId(self.instance, self.member_class, self.code)

    def __str__(self) -> str:
        return "/".join(self.parts())


ClientId = MemberId | SubsystemId


def parse_client(text: str) -> ClientId:
    """Parse a client identifier, which X-Road allows to be a member or a subsystem."""
    count = len(text.split("/")) if isinstance(text, str) else 0
    if count == 3:
        return MemberId.parse(text)
    if count == 4:
        return SubsystemId.parse(text)
    raise IdentifierError(
        f"client identifier {text!r} has {count} part(s); expected "
        "INSTANCE/CLASS/CODE or INSTANCE/CLASS/CODE/SUBSYSTEM"
    )
