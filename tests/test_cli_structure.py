"""The three CLIs' shape: every command reachable from its root group, ``--help`` everywhere,
and the one error mapper (a SecnodeError is one line with its exit code; a bug keeps its
traceback)."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import secnode.cli.commands
from central.cli import main as central_main
from certs.cli import main as certs_main
from certs.cliutil import ErrorMappingGroup
from certs.errors import SecnodeError
from secnode.cli import main as secnode_main
from tests.conftest import TestCA, cli_env

ROOTS = {"secnode": secnode_main, "certs": certs_main, "central": central_main}


def walk(
    command: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command below ``command`` with the argv path that reaches it."""
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from walk(sub, (*path, name))


def test_every_command_module_command_is_reachable_from_the_root() -> None:
    reachable = {id(c) for _, c in walk(secnode_main)}
    defined: list[str] = []
    for info in pkgutil.iter_modules(secnode.cli.commands.__path__):
        module = importlib.import_module(f"secnode.cli.commands.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, click.Command) and (
                getattr(value.callback, "__module__", None) == module.__name__
            ):
                defined.append(f"{info.name}.{name}")
                assert id(value) in reachable, f"{info.name}.{name} is not attached to 'secnode'"
    assert len(defined) >= 60, defined  # the walk found the commands at all


def test_the_command_tree_is_the_documented_one() -> None:
    top = set(secnode_main.commands)
    assert top == {
        "init",
        "keys",
        "certs",
        "subsystem",
        "register",
        "status",
        "sync",
        "serve",
        "db",
        "backup",
        "restore",
        "service",
        "acl",
        "client",
        "log",
        "policy",
        "agreement",
        "consent",
        "stop-request",
        "records",
        "report",
        "admin",
        "demo",
    }
    service = secnode_main.commands["service"]
    assert isinstance(service, click.Group)
    assert set(service.commands) == {"add", "list", "remove", "classify", "wsdl", "tls"}


@pytest.mark.parametrize("tool", sorted(ROOTS))
def test_help_works_for_every_command(tool: str) -> None:
    runner = CliRunner()
    paths = [path for path, _ in walk(ROOTS[tool])]
    assert len(paths) > 5
    for path in paths:
        result = runner.invoke(ROOTS[tool], [*path, "--help"])
        assert result.exit_code == 0, (tool, path, result.output)
        assert "Usage:" in result.output, (tool, path)


@pytest.mark.parametrize("tool", sorted(ROOTS))
def test_every_root_is_the_error_mapper(tool: str) -> None:
    assert isinstance(ROOTS[tool], ErrorMappingGroup)


# ----- the mapper on the real CLIs ----------------------------------------------------------
def test_secnode_refusal_is_one_line_with_exit_1(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "secnode", "status", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "is not a node directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_certs_refusal_is_one_line_with_exit_1(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    key.write_text("occupied")
    result = CliRunner().invoke(certs_main, ["key", "new", "--out", str(key)])
    assert result.exit_code == 1
    assert result.stderr == f"error: {key} exists; refusing to overwrite a key\n"


def test_central_refusal_is_one_line_with_exit_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(central_main, ["member", "list", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "is not a central registry directory" in result.stderr


def test_a_bad_identifier_is_a_refusal_not_a_crash(tmp_path: Path) -> None:
    """IdentifierError is a SecnodeError (and still a ValueError): one line, not a traceback."""
    result = CliRunner().invoke(
        secnode_main,
        [
            "init",
            str(tmp_path / "n"),
            "--member",
            "JP",
            "--server-code",
            "ss1",
            "--central",
            "http://127.0.0.1:1",
            "--anchor",
            __file__,
        ],
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.output


def test_an_anchor_that_is_no_certificate_is_a_refusal(tmp_path: Path) -> None:
    """CAError from the anchor check was not mapped by the node CLI: it crashed with a traceback."""
    not_a_cert = tmp_path / "anchor.pem"
    not_a_cert.write_text("not a certificate")
    result = CliRunner().invoke(
        secnode_main,
        [
            "init",
            str(tmp_path / "n"),
            "--member",
            "JP/GOV/072028",
            "--server-code",
            "ss1",
            "--central",
            "http://127.0.0.1:1",
            "--anchor",
            str(not_a_cert),
        ],
    )
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"error: {not_a_cert} is not an X.509 certificate")
    assert result.stderr.count("\n") == 1


def test_an_openapi_file_that_is_not_text_is_a_refusal(tmp_path: Path, test_ca: TestCA) -> None:
    node_dir = tmp_path / "node"
    runner = CliRunner()
    made = runner.invoke(
        secnode_main,
        [
            "init",
            str(node_dir),
            "--member",
            "JP/GOV/072028",
            "--server-code",
            "ss1",
            "--central",
            "http://127.0.0.1:1",
            "--anchor",
            str(test_ca.cert_path),
        ],
    )
    assert made.exit_code == 0, made.output
    binary = tmp_path / "openapi.bin"
    binary.write_bytes(b"\xff\xfe\x00 not utf-8")
    result = runner.invoke(
        secnode_main,
        [
            "service",
            "add",
            "residents",
            "residents",
            "--url",
            "http://127.0.0.1:1",
            "--type",
            "rest",
            "--openapi",
            str(binary),
            "--dir",
            str(node_dir),
        ],
    )
    assert result.exit_code == 1, result.output
    assert result.stderr == f"error: {binary}: an OpenAPI description must be UTF-8 text\n"
    listed = runner.invoke(secnode_main, ["service", "list", "--json", "--dir", str(node_dir)])
    assert listed.exit_code == 0 and listed.stdout.strip() == "[]"


# ----- the mapper itself ----------------------------------------------------------------------
class Refused(SecnodeError):
    exit_code = 3


@click.group(cls=ErrorMappingGroup)
def toy() -> None:
    """A root group with one refusing and one buggy command."""


@toy.group("sub")
def toy_sub() -> None:
    """A nested group: the mapper at the root still catches what its commands raise."""


@toy_sub.command("refuse")
def toy_refuse() -> None:
    raise Refused("the thing is not there; run 'toy make' first")


@toy.command("bug")
def toy_bug() -> None:
    raise ValueError("an internal invariant broke")


def test_mapper_prints_one_line_and_uses_the_errors_exit_code() -> None:
    result = CliRunner().invoke(toy, ["sub", "refuse"])
    assert result.exit_code == 3
    assert result.stderr == "error: the thing is not there; run 'toy make' first\n"
    assert result.stdout == ""


def test_mapper_lets_a_bug_through_with_its_traceback() -> None:
    result = CliRunner().invoke(toy, ["bug"])
    assert isinstance(result.exception, ValueError)
    assert "error:" not in result.output
    # In a real process the interpreter prints the traceback: run the same group there.
    code = (
        "import click\nfrom certs.cliutil import ErrorMappingGroup\n"
        "@click.group(cls=ErrorMappingGroup)\ndef g():\n    pass\n"
        "@g.command()\ndef bug():\n    raise ValueError('an internal invariant broke')\n"
        "g(['bug'])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert "ValueError: an internal invariant broke" in proc.stderr
    assert "error:" not in proc.stderr
