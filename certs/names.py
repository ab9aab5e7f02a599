"""Distinguished names as operators read them: RFC 4514 with names for every attribute we use.

``x509.Name.rfc4514_string()`` knows only the RFC 4514 short names (CN, O, OU, C, L, ST,
STREET, DC, UID) and prints the rest as dotted OIDs: a sign certificate's member code
came out as ``2.5.4.5=JP/GOV/072028``. :func:`display_name` adds the names from RFC 4519 /
X.520 (``serialNumber``, ``organizationIdentifier``, ...). Pure: no I/O.
"""

from __future__ import annotations

from typing import Final

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

#: Attribute names beyond RFC 4514's defaults (X.520 / RFC 4519 spelling).
ATTRIBUTE_NAMES: Final[dict[ObjectIdentifier, str]] = {
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier",
    NameOID.GIVEN_NAME: "givenName",
    NameOID.SURNAME: "SN",
    NameOID.TITLE: "title",
    NameOID.PSEUDONYM: "pseudonym",
    NameOID.DN_QUALIFIER: "dnQualifier",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.BUSINESS_CATEGORY: "businessCategory",
    NameOID.POSTAL_CODE: "postalCode",
    NameOID.GENERATION_QUALIFIER: "generationQualifier",
    NameOID.INITIALS: "initials",
    NameOID.JURISDICTION_COUNTRY_NAME: "jurisdictionC",
}


def display_name(name: x509.Name) -> str:
    """``name`` in RFC 4514 form with readable attribute names (``serialNumber=...``)."""
    return name.rfc4514_string(ATTRIBUTE_NAMES)
