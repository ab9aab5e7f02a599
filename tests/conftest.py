"""Loads the shared fixtures (tests/support/fixtures.py); see docs/testing.md.

The helpers tests used to import from here stay importable from here.
"""

from __future__ import annotations

from tests.support.common import (  # noqa: F401 - the tests import them from here
    PASSPHRASE,
    PG_URL_ENV,
    cli_env,
    free_port,
    http_get,
    run_cli,
    wait_for_port,
)
from tests.support.pki import Issued, TestCA, make_ca  # noqa: F401 - likewise

pytest_plugins = ["tests.support.fixtures"]
