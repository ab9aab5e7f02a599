"""The docs cannot rot: the operator's first-exchange guide and the auditor's offline path
run verbatim, as the shell blocks a reader would paste, from an empty directory.

Convention (stated in both documents): under the guide's heading, every fenced block
marked ``sh`` is run, in order, by one ``bash`` with ``set -euo pipefail``; blocks marked
otherwise (``text``, ``console``) are output or variants and are not run. Daemons are
started in the background with ``&`` and their output in ``logs/``; the blocks wait for
ports with ``curl --retry``. Ports are shell variables with defaults (``${X:-8888}``), so
the test gives free ports through the environment without changing a character of the
commands. Everything the script started is in its process group and stopped at the end.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from secnode.demo.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GUIDE_HEADING = "## First exchange between two cities"
AUDIT_HEADING = "### 2.2 The auditor's offline path, step by step"
PORT_VARIABLES = (
    "OCSP_PORT",
    "TSA_PORT",
    "CENTRAL_PORT",
    "SERVICE_PORT",
    "AIZU_SERVER_PORT",
    "AIZU_CLIENT_PORT",
    "AIZU_ADMIN_PORT",
    "TAKA_SERVER_PORT",
    "TAKA_CLIENT_PORT",
    "TAKA_ADMIN_PORT",
)

pytestmark = pytest.mark.slow


def section(text: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    start = text.index(heading + "\n")
    level = len(heading) - len(heading.lstrip("#"))
    rest = text[start + len(heading) + 1 :]
    stop = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[: stop.start()] if stop else rest


def sh_blocks(text: str) -> list[str]:
    """The bodies of the fenced blocks marked ``sh``, in order."""
    return re.findall(r"^```sh\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


def guide_script() -> str:
    guide = sh_blocks(section((DOCS / "operations.md").read_text(), GUIDE_HEADING))
    audit = sh_blocks(section((DOCS / "audit.md").read_text(), AUDIT_HEADING))
    assert len(guide) >= 8 and len(audit) >= 2, "the guides lost their sh blocks"
    return "\n".join(["set -euo pipefail", *guide, *audit])


def test_extraction_takes_only_sh_blocks_of_the_section() -> None:
    doc = (
        "# T\n## A\n```sh\necho a\n```\n```text\nout\n```\n"
        "### A.1\n```sh\necho b\n```\n## B\n```sh\necho c\n```\n"
    )
    assert sh_blocks(section(doc, "## A")) == ["echo a\n", "echo b\n"]
    assert sh_blocks(section(doc, "### A.1")) == ["echo b\n"]


def test_the_guides_reach_a_cross_city_call_and_an_offline_audit(tmp_path: Path) -> None:
    script = tmp_path / "guide.sh"
    script.write_text(guide_script())
    work = tmp_path / "tutorial"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECNODE_", "CENTRAL_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update({name: str(free_port()) for name in PORT_VARIABLES})
    proc = subprocess.Popen(
        ["bash", str(script)],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=420)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"the guide did not finish in 420 s:\n{output}\n{_logs(work)}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the daemons the guide left running
    assert proc.returncode == 0, f"the guide failed:\n{output}\n{_logs(work)}"
    # the cross-city call: Takamatsu's portal read Aizu's resident register through both nodes
    assert '"name": "Aizu Taro"' in output, output
    # the auditor verified Aizu's archives with only the registry's export and anchor
    verdict = re.search(r"^OK: (\d+) records, (\d+) batches verified(;.*)?$", output, re.MULTILINE)
    assert verdict and int(verdict[1]) >= 2 and int(verdict[2]) >= 1, output
    assert re.search(r"^trust: .* from global configuration version\(s\) \d", output, re.M)


def _logs(work: Path) -> str:
    parts = []
    for log in sorted((work / "logs").glob("*.log")) if (work / "logs").is_dir() else []:
        parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
    return "\n".join(parts)
