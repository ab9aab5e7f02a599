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

``detail`` is a fresh UUID by default: X-Road puts one there so an operator
can find the matching log line; a client sees nothing internal.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Final

# Prefixes of X-Road fault codes (ErrorCodes.java).
CLIENT: Final = "Client"
SERVER_CLIENT_PROXY: Final = "Server.ClientProxy"
SERVER_SERVER_PROXY: Final = "Server.ServerProxy"

# --- the caller sent something that does not conform (HTTP 400 in REST) ---
BAD_REQUEST: Final = "Client.BadRequest"
INVALID_XML: Final = "Client.InvalidXml"
INVALID_SOAP: Final = "Client.InvalidSoap"
INVALID_CONTENT_TYPE: Final = "Client.InvalidContentType"
INVALID_HTTP_METHOD: Final = "Client.InvalidHttpMethod"
MISSING_HEADER: Final = "Client.MissingHeader"
MISSING_HEADER_FIELD: Final = "Client.MissingHeaderField"
DUPLICATE_HEADER_FIELD: Final = "Client.DuplicateHeaderField"
INVALID_HEADER_FIELD: Final = "Client.InvalidHeaderField"
MISSING_BODY: Final = "Client.MissingBody"
INVALID_BODY: Final = "Client.InvalidBody"
INCONSISTENT_HEADERS: Final = "Client.InconsistentHeaders"
INVALID_PROTOCOL_VERSION: Final = "Client.InvalidProtocolVersion"
INVALID_CLIENT_IDENTIFIER: Final = "Client.InvalidClientIdentifier"
INVALID_SERVICE_IDENTIFIER: Final = "Client.InvalidServiceIdentifier"
DUPLICATE_MESSAGE_ID: Final = "Client.DuplicateMessageId"
MESSAGE_TOO_LARGE: Final = "Client.MessageTooLarge"
INVALID_SIGNATURE: Final = "Client.InvalidSignature"

# --- the client's own node refuses or fails (HTTP 500) ---
UNKNOWN_MEMBER: Final = "Server.ClientProxy.UnknownMember"
CLIENT_PROXY_UNKNOWN_SERVICE: Final = "Server.ClientProxy.UnknownService"
OUTDATED_GLOBALCONF: Final = "Server.ClientProxy.OutdatedGlobalConf"
CLIENT_PROXY_NETWORK_ERROR: Final = "Server.ClientProxy.NetworkError"
CLIENT_PROXY_INTERNAL_ERROR: Final = "Server.ClientProxy.InternalError"
INCONSISTENT_RESPONSE: Final = "Server.ClientProxy.InconsistentResponse"
CLIENT_PROXY_SSL_AUTH_FAILED: Final = "Server.ClientProxy.SslAuthenticationFailed"

# --- the provider's node or service refuses or fails (HTTP 500) ---
ACCESS_DENIED: Final = "Server.ServerProxy.AccessDenied"
UNKNOWN_SERVICE: Final = "Server.ServerProxy.UnknownService"
SERVICE_DISABLED: Final = "Server.ServerProxy.ServiceDisabled"
SERVICE_FAILED: Final = "Server.ServerProxy.ServiceFailed"
SERVER_PROXY_OUTDATED_GLOBALCONF: Final = "Server.ServerProxy.OutdatedGlobalConf"
SERVER_PROXY_INTERNAL_ERROR: Final = "Server.ServerProxy.InternalError"
SERVER_PROXY_SSL_AUTH_FAILED: Final = "Server.ServerProxy.SslAuthenticationFailed"
# A provider system's SOAP response broke the protocol (X-Road: prefix.ServiceFailed.X).
SERVICE_INVALID_SOAP: Final = "Server.ServerProxy.ServiceFailed.InvalidSoap"
SERVICE_MISSING_HEADER: Final = "Server.ServerProxy.ServiceFailed.MissingHeader"
SERVICE_INCONSISTENT_HEADERS: Final = "Server.ServerProxy.ServiceFailed.InconsistentHeaders"

# HTTP status X-Road uses for every SOAP fault it generates (see module docstring).
SOAP_FAULT_HTTP_STATUS: Final = 200
# REST error bodies are JSON; X-Road would also honour Accept: text/xml, we do not (yet).
REST_ERROR_CONTENT_TYPE: Final = "application/json; charset=utf-8"
ERROR_HEADER: Final = "X-Road-Error"

# Dotted CamelCase words; refuses anything that could break a header or XML text.
_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+$")

# Status codes that deviate from the plain Client=400 / Server=500 rule.
_STATUS_OVERRIDES: dict[str, int] = {
    # 413 tells an HTTP client "too large" without parsing the body; it is still a 4xx.
    MESSAGE_TOO_LARGE: 413,
}


def default_http_status(code: str) -> int:
    """The REST status X-Road's convention gives ``code``: 400 for ``Client.*``, else 500."""
    if code in _STATUS_OVERRIDES:
        return _STATUS_OVERRIDES[code]
    return 400 if code.split(".", 1)[0] == CLIENT else 500


class XRoadError(Exception):
    """A refusal or failure to report to the caller in X-Road's error format.

    ``code`` is the fault code (``Client.BadRequest``), ``message`` the
    human-readable reason (it becomes ``faultstring`` / JSON ``message``),
    ``http_status`` the REST status (derived from the code if omitted) and
    ``detail`` an opaque correlation id for the logs (a fresh UUID if omitted).
    """

    def __init__(
        self,
        code: str,
        message: str,
        http_status: int | None = None,
        detail: str | None = None,
    ) -> None:
        if not _CODE.match(code):
            raise ValueError(f"malformed X-Road error code {code!r}")
        status = default_http_status(code) if http_status is None else http_status
        if not 400 <= status <= 599:
            raise ValueError(f"error HTTP status must be 4xx or 5xx, not {status}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = status
        self.detail = str(uuid.uuid4()) if detail is None else detail

    def __repr__(self) -> str:
        return f"XRoadError({self.code!r}, {self.message!r}, {self.http_status}, {self.detail!r})"

    def with_prefix(self, prefix: str) -> XRoadError:
        """Return a copy whose code is ``prefix + "." + code``, as X-Road re-prefixes
        errors that cross a proxy (``ServiceFailed`` -> ``Server.ServerProxy.ServiceFailed``).
        The HTTP status is recomputed from the new code unless it was explicitly special."""
        code = f"{prefix}.{self.code}"
        return XRoadError(code, self.message, default_http_status(code), self.detail)

    # --- REST rendering ---------------------------------------------------
    def rest_body(self) -> bytes:
        """The JSON body ``{"type", "message", "detail"}`` (pr-rest §4.6), UTF-8."""
        doc = {"type": self.code, "message": self.message, "detail": self.detail}
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def rest_headers(self) -> dict[str, str]:
        """Headers that go with :meth:`rest_body`, including ``X-Road-Error``."""
        return {"Content-Type": REST_ERROR_CONTENT_TYPE, ERROR_HEADER: self.code}

    def rest_response(self) -> tuple[int, dict[str, str], bytes]:
        """``(status, headers, body)`` for a REST client."""
        return self.http_status, self.rest_headers(), self.rest_body()

    # --- SOAP rendering ---------------------------------------------------
    def soap_body(self) -> bytes:
        """The SOAP 1.1 fault document for this error."""
        # Imported here: soap.py needs XRoadError, and the fault layout belongs there.
        from secnode.core.soap import build_fault

        return build_fault(self.code, self.message, self.detail)

    def soap_response(self) -> tuple[int, dict[str, str], bytes]:
        """``(status, headers, body)`` for a SOAP client: HTTP 200 as X-Road does."""
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": ""}
        return SOAP_FAULT_HTTP_STATUS, headers, self.soap_body()
