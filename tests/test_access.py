"""The message path's two access rules (secnode.proxy.access) on real registry data.

The global configuration is the one a real registry publishes (members,
subsystems, a global group), verified as a node verifies it; the service
entries are what the node's service table holds for a service and its grants.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from central.cli import main as central_main
from secnode.app.runtime import ServiceEntry
from secnode.core import globalconf as gc
from secnode.core.identifiers import MemberId, ServiceId, SubsystemId
from secnode.proxy.access import caller_allowed, client_granted

AIZU = "JP/GOV/072028"
KAKO = "JP/GOV/282103"
TOTTORI = "JP/GOV/312011"
TAX = ServiceId.parse(f"{KAKO}/tax/getTax")


def central(directory: Path, *args: str) -> None:
    result = CliRunner().invoke(
        central_main,
        [*args, "--dir", str(directory)],
        env={"SECNODE_PASSPHRASE": "test-passphrase"},
    )
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def conf(tmp_path_factory: pytest.TempPathFactory) -> gc.GlobalConf:
    """Three cities; Aizu's residents subsystem and Tottori are in 'municipalities'."""
    tmp = tmp_path_factory.mktemp("registry")
    directory = tmp / "reg"
    result = CliRunner().invoke(
        central_main,
        ["init", str(directory), "--instance", "JP"],
        env={"SECNODE_PASSPHRASE": "test-passphrase"},
    )
    assert result.exit_code == 0, result.output
    for member, name in ((AIZU, "Aizu"), (KAKO, "Kakogawa"), (TOTTORI, "Tottori")):
        central(directory, "member", "add", member, "--name", name)
    for sub in (f"{AIZU}/residents", f"{AIZU}/records", f"{KAKO}/tax"):
        central(directory, "subsystem", "add", sub)
    central(directory, "group", "add", "municipalities", "--description", "Cities")
    central(directory, "group", "add-member", "municipalities", f"{AIZU}/residents")
    central(directory, "group", "add-member", "municipalities", TOTTORI)
    central(directory, "conf", "publish")
    central(directory, "conf", "export", "--out-dir", str(tmp / "v1"))
    anchors = gc.load_pem_certs((directory / "anchor.pem").read_bytes())
    return gc.verify(
        (tmp / "v1/conf.json").read_bytes(), (tmp / "v1/conf.sig").read_bytes(), anchors
    )


def entry(*grants: str) -> ServiceEntry:
    return ServiceEntry(
        1, TAX, "rest", "http://127.0.0.1:9/tax", 30.0, None, None, frozenset(grants)
    )


def test_a_direct_grant_names_the_client_itself(conf: gc.GlobalConf) -> None:
    tax = entry(f"{AIZU}/records")
    assert client_granted(tax, SubsystemId.parse(f"{AIZU}/records"), conf)
    # A grant to a subsystem is not one to its member or to the member's other subsystems.
    assert not client_granted(tax, MemberId.parse(AIZU), conf)
    assert not client_granted(tax, SubsystemId.parse(f"{AIZU}/residents"), conf)


def test_a_group_grant_covers_the_group_members_of_the_published_configuration(
    conf: gc.GlobalConf,
) -> None:
    tax = entry("group:municipalities")
    assert client_granted(tax, SubsystemId.parse(f"{AIZU}/residents"), conf)
    assert client_granted(tax, MemberId.parse(TOTTORI), conf)
    # Membership is exact: the other subsystem of a member in the group is not in it.
    assert not client_granted(tax, SubsystemId.parse(f"{AIZU}/records"), conf)
    assert not client_granted(tax, MemberId.parse(KAKO), conf)


def test_without_a_configuration_only_direct_grants_count(conf: gc.GlobalConf) -> None:
    both = entry("group:municipalities", f"{KAKO}/tax")
    assert not client_granted(both, MemberId.parse(TOTTORI), None)
    assert client_granted(both, SubsystemId.parse(f"{KAKO}/tax"), None)


def test_no_grant_is_no_access(conf: gc.GlobalConf) -> None:
    assert not client_granted(entry(), SubsystemId.parse(f"{AIZU}/residents"), conf)
    assert not client_granted(entry("group:unknown"), MemberId.parse(TOTTORI), conf)


CERT = "ab" * 32


@pytest.mark.parametrize(
    ("rules", "remote", "peer", "allowed"),
    [
        ([], "127.0.0.1", None, False),  # no rule: nobody may act as the subsystem
        ([("any", "*")], "192.0.2.7", None, True),
        ([("address", "127.0.0.1")], "127.0.0.1", None, True),
        ([("address", "127.0.0.1")], "127.0.0.2", CERT, False),
        ([("cert", CERT)], "192.0.2.7", CERT, True),
        ([("cert", CERT)], "192.0.2.7", None, False),  # plain HTTP: no certificate to match
        ([("cert", CERT)], "192.0.2.7", "cd" * 32, False),
        ([("address", "10.0.0.1"), ("cert", CERT)], "192.0.2.7", CERT, True),
    ],
)
def test_caller_rules(
    rules: list[tuple[str, str]], remote: str, peer: str | None, allowed: bool
) -> None:
    assert caller_allowed(rules, remote, peer) is allowed
