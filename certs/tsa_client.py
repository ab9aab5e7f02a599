"""RFC 3161 client: send a request to a TSA and get its token (the network half).

Building requests and verifying tokens is pure and lives in :mod:`certs.tsa_verify`;
:func:`request_token` and :func:`fetch_token` use aiohttp (imported lazily),
:func:`request_token_sync` the standard library.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cryptography import x509

from certs.tsa import CONTENT_TYPE_QUERY, CONTENT_TYPE_REPLY, TSAError
from certs.tsa_verify import TokenInfo, build_request, token_from_response, verify_token

if TYPE_CHECKING:
    import aiohttp

__all__ = ["fetch_token", "request_token", "request_token_sync"]

#: A TimeStampResp is a few kilobytes; anything far larger is not one.
MAX_RESPONSE_BYTES = 1 << 20
DEFAULT_TIMEOUT = 10.0


# ----- transport -----------------------------------------------------------------------
async def request_token(
    url: str,
    der: bytes,
    session: aiohttp.ClientSession | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> bytes:
    """POST a TimeStampReq to ``url``; return the DER TimeStampResp (not yet verified)."""
    import aiohttp

    own = session is None
    client = session or aiohttp.ClientSession()
    try:
        async with client.post(
            url,
            data=der,
            headers={"Content-Type": CONTENT_TYPE_QUERY},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            if resp.status != 200:
                raise TSAError(f"TSA {url} answered HTTP {resp.status} {resp.reason}")
            if resp.content_type != CONTENT_TYPE_REPLY:
                raise TSAError(f"TSA {url} answered {resp.content_type}, not {CONTENT_TYPE_REPLY}")
            if (resp.content_length or 0) > MAX_RESPONSE_BYTES:
                raise TSAError(f"TSA {url} sent an oversized reply")
            body = await resp.content.read(MAX_RESPONSE_BYTES + 1)
            if len(body) > MAX_RESPONSE_BYTES:
                raise TSAError(f"TSA {url} sent an oversized reply")
            return body
    except aiohttp.ClientError as exc:
        raise TSAError(f"cannot reach TSA {url}: {exc}") from exc
    except TimeoutError as exc:
        raise TSAError(f"TSA {url} did not answer within {timeout:g} s") from exc
    finally:
        if own:
            await client.close()


def request_token_sync(url: str, der: bytes, timeout: float = DEFAULT_TIMEOUT) -> bytes:
    """Blocking :func:`request_token` for CLIs and scripts (urllib, no event loop)."""
    req = urllib.request.Request(
        url, data=der, method="POST", headers={"Content-Type": CONTENT_TYPE_QUERY}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            ctype = resp.headers.get_content_type()
            if ctype != CONTENT_TYPE_REPLY:
                raise TSAError(f"TSA {url} answered {ctype}, not {CONTENT_TYPE_REPLY}")
            body: bytes = resp.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        exc.close()  # its response holds the connection
        raise TSAError(f"TSA {url} answered HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise TSAError(f"cannot reach TSA {url}: {exc}") from exc
    if len(body) > MAX_RESPONSE_BYTES:
        raise TSAError(f"TSA {url} sent an oversized reply")
    return body


async def fetch_token(
    url: str,
    digest: bytes,
    hash_name: str,
    trusted: Sequence[x509.Certificate],
    *,
    intermediates: Sequence[x509.Certificate] = (),
    session: aiohttp.ClientSession | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[bytes, TokenInfo]:
    """Request, verify (with nonce) and return the bare token to store, plus what it says."""
    der, nonce = build_request(digest, hash_name)
    resp = await request_token(url, der, session=session, timeout=timeout)
    info = await asyncio.to_thread(
        verify_token, resp, digest, hash_name, trusted, nonce, intermediates
    )
    return token_from_response(resp), info
