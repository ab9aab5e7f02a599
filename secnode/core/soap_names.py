"""The names X-Road SOAP messages are written in, and the two element helpers every reader needs.

Namespaces, the protocol version, the ``requestHash`` algorithm and the
Clark-notation tags of the SOAP 1.1 envelope live here, apart from the
parsers, because the header reader, the envelope scanner, the fault renderer
(:mod:`secnode.core.faults`) and the client systems' tests all need them and
none of them needs the others' code.
"""

from __future__ import annotations

import re
from typing import Any, Final

SOAP_ENV_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV_NS: Final = "http://www.w3.org/2003/05/soap-envelope"
XROAD_NS: Final = "http://x-road.eu/xsd/xroad.xsd"
ID_NS: Final = "http://x-road.eu/xsd/identifiers"
# secnode's own SOAP header namespace for the policy context (purpose, legal
# basis, data subject and the extensions of message.POLICY_EXTENSIONS). One
# constant: clients, docs and tests use this name.
POLICY_NS: Final = "https://secnode.example/xsd/policy"
PROTOCOL_VERSION: Final = "4.0"
#: Versions a request may name: any 4.x (X-Road accepts them; pr-meta C.6 sends "4.x").
PROTOCOL_VERSION_PATTERN: Final = re.compile(r"4\.[0-9A-Za-z]+")
REQUEST_HASH_ALGORITHM: Final = "http://www.w3.org/2001/04/xmlenc#sha512"
# SOAP metaservices a node answers itself (pr-meta); getWsdl may be refused by the server.
SOAP_METASERVICES: Final = frozenset({"listMethods", "allowedMethods", "getWsdl"})

ENVELOPE_TAG: Final = f"{{{SOAP_ENV_NS}}}Envelope"
HEADER_TAG: Final = f"{{{SOAP_ENV_NS}}}Header"
BODY_TAG: Final = f"{{{SOAP_ENV_NS}}}Body"
FAULT_TAG: Final = f"{{{SOAP_ENV_NS}}}Fault"


def is_element(node: Any) -> bool:
    return isinstance(node.tag, str)  # skips comments and processing instructions


def qname(tag: str) -> tuple[str | None, str]:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return None, tag
