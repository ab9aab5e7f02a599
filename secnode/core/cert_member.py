"""Which member a sign certificate belongs to (its ``serialNumber``, as X-Road reads it)."""

from __future__ import annotations

from cryptography import x509

from certs.profiles import ProfileError, member_serial
from secnode.core.identifiers import IdentifierError, MemberId


def member_id_of(name: x509.Name) -> MemberId:
    """The member a sign certificate's subject names; :class:`ProfileError` when it names none."""
    text = member_serial(name)
    try:
        return MemberId.parse(text)
    except IdentifierError as exc:
        raise ProfileError(f"subject serialNumber is not a member identifier: {exc}") from exc
