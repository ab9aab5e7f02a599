"""The registry's one error type: a refusal with a one-line reason and a stable code."""

from __future__ import annotations

from certs.errors import SecnodeError


class RegistryError(SecnodeError):
    """An operation was refused; ``str()`` is the one-line reason shown to the operator.

    ``code`` is stable and machine-readable (used in HTTP problem responses);
    ``status`` is the HTTP status the registration endpoint answers with.
    """

    def __init__(self, message: str, *, code: str = "InvalidRequest", status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class NotFound(RegistryError):
    def __init__(self, message: str, *, code: str = "NotFound") -> None:
        super().__init__(message, code=code, status=404)


class Conflict(RegistryError):
    def __init__(self, message: str, *, code: str = "Conflict") -> None:
        super().__init__(message, code=code, status=409)
