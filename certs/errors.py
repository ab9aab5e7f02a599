"""The one root of the errors an operator is meant to read as a one-line reason.

Every library error of ``certs``, ``central`` and ``secnode`` that means "this
was refused, and here is why" (a bad identifier, a key file that does not open,
a CA that refuses a CSR, an unknown service, a policy document that does not
validate) derives from :class:`SecnodeError`. The three CLIs catch it once, at
their root group (:class:`certs.cliutil.ErrorMappingGroup`), and print
``error: <reason>``; anything else is a bug and keeps its traceback.

It lives in ``certs`` because ``certs`` is the package every other one may
import (the PKI toolkit imports neither the node nor the registry).
"""

from __future__ import annotations


class SecnodeError(Exception):
    """A refusal an operator can act on: ``str()`` is the one-line reason.

    ``exit_code`` is the CLI's exit status for it (1 for every refusal today).
    """

    exit_code: int = 1
