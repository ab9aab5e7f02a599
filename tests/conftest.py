"""Loads the shared fixtures (tests/support/fixtures.py); see docs/testing.md.

The helpers tests used to import from here stay importable from here.
"""

from __future__ import annotations

import os

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

# Every `secnode serve` a test starts is one process (the node PID the test kills or
# measures) unless the test asks for `--workers` itself (tests/test_workers.py).
os.environ.setdefault("SECNODE_WORKERS", "1")

# Parallel test workers (pytest-xdist) choose ports at the same time: each takes its own
# residue class of the port range (secnode/demo/ports.py), so two never pick one port.
_xdist_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _xdist_worker.startswith("gw") and _xdist_worker[2:].isdigit():
    os.environ.setdefault(
        "SECNODE_PORT_SLICE",
        f"{int(_xdist_worker[2:])}/{os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1')}",
    )
