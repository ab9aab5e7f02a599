"""The operator CLIs run in-process through click: the same code as ``python -m TOOL``
minus ~0.8 s of interpreter start-up per command, which keeps a registered two-node
federation at a few seconds. Servers stay real subprocesses."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

import click
from click.testing import CliRunner

from secnode.demo.node import CliResult
from tests.support.common import PASSPHRASE

__all__ = ["CliResult", "StepFailed", "cli_command", "in_process", "invoke"]


def cli_command(tool: str) -> click.Command:
    """The click command behind ``certs`` / ``central`` / ``secnode`` (for in-process runs)."""
    if tool == "certs":
        from certs.cli import main as certs_main

        return certs_main
    if tool == "central":
        from central.cli import main as central_main

        return central_main
    from secnode.cli import main as secnode_main

    return secnode_main


class StepFailed(AssertionError):
    """An operator command of the set-up failed; the message has its output."""


def in_process(tool: str, argv: Sequence[str], check: bool) -> CliResult:
    """A :data:`secnode.demo.node.Runner`: ``tool ARGV`` through click, in this process."""
    env = {"SECNODE_PASSPHRASE": PASSPHRASE.decode(), "SECNODE_DIR": None, "CENTRAL_DIR": None}
    result = CliRunner().invoke(cli_command(tool), list(argv), env=env, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise StepFailed(
            f"{tool} {shlex.join(argv)} crashed: {result.exception!r}\n{result.output}"
        ) from result.exception
    out = CliResult(result.exit_code, result.stdout, result.stderr)
    if check and out.exit_code != 0:
        raise StepFailed(f"{tool} {shlex.join(argv)} failed ({out.exit_code}):\n{out.output}")
    return out


def invoke(tool: str, *args: str | Path, check: bool = True) -> CliResult:
    """Run ``certs``/``central``/``secnode`` ARGS in-process; raise :class:`StepFailed` on error."""
    return in_process(tool, [str(a) for a in args], check)
