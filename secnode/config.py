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

import tomli_w

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
    max_body_bytes: int = 100 * 1024 * 1024
    max_parse_bytes: int = 10 * 1024 * 1024


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
class LimitsSection:
    """Memory the node's message bodies may take (docs/operations.md, "Memory budget")."""

    in_flight_bytes: int = 64 * 1024 * 1024  # body bytes held in memory at once, per process
    spool_bytes: int = 1024 * 1024 * 1024  # body bytes spooled to disk at once, per process
    busy_wait_seconds: int = 5  # how long a request waits for room before Busy (0: at once)


@dataclass
class PolicySection:
    records_retention_years: int = 3
    report_suppression_threshold: int = 5
    report_publisher: str = ""  # the city's name on the published report (empty: registry name)
    report_contact: str = ""  # the office to ask, printed on the published report


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
    limits: LimitsSection = field(default_factory=LimitsSection)

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
    if config.limits.in_flight_bytes <= 0:
        raise ConfigError("[limits] in_flight_bytes must be positive")
    if config.limits.spool_bytes <= 0:
        raise ConfigError("[limits] spool_bytes must be positive")
    if config.limits.busy_wait_seconds < 0:
        raise ConfigError("[limits] busy_wait_seconds must not be negative")
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


#: The comment written after each setting by :func:`render_config` (``secnode init``).
_COMMENTS: dict[str, dict[str, str]] = {
    "node": {
        "": "",
        "member": "the member (organisation) that owns this node",
        "server_code": "this node's code; node id = member/server_code",
    },
    "central": {
        "": "",
        "url": "central registry base URL (serves /globalconf)",
        "anchor": "configuration anchor (handed over out of band)",
        "refresh_interval": "seconds between global configuration fetches",
    },
    "database": {
        "": "",
        "url": "empty: sqlite file secnode.db here; any SQLAlchemy URL",
    },
    "client": {
        "": "interface for the member's own information systems",
        "tls_cert": "set cert+key to serve HTTPS to information systems",
        "tls_client_ca": "CA file: require client certificates from it",
        "max_body_bytes": "larger requests/responses are refused (streamed, spooled to disk)",
        "max_parse_bytes": "largest body parsed in memory (SOAP, policy field filtering)",
    },
    "server": {
        "": "mutual-TLS interface for other nodes",
        "address": "host:port other nodes use (registered centrally)",
        "replay_window": "seconds an id is remembered (at least the OCSP freshness)",
    },
    "admin": {
        "": "/health and /metrics (and the web console when tls_cert is set)",
        "tls_cert": "set cert+key: the admin listener serves HTTPS and the web console",
    },
    "disclosure": {
        "": "residents' page of who received their data (HTTPS only)",
        "port": "0: no disclosure page",
        "tls_cert": "required when port is set",
    },
    "ocsp": {
        "": "",
        "fetch_interval": "0: the global configuration's ocsp_fetch_interval",
        "retry_min": "back-off when a responder is down (seconds)",
    },
    "messagelog": {
        "": "",
        "bodies": "keep message bodies in the log (digests always kept)",
        "retention_days": "archived rows are removed from the database after this",
        "enabled": "false: nothing is logged (benchmarks only; not X-Road-like)",
        "timestamping_interval": "seconds; 0: the global configuration's value",
        "archive_interval": "seconds between archive runs while serving; 0: only by CLI",
        "database": "empty: messagelog.db here (SQLite) or the node's database",
    },
    "policy": {
        "": "",
        "records_retention_years": "APPI Art. 29/30 records",
        "report_publisher": "city name on the published report (empty: the registry's name)",
        "report_contact": "office to ask, e.g. 総務課 個人情報保護担当 0000-00-0000",
    },
    "limits": {
        "": "room for message bodies in flight (client and node interfaces share it)",
        "in_flight_bytes": "body bytes in memory at once; more waits, then Busy",
        "spool_bytes": "body bytes spooled to disk at once (bodies over 256 KiB)",
        "busy_wait_seconds": "how long a request waits for room; 0: refuse at once",
    },
}


def render_config(config: NodeConfig) -> str:
    """``secnode.toml`` for ``config``: every setting, each with its comment.

    Values are written by ``tomli_w`` (a quote or backslash in a URL stays valid
    TOML); the text is parsed back before it is returned, so a file this writes
    always loads.
    """
    lines = ["# secnode node configuration. Every setting is shown with its value.", ""]
    for section_field in fields(config):
        name = section_field.name
        section = getattr(config, name)
        comments = _COMMENTS.get(name, {})
        header = f"[{name}]"
        if comments.get(""):
            header = f"{header:<32}# {comments['']}"
        lines.append(header)
        for item in fields(section):
            line = tomli_w.dumps({item.name: getattr(section, item.name)}).strip()
            comment = comments.get(item.name)
            lines.append(f"{line:<31} # {comment}" if comment else line)
        lines.append("")
    text = "\n".join(lines)
    parse_config(text)
    return text
