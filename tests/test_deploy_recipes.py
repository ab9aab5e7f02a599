"""The server recipes in ``docs/deploy/`` stay true without building anything.

The systemd units pass ``systemd-analyze verify`` (where it is installed) with this
checkout's binaries in place of ``/opt/secnode/bin``; every command line in the units
and the Containerfile names a real command with options it has; and both keep the
rules the README states: a non-root user, a read-only system, all state under
``/var/lib/secnode``.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest

from tests.support.cli import cli_command

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "docs" / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
STATE = "/var/lib/secnode"
INSTALL_BIN = "/opt/secnode/bin/"


def unit_entries(path: Path) -> dict[str, list[tuple[str, str]]]:
    """``{section: [(key, value), ...]}`` (keys may repeat, as systemd allows)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
            continue
        key, _, value = line.partition("=")
        sections[current].append((key.strip(), value.strip()))
    return sections


def values(path: Path, section: str, key: str) -> list[str]:
    return [v for k, v in unit_entries(path).get(section, []) if k == key]


def check_command_line(argv: list[str]) -> None:
    """``argv`` runs one of this project's commands, with options and arguments it has."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    program = argv[0].removeprefix(INSTALL_BIN)
    assert program in scripts, f"{argv[0]} is not one of the project's commands"
    command: click.Command = cli_command(program)
    rest = argv[1:]
    while isinstance(command, click.Group) and rest and rest[0] in command.commands:
        command = command.commands[rest.pop(0)]
    assert not isinstance(command, click.Group), f"{shlex.join(argv)} names a group"
    options = {o for p in command.params if isinstance(p, click.Option) for o in p.opts}
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    positional = 0
    flags = {o for p in command.params if isinstance(p, click.Option) and p.is_flag for o in p.opts}
    i = 0
    while i < len(rest):
        token = rest[i]
        if token.startswith("--"):
            assert token in options, f"{shlex.join(argv)}: no option {token}"
            i += 1 if token in flags else 2
        else:
            positional += 1
            i += 1
    assert positional <= len(arguments), f"{shlex.join(argv)}: too many arguments"
    required = sum(1 for a in arguments if a.required)
    assert positional >= required, f"{shlex.join(argv)}: missing arguments"


def exec_lines(path: Path) -> list[list[str]]:
    out = []
    for key in ("ExecStartPre", "ExecStart"):
        for value in values(path, "Service", key):
            out.append(shlex.split(value.replace("${CREDENTIALS_DIRECTORY}", "/run/credentials")))
    return out


def test_there_are_units_for_the_four_daemons() -> None:
    names = {p.name for p in UNITS}
    assert names == {
        "secnode.service",
        "secnode-central.service",
        "certs-ocsp.service",
        "certs-tsa.service",
    }


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_runs_unprivileged_on_a_read_only_system(unit: Path) -> None:
    assert values(unit, "Service", "User") == ["secnode"]
    assert values(unit, "Service", "ProtectSystem") == ["strict"]
    assert values(unit, "Service", "NoNewPrivileges") == ["yes"]
    assert values(unit, "Service", "StateDirectory") == ["secnode"]
    assert values(unit, "Service", "CapabilityBoundingSet") == [""]
    for env in values(unit, "Service", "Environment"):
        _, _, where = env.partition("=")
        assert where.startswith(STATE + "/"), env
    for argv in exec_lines(unit):
        for token in argv:
            if token.startswith("/var/"):
                assert token.startswith(STATE + "/"), f"{unit.name}: {token} outside the state"
        if "--passphrase-file" in argv:  # the credential systemd hands over, never a literal
            assert argv[argv.index("--passphrase-file") + 1].startswith("/run/credentials/")
    assert "PASSPHRASE" not in unit.read_text()


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_commands_are_real(unit: Path) -> None:
    lines = exec_lines(unit)
    assert lines and all(argv[0].startswith(INSTALL_BIN) for argv in lines)
    for argv in lines:
        check_command_line(argv)


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_analyze_verify(unit: Path, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace(INSTALL_BIN, f"{Path(sys.executable).parent}/"))
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    # unknown keys and bad values are warnings with exit 0: there must be none
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stderr


def containerfile() -> list[tuple[str, str]]:
    """The Containerfile's instructions as (INSTRUCTION, arguments), continuations joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Containerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_container_recipe_runs_unprivileged_with_one_volume() -> None:
    steps = containerfile()
    kinds = [k for k, _ in steps]
    assert kinds[0] == "FROM" and steps[0][1].startswith("python:3.1")
    users = [v for k, v in steps if k == "USER"]
    assert users == ["secnode"]
    assert kinds.index("USER") < kinds.index("CMD")
    assert [json.loads(v) for k, v in steps if k == "VOLUME"] == [[STATE]]
    env = " ".join(v for k, v in steps if k == "ENV")
    for name in ("SECNODE_DIR", "CENTRAL_DIR"):
        found = re.search(rf"{name}=(\S+)", env)
        assert found and found[1].startswith(STATE + "/"), env
    assert "HEALTHCHECK" not in kinds  # one image, four daemons: the node's check is per run


def test_container_recipe_copies_what_exists_and_installs_the_postgres_extra() -> None:
    steps = containerfile()
    for kind, args in steps:
        if kind == "COPY":
            *sources, _dest = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    installs = [a for k, a in steps if k == "RUN" and "pip install" in a]
    assert installs and "[postgres]" in installs[0] and "postgres" in extras
    cmd = json.loads(next(a for k, a in steps if k == "CMD"))
    check_command_line(cmd)
