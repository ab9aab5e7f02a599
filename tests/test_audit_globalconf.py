"""``secnode log verify --globalconf`` takes what the registry publishes.

The full offline audit (archives + ``central conf export`` + the anchor, nothing from
the node) runs in ``tests/test_docs_guide.py``; here the trust loading alone: an export
directory, several exports side by side, and refusals that say which copy failed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from secnode.messagelog.anchors import AnchorError, load_trust
from tests.support.cli import invoke


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("registry")
    invoke("certs", "ca", "init", base / "ca", "--name", "Audit CA")
    invoke("central", "init", base / "central", "--instance", "JP")
    invoke("central", "ca", "add", base / "ca" / "ca.pem", "--dir", base / "central")
    invoke("central", "conf", "publish", "--dir", base / "central")
    invoke("central", "conf", "publish", "--dir", base / "central")
    for version in ("1", "2"):
        out = base / "exports" / f"v{version}-export"
        invoke(
            "central",
            "conf",
            "export",
            "--out-dir",
            out,
            "--version",
            version,
            "--dir",
            base / "central",
        )
    return base


def test_an_export_directory_gives_the_approved_cas(registry: Path) -> None:
    anchor = registry / "central" / "anchor.pem"
    trust = load_trust(anchor, registry / "exports" / "v2-export")
    assert [c.version for c in trust.confs] == [2]
    assert len(trust.ca_certs) == 1
    assert "from global configuration version(s) 2" in trust.describe()


def test_several_exports_side_by_side(registry: Path) -> None:
    trust = load_trust(registry / "central" / "anchor.pem", registry / "exports")
    assert [c.version for c in trust.confs] == [1, 2]


def test_a_copy_the_anchor_does_not_verify_is_named(registry: Path, tmp_path: Path) -> None:
    invoke("central", "init", tmp_path / "other", "--instance", "JP")
    with pytest.raises(AnchorError, match=r"^no CA certificate to trust: none in ") as refused:
        load_trust(tmp_path / "other" / "anchor.pem", registry / "exports" / "v1-export")
    assert "not verified by the anchor" in str(refused.value)
    assert "v1-export" in str(refused.value)


def test_a_directory_without_a_configuration_says_what_to_give(
    registry: Path, tmp_path: Path
) -> None:
    with pytest.raises(AnchorError, match=r"^no CA certificate to trust: none in ") as refused:
        load_trust(registry / "central" / "anchor.pem", tmp_path)
    assert "central conf export --out-dir DIR" in str(refused.value)
