"""Who may do what on the message path: the node's two access rules, in one place.

* Outbound (client node): which information systems may act as one of our
  subsystems (``secnode client allow``: any caller, an IP address, or a TLS client
  certificate).
* Inbound (provider node): which clients hold an access right to a service, given
  to the client itself or to a global group it belongs to (``group:<code>``).

Both are plain predicates over the service table and the global configuration:
the steps of :mod:`secnode.proxy.client_side` and :mod:`secnode.proxy.server_side`
raise the X-Road error, and the metaservices (``allowedMethods``) filter with the
same rule the exchange enforces.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from secnode.core.identifiers import MemberId, SubsystemId

if TYPE_CHECKING:
    from secnode.app.runtime import ServiceEntry
    from secnode.core.globalconf import GlobalConf


def caller_allowed(
    rules: Iterable[tuple[str, str]], remote: str, peer_cert_sha256: str | None
) -> bool:
    """Whether a caller at ``remote`` (with this TLS client certificate, if any) matches
    one of a subsystem's whitelist rules (``kind``, ``value``): ``any``, ``address`` or
    ``cert`` (SHA-256 hex of the certificate). No rule: nobody may act as it."""
    for kind, value in rules:
        if (
            kind == "any"
            or (kind == "address" and value == remote)
            or (kind == "cert" and peer_cert_sha256 is not None and value == peer_cert_sha256)
        ):
            return True
    return False


def client_granted(
    entry: ServiceEntry, client: MemberId | SubsystemId, conf: GlobalConf | None
) -> bool:
    """Whether ``client`` holds an access right to the service of ``entry``: directly, or
    through a global group of ``conf`` it is a member of (none without a configuration)."""
    if str(client) in entry.grants:
        return True
    if conf is None:
        return False
    return any(f"group:{code}" in entry.grants for code in conf.groups_of(client))
