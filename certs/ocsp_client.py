"""OCSP client edge: send a request over HTTP and hand the bytes to the pure validator.

Request building and validation live in :mod:`certs.ocsp` (no aiohttp) and are
re-exported here so callers need one import.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Literal
from urllib.parse import quote

import aiohttp

from certs.ocsp import (
    OCSPError,
    OCSPStatus,
    build_request,
    validate_response,
)

CONTENT_TYPE = "application/ocsp-response"
DEFAULT_TIMEOUT = 10.0
#: A signed response with one certificate is a few KiB; refuse anything absurd.
MAX_RESPONSE_BYTES = 1024 * 1024

__all__ = [
    "OCSPError",
    "OCSPFetchError",
    "OCSPStatus",
    "build_request",
    "fetch",
    "fetch_sync",
    "validate_response",
]


class OCSPFetchError(OCSPError):
    """The responder could not be reached or did not answer with an OCSP response."""


async def fetch(
    url: str,
    der: bytes,
    session: aiohttp.ClientSession | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    method: Literal["POST", "GET"] = "POST",
) -> bytes:
    """Send the DER request to ``url`` and return the raw DER response (not yet validated).

    GET appends the url-encoded base64 request to the URL (RFC 6960 A.1), which
    lets HTTP caches help when no nonce is used. Raises :class:`OCSPFetchError`.
    """
    own = session is None
    client = session or aiohttp.ClientSession()
    limit = aiohttp.ClientTimeout(total=timeout)
    try:
        if method == "GET":
            path = quote(base64.b64encode(der).decode(), safe="")
            request = client.get(url.rstrip("/") + "/" + path, timeout=limit)
        else:
            request = client.post(
                url,
                data=der,
                timeout=limit,
                headers={"Content-Type": "application/ocsp-request"},
            )
        async with request as resp:
            if resp.status != 200:
                raise OCSPFetchError(f"OCSP responder {url} answered HTTP {resp.status}")
            if resp.content_type != CONTENT_TYPE:
                raise OCSPFetchError(
                    f"OCSP responder {url} answered {resp.content_type!r}, not {CONTENT_TYPE}"
                )
            body = await resp.content.read(MAX_RESPONSE_BYTES + 1)
            if len(body) > MAX_RESPONSE_BYTES:
                raise OCSPFetchError(f"OCSP response from {url} exceeds {MAX_RESPONSE_BYTES} bytes")
            return body
    except (aiohttp.ClientError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        raise OCSPFetchError(f"cannot reach OCSP responder {url}: {reason}") from exc
    finally:
        if own:
            await client.close()


def fetch_sync(
    url: str,
    der: bytes,
    timeout: float = DEFAULT_TIMEOUT,
    method: Literal["POST", "GET"] = "POST",
) -> bytes:
    """:func:`fetch` for synchronous callers (CLIs, tests); not for use inside a running loop."""
    return asyncio.run(fetch(url, der, timeout=timeout, method=method))
