"""The registry directory made by ``central init``: ``central.toml`` and where things live.

Secrets never go into ``central.toml``: the signing key passphrase comes from
``--passphrase-file`` or ``$SECNODE_PASSPHRASE``, and a PostgreSQL password from
libpq's own sources (``PGPASSWORD``, ``~/.pgpass``).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from central.errors import RegistryError
from secnode.core.identifiers import IdentifierError, validate_part

CONFIG_FILE = "central.toml"
DB_FILE = "central.db"
ANCHOR_FILE = "anchor.pem"
NEXT_ANCHOR_FILE = "anchor-next.pem"
DIR_ENV = "CENTRAL_DIR"
_KEYS = {"instance", "database_url"}


@dataclass(frozen=True)
class CentralConfig:
    directory: Path
    instance: str
    database_url: str = ""  # empty: SQLite file DIR/central.db

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.directory / DB_FILE).resolve()}"

    @property
    def anchor_path(self) -> Path:
        return self.directory / ANCHOR_FILE

    @property
    def next_anchor_path(self) -> Path:
        return self.directory / NEXT_ANCHOR_FILE

    def key_path(self, name: str) -> Path:
        return self.directory / name


def check_instance(code: str) -> str:
    try:
        return validate_part(code, "instance code")
    except IdentifierError as exc:
        raise RegistryError(str(exc)) from exc


def create(directory: Path, instance: str, database_url: str | None) -> CentralConfig:
    """Make ``directory`` and write ``central.toml``; refuses to reuse an initialised one."""
    check_instance(instance)
    if (directory / CONFIG_FILE).exists():
        raise RegistryError(f"{directory} already holds a registry ({CONFIG_FILE}); refusing")
    directory.mkdir(parents=True, exist_ok=True)
    config = CentralConfig(directory, instance, database_url or "")
    data = {"instance": instance, "database_url": config.database_url}
    (directory / CONFIG_FILE).write_text(
        "# central registry configuration (secrets never go here)\n" + tomli_w.dumps(data)
    )
    return config


def resolve_dir(option: str | None) -> Path:
    """``--dir``, else ``$CENTRAL_DIR``, else the current directory (design: CLI contract)."""
    return Path(option or os.environ.get(DIR_ENV) or ".")


def load(directory: Path) -> CentralConfig:
    path = directory / CONFIG_FILE
    try:
        raw = path.read_text()
    except FileNotFoundError as exc:
        raise RegistryError(
            f"{directory} is not a central registry directory (no {CONFIG_FILE}); "
            "run 'central init DIR' or give --dir / $CENTRAL_DIR"
        ) from exc
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{path}: {exc}") from exc
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise RegistryError(f"{path}: unknown key(s) {', '.join(unknown)}")
    instance = data.get("instance")
    if not isinstance(instance, str):
        raise RegistryError(f"{path}: 'instance' must be a string")
    url = data.get("database_url", "")
    if not isinstance(url, str):
        raise RegistryError(f"{path}: 'database_url' must be a string")
    return CentralConfig(directory, check_instance(instance), url)
