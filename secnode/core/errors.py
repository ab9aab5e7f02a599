"""X-Road style errors: one exception type, its codes, and its two renderings.

Every refusal a node makes, at the client interface or between nodes, is an
:class:`XRoadError`. X-Road client systems already branch on its fault codes
(``Client.*`` = the caller sent something wrong, ``Server.ClientProxy.*`` =
the caller's own node failed, ``Server.ServerProxy.*`` = the provider's node
or service failed), so we keep its code scheme and HTTP conventions instead
of inventing our own:

* REST: ``400`` for requests that do not conform to the protocol, ``500`` for
  node or provider failures (pr-rest §4.6), a JSON body
  ``{"type", "message", "detail"}`` and an ``X-Road-Error: <code>`` header
  (present only when the error originated in a node, never on a provider's
  own error response, so a client can tell the two apart).
* SOAP: a SOAP 1.1 fault sent with HTTP **200**, ``text/xml; charset=utf-8``,
  exactly as X-Road's proxies do (``HandlerBase.sendErrorResponse``); see
  ``docs/protocol.md`` for why not the 500 of SOAP 1.1 §6.2.

Codes live bare in one catalogue (``X_*``, X-Road's ``ErrorCodes``); ``Client`` is fixed
where an error is raised, any ``Server.*`` prefix is the catching side's: the error
boundary (``secnode/proxy/boundary.py``) applies :meth:`XRoadError.at_side`, as X-Road's
``translateWithPrefix`` does (docs/protocol.md §3.1).

``detail`` is a fresh UUID by default: X-Road puts one there so an operator
can find the matching log line; a client sees nothing internal.
"""

from __future__ import annotations

import re
import uuid
from typing import Final

# Prefixes of X-Road fault codes (ErrorCodes.java). ``Client`` is fixed where the error is
# raised (the caller sent something wrong, whichever node noticed); the two ``Server.*``
# prefixes name the side that caught the error and are added there (see XRoadError.at_side).
CLIENT: Final = "Client"
SERVER_CLIENT_PROXY: Final = "Server.ClientProxy"
SERVER_SERVER_PROXY: Final = "Server.ServerProxy"
_PREFIXES: Final = (SERVER_CLIENT_PROXY, SERVER_SERVER_PROXY, CLIENT)

# --- the catalogue: bare codes, as X-Road's ErrorCodes.X_* ---------------------------------
# the caller sent something that does not conform (raised as Client.*, HTTP 400 in REST)
X_BAD_REQUEST: Final = "BadRequest"
X_INVALID_XML: Final = "InvalidXml"
X_INVALID_SOAP: Final = "InvalidSoap"
X_INVALID_CONTENT_TYPE: Final = "InvalidContentType"
X_INVALID_HTTP_METHOD: Final = "InvalidHttpMethod"
X_MISSING_HEADER: Final = "MissingHeader"
X_MISSING_HEADER_FIELD: Final = "MissingHeaderField"
X_DUPLICATE_HEADER_FIELD: Final = "DuplicateHeaderField"
X_INVALID_HEADER_FIELD: Final = "InvalidHeaderField"
X_MISSING_BODY: Final = "MissingBody"
X_INVALID_BODY: Final = "InvalidBody"
X_INCONSISTENT_HEADERS: Final = "InconsistentHeaders"
X_INVALID_PROTOCOL_VERSION: Final = "InvalidProtocolVersion"
X_INVALID_CLIENT_IDENTIFIER: Final = "InvalidClientIdentifier"
X_INVALID_SERVICE_IDENTIFIER: Final = "InvalidServiceIdentifier"
X_DUPLICATE_MESSAGE_ID: Final = "DuplicateMessageId"
X_MESSAGE_TOO_LARGE: Final = "MessageTooLarge"
X_INVALID_SIGNATURE: Final = "InvalidSignature"
# a node refuses or fails (Server.<side>.*, HTTP 500)
X_UNKNOWN_MEMBER: Final = "UnknownMember"
X_UNKNOWN_SERVICE: Final = "UnknownService"
X_OUTDATED_GLOBALCONF: Final = "OutdatedGlobalConf"
X_NETWORK_ERROR: Final = "NetworkError"
X_INTERNAL_ERROR: Final = "InternalError"
X_INCONSISTENT_RESPONSE: Final = "InconsistentResponse"
X_SSL_AUTH_FAILED: Final = "SslAuthenticationFailed"
X_ACCESS_DENIED: Final = "AccessDenied"
X_SERVICE_DISABLED: Final = "ServiceDisabled"
X_SERVICE_FAILED: Final = "ServiceFailed"
X_MESSAGE_LOG_FAILED: Final = "MessageLogFailed"
X_TIMESTAMPING_FAILED: Final = "TimestampingFailed"
X_BUSY: Final = "Busy"
X_INVALID_SECURITY_SERVER: Final = "InvalidSecurityServer"

#: Every bare code above: only these may be raised without a prefix.
CATALOGUE: Final = frozenset(
    value for name, value in dict(globals()).items() if name.startswith("X_")
)


def _client(bare: str) -> str:
    return f"{CLIENT}.{bare}"


def _server(bare: str, side: str = SERVER_SERVER_PROXY) -> str:
    return f"{side}.{bare}"


# --- full codes to raise: ``raise XRoadError(errors.ACCESS_DENIED, ...)`` -----------------
# A Server.* constant names the side that usually raises it; the side that catches it
# decides (XRoadError.at_side), so both spellings of a server code mean the same error.
BAD_REQUEST: Final = _client(X_BAD_REQUEST)
INVALID_XML: Final = _client(X_INVALID_XML)
INVALID_SOAP: Final = _client(X_INVALID_SOAP)
INVALID_CONTENT_TYPE: Final = _client(X_INVALID_CONTENT_TYPE)
INVALID_HTTP_METHOD: Final = _client(X_INVALID_HTTP_METHOD)
MISSING_HEADER: Final = _client(X_MISSING_HEADER)
MISSING_HEADER_FIELD: Final = _client(X_MISSING_HEADER_FIELD)
DUPLICATE_HEADER_FIELD: Final = _client(X_DUPLICATE_HEADER_FIELD)
INVALID_HEADER_FIELD: Final = _client(X_INVALID_HEADER_FIELD)
MISSING_BODY: Final = _client(X_MISSING_BODY)
INVALID_BODY: Final = _client(X_INVALID_BODY)
INCONSISTENT_HEADERS: Final = _client(X_INCONSISTENT_HEADERS)
INVALID_PROTOCOL_VERSION: Final = _client(X_INVALID_PROTOCOL_VERSION)
INVALID_CLIENT_IDENTIFIER: Final = _client(X_INVALID_CLIENT_IDENTIFIER)
INVALID_SERVICE_IDENTIFIER: Final = _client(X_INVALID_SERVICE_IDENTIFIER)
DUPLICATE_MESSAGE_ID: Final = _client(X_DUPLICATE_MESSAGE_ID)
MESSAGE_TOO_LARGE: Final = _client(X_MESSAGE_TOO_LARGE)
INVALID_SIGNATURE: Final = _client(X_INVALID_SIGNATURE)

# --- usually raised on the client's own node ---
UNKNOWN_MEMBER: Final = _server(X_UNKNOWN_MEMBER, SERVER_CLIENT_PROXY)
CLIENT_PROXY_UNKNOWN_SERVICE: Final = _server(X_UNKNOWN_SERVICE, SERVER_CLIENT_PROXY)
OUTDATED_GLOBALCONF: Final = _server(X_OUTDATED_GLOBALCONF, SERVER_CLIENT_PROXY)
CLIENT_PROXY_NETWORK_ERROR: Final = _server(X_NETWORK_ERROR, SERVER_CLIENT_PROXY)
CLIENT_PROXY_INTERNAL_ERROR: Final = _server(X_INTERNAL_ERROR, SERVER_CLIENT_PROXY)
INCONSISTENT_RESPONSE: Final = _server(X_INCONSISTENT_RESPONSE, SERVER_CLIENT_PROXY)
CLIENT_PROXY_SSL_AUTH_FAILED: Final = _server(X_SSL_AUTH_FAILED, SERVER_CLIENT_PROXY)
#: The node's in-flight body budget stayed full for the allowed wait (docs/operations.md).
CLIENT_PROXY_BUSY: Final = _server(X_BUSY, SERVER_CLIENT_PROXY)
INVALID_SECURITY_SERVER: Final = _server(X_INVALID_SECURITY_SERVER, SERVER_CLIENT_PROXY)

# --- usually raised on the provider's node ---
ACCESS_DENIED: Final = _server(X_ACCESS_DENIED)
UNKNOWN_SERVICE: Final = _server(X_UNKNOWN_SERVICE)
SERVICE_DISABLED: Final = _server(X_SERVICE_DISABLED)
SERVICE_FAILED: Final = _server(X_SERVICE_FAILED)
SERVER_PROXY_OUTDATED_GLOBALCONF: Final = _server(X_OUTDATED_GLOBALCONF)
SERVER_PROXY_INTERNAL_ERROR: Final = _server(X_INTERNAL_ERROR)
SERVER_PROXY_SSL_AUTH_FAILED: Final = _server(X_SSL_AUTH_FAILED)
SERVER_PROXY_BUSY: Final = _server(X_BUSY)
# A provider system's SOAP response broke the protocol (X-Road: prefix.ServiceFailed.X).
SERVICE_INVALID_SOAP: Final = _server(f"{X_SERVICE_FAILED}.{X_INVALID_SOAP}")
SERVICE_MISSING_HEADER: Final = _server(f"{X_SERVICE_FAILED}.{X_MISSING_HEADER}")
SERVICE_INCONSISTENT_HEADERS: Final = _server(f"{X_SERVICE_FAILED}.{X_INCONSISTENT_HEADERS}")
#: The provider system's TLS certificate is not the pinned one or not from its CA (the request
#: was not sent), or the TLS handshake with it failed.
SERVICE_SSL_AUTH_FAILED: Final = _server(f"{X_SERVICE_FAILED}.{X_SSL_AUTH_FAILED}")

# HTTP status X-Road uses for every SOAP fault it generates (see module docstring).
SOAP_FAULT_HTTP_STATUS: Final = 200
# REST error bodies are JSON; X-Road would also honour Accept: text/xml, we do not (yet).
REST_ERROR_CONTENT_TYPE: Final = "application/json; charset=utf-8"
ERROR_HEADER: Final = "X-Road-Error"

# Dotted CamelCase words; refuses anything that could break a header or XML text.
_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+$")

# Status codes that deviate from the plain Client=400 / Server=500 rule.
# None: X-Road's REST interface answers 400 or 500 only, and clients rely on that.
# Busy is a 500 too: its code says "try again later" (docs/protocol.md).
_STATUS_OVERRIDES: dict[str, int] = {}


def default_http_status(code: str) -> int:
    """The REST status X-Road's convention gives ``code``: 400 for ``Client.*``, else 500."""
    if code in _STATUS_OVERRIDES:
        return _STATUS_OVERRIDES[code]
    return 400 if code.split(".", 1)[0] == CLIENT else 500


def split_code(code: str) -> tuple[str | None, str]:
    """``(prefix, bare)`` of a fault code: ``Server.ServerProxy.AccessDenied`` ->
    ``("Server.ServerProxy", "AccessDenied")``; a code without a known prefix has none."""
    for prefix in _PREFIXES:
        if code.startswith(prefix + "."):
            return prefix, code[len(prefix) + 1 :]
    return None, code


class XRoadError(Exception):
    """A refusal or failure to report to the caller in X-Road's error format.

    ``code`` is the fault code: a full one (``Client.BadRequest``,
    ``Server.ServerProxy.AccessDenied``, see the constants above) or a bare one from
    :data:`CATALOGUE`. ``message`` is the human-readable reason (it becomes
    ``faultstring`` / JSON ``message``), ``http_status`` the REST status (derived
    from the code if omitted) and ``detail`` an opaque correlation id for the logs
    (a fresh UUID if omitted).

    The error keeps its bare code and prefix apart, as X-Road's ``CodedException``
    does: a ``Client`` prefix is fixed where the error is raised; any other prefix
    is provisional, replaced by the side that catches it (:meth:`at_side`).
    """

    def __init__(
        self,
        code: str,
        message: str,
        http_status: int | None = None,
        detail: str | None = None,
    ) -> None:
        if not _CODE.match(code) and code not in CATALOGUE:
            raise ValueError(f"malformed X-Road error code {code!r}")
        status = default_http_status(code) if http_status is None else http_status
        if not 400 <= status <= 599:
            raise ValueError(f"error HTTP status must be 4xx or 5xx, not {status}")
        super().__init__(f"{code}: {message}")
        self.prefix, self.bare = split_code(code)
        self.message = message
        self.http_status = status
        self.detail = str(uuid.uuid4()) if detail is None else detail

    @property
    def code(self) -> str:
        """The full fault code as it goes on the wire."""
        return self.bare if self.prefix is None else f"{self.prefix}.{self.bare}"

    def __repr__(self) -> str:
        return f"XRoadError({self.code!r}, {self.message!r}, {self.http_status}, {self.detail!r})"

    def with_prefix(self, prefix: str) -> XRoadError:
        """Return a copy whose code is ``prefix + "." + code``, as X-Road re-prefixes
        errors that cross a proxy (``ServiceFailed`` -> ``Server.ServerProxy.ServiceFailed``).
        The HTTP status is recomputed from the new code unless it was explicitly special."""
        code = f"{prefix}.{self.code}"
        return XRoadError(code, self.message, default_http_status(code), self.detail)

    def at_side(self, side: str) -> XRoadError:
        """This error as the ``side`` (``Server.ClientProxy`` or ``Server.ServerProxy``)
        that caught it reports it: X-Road's ``translateWithPrefix``. ``Client.*`` errors
        keep their prefix (the caller is at fault whoever noticed); every other error
        takes the catching side's prefix. Message, status and detail are kept."""
        if self.prefix == CLIENT or self.prefix == side:
            return self
        copy = XRoadError(f"{side}.{self.bare}", self.message, self.http_status, self.detail)
        copy.__cause__ = self.__cause__
        return copy


def internal_error(side: str) -> XRoadError:
    """What a caller is told when the node failed in a way it did not foresee: the error
    boundary's answer to any exception that is not an :class:`XRoadError`. Nothing about
    the cause goes to the caller; the operator finds it in the node's log by ``detail``."""
    return XRoadError(
        f"{side}.{X_INTERNAL_ERROR}",
        "the node failed to process the request; its operator can find the cause in the "
        "node's log by the detail id",
    )
