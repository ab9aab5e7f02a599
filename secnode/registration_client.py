"""The node's half of registration: send a built request to the central registry.

The request format (build and parse) is shared with the registry and lives in
:mod:`secnode.core.registration`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from secnode.core.registration import RegistrationError


def submit(url: str, envelope: bytes, *, timeout: float = 10.0) -> dict[str, Any]:
    """POST ``envelope`` to the registry's ``/register`` URL; returns ``{"id", "state"}``.

    Raises :class:`RegistrationError` carrying the registry's refusal (its
    problem ``detail`` and ``code``) or the network failure.
    """
    request = urllib.request.Request(
        url, data=envelope, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
            return answer
    except urllib.error.HTTPError as exc:
        try:
            problem = json.loads(exc.read())
            message, code = str(problem.get("detail")), str(problem.get("code", "Refused"))
        except (ValueError, AttributeError):
            message, code = f"HTTP {exc.code} {exc.reason}", "Refused"
        finally:
            exc.close()  # its response holds the connection
        raise RegistrationError(
            f"registry refused the request: {message}", code=code, status=exc.code
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise RegistrationError(
            f"cannot reach the registry at {url}: {exc}", code="NetworkError", status=0
        ) from exc
