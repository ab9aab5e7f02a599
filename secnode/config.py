"""The node's ``secnode.toml``: one documented file, every setting with a default.

Loading is strict: unknown sections or keys are refused (a typo must not
silently fall back to a default in a security component).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from certs.errors import SecnodeError
from secnode.core.identifiers import MemberId, NodeId

CONFIG_FILE = "secnode.toml"
DIR_ENV = "SECNODE_DIR"


class ConfigError(SecnodeError):
    """The node directory or its configuration is unusable; the message says why."""


@dataclass
class NodeSection:
    member: str = ""
    server_code: str = ""


@dataclass
class CentralSection:
    url: str = ""
    anchor: str = "globalconf/anchor.pem"
    refresh_interval: int = 60


@dataclass
class DatabaseSection:
    url: str = ""  # empty: sqlite file secnode.db in the node directory


@dataclass
class ClientSection:
    host: str = "127.0.0.1"
    port: int = 8080
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    max_body_bytes: int = 10 * 1024 * 1024


@dataclass
class ServerSection:
    host: str = "0.0.0.0"
    port: int = 5500
    address: str = ""  # host:port other nodes use to reach this one (registered centrally)
    replay_window: int = 600


@dataclass
class AdminSection:
    host: str = "127.0.0.1"
    port: int = 5588
    tls_cert: str = ""  # set cert+key: the admin listener serves HTTPS and the web console
    tls_key: str = ""


@dataclass
class DisclosureSection:
    """The resident disclosure page (APPI Art. 33(5)); its own listener, off by default."""

    host: str = "0.0.0.0"
    port: int = 0  # 0: no disclosure page
    tls_cert: str = ""  # required when port is set: the page is served over HTTPS only
    tls_key: str = ""


@dataclass
class OcspSection:
    fetch_interval: int = 0  # 0: use the global configuration's value
    retry_min: int = 5
    retry_max: int = 300


@dataclass
class MessageLogSection:
    bodies: bool = True
    timestamp_batch_size: int = 10000
    archive_dir: str = "archive"
    retention_days: int = 30
    # message log: on/off, and local overrides of the schedule
    enabled: bool = True
    timestamping_interval: int = 0  # 0: the global configuration's timestamping_interval
    archive_interval: int = 3600  # seconds between archive runs in 'secnode serve'; 0: never
    database: str = ""  # empty: messagelog.db beside a SQLite node database, else the node's


@dataclass
class PolicySection:
    records_retention_years: int = 3
    report_suppression_threshold: int = 5


@dataclass
class NodeConfig:
    node: NodeSection = field(default_factory=NodeSection)
    central: CentralSection = field(default_factory=CentralSection)
    database: DatabaseSection = field(default_factory=DatabaseSection)
    client: ClientSection = field(default_factory=ClientSection)
    server: ServerSection = field(default_factory=ServerSection)
    admin: AdminSection = field(default_factory=AdminSection)
    disclosure: DisclosureSection = field(default_factory=DisclosureSection)
    ocsp: OcspSection = field(default_factory=OcspSection)
    messagelog: MessageLogSection = field(default_factory=MessageLogSection)
    policy: PolicySection = field(default_factory=PolicySection)

    @property
    def member_id(self) -> MemberId:
        return MemberId.parse(self.node.member)

    @property
    def node_id(self) -> NodeId:
        return NodeId.of(self.member_id, self.node.server_code)


def _apply(section: Any, values: dict[str, Any], name: str) -> None:
    known = {f.name: f for f in fields(section)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown setting [{name}] {key}")
        default = getattr(section, key)
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"[{name}] {key} must be true or false")
        if (
            isinstance(default, int)
            and not isinstance(default, bool)
            and (not isinstance(value, int) or isinstance(value, bool))
        ):
            raise ConfigError(f"[{name}] {key} must be an integer")
        if isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"[{name}] {key} must be a string")
        setattr(section, key, value)


def parse_config(text: str) -> NodeConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{CONFIG_FILE} is not valid TOML: {exc}") from exc
    config = NodeConfig()
    sections = {f.name for f in fields(config)}
    for name, values in data.items():
        if name not in sections or not isinstance(values, dict):
            raise ConfigError(f"unknown section [{name}] in {CONFIG_FILE}")
        _apply(getattr(config, name), values, name)
    try:
        config.node_id  # noqa: B018 - validates member and server code
    except ValueError as exc:
        raise ConfigError(f"[node] in {CONFIG_FILE}: {exc}") from exc
    return config


@dataclass
class NodeDir:
    """A node directory and its loaded configuration."""

    path: Path
    config: NodeConfig

    @classmethod
    def open(cls, path: str | Path | None = None) -> NodeDir:
        base = Path(path or os.environ.get(DIR_ENV) or ".").resolve()
        config_path = base / CONFIG_FILE
        if not config_path.exists():
            raise ConfigError(
                f"{base} is not a node directory (no {CONFIG_FILE}); "
                "run 'secnode init' or pass --dir"
            )
        return cls(base, parse_config(config_path.read_text()))

    @property
    def db_url(self) -> str:
        return self.config.database.url or f"sqlite:///{self.path / 'secnode.db'}"

    @property
    def anchor_path(self) -> Path:
        return self.path / self.config.central.anchor

    def key_path(self, usage: str) -> Path:
        return self.path / "keys" / f"{usage}.key"

    def csr_path(self, usage: str) -> Path:
        return self.path / "keys" / f"{usage}.csr"

    @property
    def globalconf_dir(self) -> Path:
        return self.path / "globalconf"


def render_config(
    member: str,
    server_code: str,
    central_url: str,
    db_url: str,
    client_port: int = 8080,
    server_port: int = 5500,
    admin_port: int = 5588,
    address: str = "",
) -> str:
    """The documented default ``secnode.toml`` written by ``secnode init``."""
    return f'''# secnode node configuration. Every setting is shown with its default.

[node]
member = "{member}"            # the member (organisation) that owns this node
server_code = "{server_code}"  # this node's code; node id = member/server_code

[central]
url = "{central_url}"          # central registry base URL (serves /globalconf)
anchor = "globalconf/anchor.pem" # configuration anchor (handed over out of band)
refresh_interval = 60           # seconds between global configuration fetches

[database]
url = "{db_url}"                # empty: sqlite file secnode.db here; any SQLAlchemy URL

[client]                        # interface for the member's own information systems
host = "127.0.0.1"
port = {client_port}
tls_cert = ""                   # set cert+key to serve HTTPS to information systems
tls_key = ""
tls_client_ca = ""              # CA file: require client certificates from it
max_body_bytes = 10485760       # larger requests/responses are refused

[server]                        # mutual-TLS interface for other nodes
host = "0.0.0.0"
port = {server_port}
address = "{address}"           # host:port other nodes use (registered centrally)
replay_window = 600             # seconds an id is remembered (at least the OCSP freshness)

[admin]                         # /health and /metrics
host = "127.0.0.1"
port = {admin_port}
tls_cert = ""                   # set cert+key to serve HTTPS and the web console (/console/)
tls_key = ""

[disclosure]                    # residents' page of who received their data (HTTPS only)
host = "0.0.0.0"
port = 0                        # 0: off
tls_cert = ""
tls_key = ""

[ocsp]
fetch_interval = 0              # 0: the global configuration's ocsp_fetch_interval
retry_min = 5                   # back-off when a responder is down (seconds)
retry_max = 300

[messagelog]
bodies = true                   # keep message bodies in the log (digests always kept)
timestamp_batch_size = 10000
archive_dir = "archive"
retention_days = 30             # archived rows are removed from the database after this
enabled = true                  # false: nothing is logged (benchmarks only; not X-Road-like)
timestamping_interval = 0       # seconds; 0: the global configuration's value
archive_interval = 3600         # seconds between archive runs while serving; 0: only by CLI
database = ""                   # empty: messagelog.db here (SQLite) or the node's database

[policy]
records_retention_years = 3     # APPI Art. 29/30 records
report_suppression_threshold = 5
'''
