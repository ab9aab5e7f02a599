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


@functools.total_ordering
@dataclass(frozen=True)
class ServiceId:
    """A service of a subsystem, ``INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/VERSION]``, or of a
    member itself (``subsystem`` None; identifiers.xsd makes ``subsystemCode`` optional).

    A member's own service is written with an empty subsystem part,
    ``INSTANCE/CLASS/CODE//SERVICE[/VERSION]``: without it ``A/B/C/X/Y`` could be either a
    subsystem service or a member service with a version, and the string form is what the
    signature, the wire and the message log carry.
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

    def __post_init__(self) -> None:
        for value, name in zip(self.parts(), self.NAMES, strict=False):
            if value or name != "SUBSYSTEM":  # a member's own service: "" stands for None
                validate_part(value, f"service {name}")
        if self.subsystem == "":
            raise IdentifierError("service SUBSYSTEM is empty (None for a member's own service)")

    @classmethod
    @functools.lru_cache(maxsize=4096)  # frozen values: safe to share; bounded
    def parse(cls, text: str) -> ServiceId:
        if isinstance(text, str) and text.count("/") >= 4 and text.split("/")[3] == "":
            p = text.split("/")
            if len(p) > 6:
                raise IdentifierError(
                    f"service identifier {text!r} has {len(p)} part(s); expected "
                    "INSTANCE/CLASS/CODE//SERVICE[/VERSION] for a member's own service"
                )
            return cls(p[0], p[1], p[2], None, p[4], p[5] if len(p) == 6 else None)
        try:
            return cls(*_split(text, "service", cls.NAMES, optional=1))
        except IdentifierError as exc:
            if isinstance(text, str) and text.count("/") == 3:
                raise IdentifierError(
                    f"{exc}; a member's own service is written INSTANCE/CLASS/CODE//SERVICE"
                ) from None
            raise

    @classmethod
    def of(
        cls, provider: SubsystemId | MemberId, service: str, version: str | None = None
    ) -> ServiceId:
        """A service of a subsystem, or of a member (no subsystem)."""
        subsystem = provider.subsystem if isinstance(provider, SubsystemId) else None
        return cls(
            provider.instance, provider.member_class, provider.code, subsystem, service, version
        )

    def parts(self) -> tuple[str, ...]:
        """The parts of the string form (a member's own service: ``""`` for the subsystem)."""
        sub = "" if self.subsystem is None else self.subsystem
        base = (self.instance, self.member_class, self.code, sub, self.service)
        return base if self.version is None else (*base, self.version)

    @property
    def member(self) -> MemberId:
        return MemberId(self.instance, self.member_class, self.code)

    @property
    def is_member_level(self) -> bool:
        """Whether the service belongs to the member itself, not to one of its subsystems."""
        return self.subsystem is None

    @property
    def provider(self) -> MemberId | SubsystemId:
        """Who provides it: the subsystem, or the member for a member's own service."""
        if self.subsystem is None:
            return self.member
        return SubsystemId(self.instance, self.member_class, self.code, self.subsystem)

    @property
    def subsystem_id(self) -> SubsystemId:
        """The providing subsystem; a member's own service has none (use :attr:`provider`)."""
        if self.subsystem is None:
            raise IdentifierError(f"service {self} belongs to a member, not to a subsystem")
        return SubsystemId(self.instance, self.member_class, self.code, self.subsystem)

    def __str__(self) -> str:
        return "/".join(self.parts())

    def __lt__(self, other: object) -> bool:
        """Ordered by the string parts (a member's own service sorts before its subsystems')."""
        if not isinstance(other, ServiceId):
            return NotImplemented
        return self.parts() < other.parts()


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
