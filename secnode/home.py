"""The node directory's lifecycle: init, keys and CSRs, database access."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from certs import keys
from certs.ca import load_certificate
from secnode.config import CONFIG_FILE, ConfigError, NodeConfig, NodeDir, render_config
from secnode.core.identifiers import MemberId, NodeId
from secnode.files import atomic_write
from secnode.globalconf import ConfStore
from secnode.store import db, models

USAGES = ("auth", "sign")


@dataclass
class NodeHome:
    """An opened node directory with its database."""

    dir: NodeDir
    engine: Engine
    sessions: sessionmaker[Session]

    @classmethod
    def open(cls, path: str | Path | None = None, migrate: bool = True) -> NodeHome:
        nd = NodeDir.open(path)
        engine = db.make_engine(nd.db_url)
        if migrate:
            db.migrate(engine)
        return cls(nd, engine, db.session_factory(engine))

    @property
    def path(self) -> Path:
        return self.dir.path

    @property
    def member_id(self) -> MemberId:
        return self.dir.config.member_id

    @property
    def node_id(self) -> NodeId:
        return self.dir.config.node_id

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as s, s.begin():
            yield s

    def close(self) -> None:
        self.engine.dispose()

    # ----- state -----------------------------------------------------------------------
    def get_state(self, key: str) -> str | None:
        with self.sessions() as s:
            row = s.get(models.NodeState, key)
            return row.value if row else None

    def set_state(self, key: str, value: str) -> None:
        with self.session() as s:
            row = s.get(models.NodeState, key)
            if row is None:
                s.add(models.NodeState(key=key, value=value))
            else:
                row.value = value
                row.updated_at = models.utcnow()

    # ----- keys ------------------------------------------------------------------------
    def new_key(
        self,
        usage: str,
        passphrase: bytes,
        key_type: str = "ec",
        organization: str | None = None,
        subject: str | None = None,
        renew: bool = False,
    ) -> Path:
        """Create the node's ``usage`` key and write its CSR; returns the CSR path.

        ``renew``: the node already has a key of this usage (still in use until the new
        certificate takes over), so the new one goes to ``keys/<usage>-N.key`` beside it.
        """
        if usage not in USAGES:
            raise ConfigError(f"unknown key usage {usage!r}; use auth or sign")
        key_path, csr_path = self.dir.key_path(usage), self.dir.csr_path(usage)
        if key_path.exists() and renew:
            key_path, csr_path = self.next_key_paths(usage)
        elif key_path.exists():
            raise ConfigError(
                f"{key_path} exists; a node keeps its {usage} key (to renew, 'secnode keys new "
                f"--usage {usage} --renew' makes a second key beside it)"
            )
        name = keys.parse_subject(subject or default_subject(usage, self.node_id, organization))
        key = keys.generate_key(key_type)
        csr = keys.build_csr(key, name)
        keys.write_key(key_path, key, passphrase)
        csr_path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
        return csr_path

    def next_key_paths(self, usage: str) -> tuple[Path, Path]:
        """``keys/<usage>-N.key`` and ``.csr`` for the smallest free N >= 2."""
        n = 2
        while (self.path / "keys" / f"{usage}-{n}.key").exists():
            n += 1
        return self.path / "keys" / f"{usage}-{n}.key", self.path / "keys" / f"{usage}-{n}.csr"

    def key_candidates(self, usage: str) -> list[tuple[Path, bytes]]:
        """Every ``usage`` key with a CSR, as (key path, SubjectPublicKeyInfo from the CSR)."""
        out = []
        csrs = [self.dir.csr_path(usage), *sorted((self.path / "keys").glob(f"{usage}-*.csr"))]
        for csr_path in csrs:
            if csr_path.exists():
                csr = x509.load_pem_x509_csr(csr_path.read_bytes())
                spki = csr.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                out.append((csr_path.with_suffix(".key"), spki))
        return out

    def public_key_for(self, usage: str) -> bytes | None:
        """The SubjectPublicKeyInfo of the node's ``usage`` key, read from its CSR (no secret)."""
        csr_path = self.dir.csr_path(usage)
        if not csr_path.exists():
            return None
        csr = x509.load_pem_x509_csr(csr_path.read_bytes())
        return csr.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def active_certificate(self, usage: str) -> models.NodeCertificate | None:
        with self.sessions() as s:
            return s.scalars(
                select(models.NodeCertificate)
                .where(models.NodeCertificate.usage == usage, models.NodeCertificate.active)
                .order_by(models.NodeCertificate.imported_at.desc())
            ).first()

    def pending_certificate(self, usage: str) -> models.NodeCertificate | None:
        """An imported ``usage`` certificate waiting to be put in use (auth renewal)."""
        with self.sessions() as s:
            return s.scalars(
                select(models.NodeCertificate)
                .where(models.NodeCertificate.usage == usage, models.NodeCertificate.pending)
                .order_by(models.NodeCertificate.imported_at.desc())
            ).first()

    def write_cert_file(self, usage: str, cert: x509.Certificate) -> Path:
        """``certs/<usage>.pem``: the certificate in use, for operators and other tools."""
        path = self.path / "certs" / f"{usage}.pem"
        atomic_write(path, cert.public_bytes(serialization.Encoding.PEM))
        return path

    def key_file_of(self, row: models.NodeCertificate | None, usage: str) -> Path:
        """The private key of a certificate (each row records its own: renewals add keys)."""
        if row is None or not row.key_file:
            return self.dir.key_path(usage)
        return self.path / row.key_file

    def signer(
        self, usage: str, passphrase: bytes, row: models.NodeCertificate | None = None
    ) -> keys.SoftwareSigner:
        """The key of ``row`` (default: the active ``usage`` certificate's key)."""
        return keys.SoftwareSigner.from_file(
            self.key_file_of(row or self.active_certificate(usage), usage), passphrase
        )


def default_subject(usage: str, node_id: NodeId, organization: str | None) -> str:
    """Sign certificates name the member in serialNumber; auth certificates name the node."""
    org = f", O={organization.replace(',', chr(92) + ',')}" if organization else ""
    if usage == "sign":
        return f"serialNumber={node_id.member}, CN={node_id.member}{org}, C={node_id.instance[:2]}"
    return f"CN={node_id}{org}, C={node_id.instance[:2]}"


@dataclass(frozen=True)
class InitOptions:
    """What ``secnode init`` writes into ``secnode.toml`` besides the defaults."""

    db_url: str = ""
    client_host: str = "127.0.0.1"
    client_port: int = 8080
    server_host: str = "0.0.0.0"
    server_port: int = 5500
    admin_host: str = "127.0.0.1"
    admin_port: int = 5588
    address: str = ""


def init_node(
    directory: str | Path,
    member: str,
    server_code: str,
    central_url: str,
    anchor: str | Path,
    options: InitOptions = InitOptions(),
) -> tuple[NodeHome, bool]:
    """Create a node directory: configuration, anchor copy, migrated database.

    All or nothing: everything is built in a temporary directory beside the target
    and renamed into place at the end, so a failure (a bad anchor, an unreachable
    database) leaves no half-made node directory. Returns the node and whether a
    PostgreSQL database was created for it.
    """
    target = Path(directory).absolute()
    if (target / CONFIG_FILE).exists():
        raise ConfigError(f"{target} already holds a node ({CONFIG_FILE}); refusing to overwrite")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"{target} exists and is not an empty directory; choose a new one")
    member_id = MemberId.parse(member)
    NodeId.of(member_id, server_code)
    anchor_pem = Path(anchor).read_bytes()
    load_certificate(anchor)  # validates the anchor file before anything is written
    config = NodeConfig()
    config.node.member, config.node.server_code = str(member_id), server_code
    config.central.url = central_url
    config.database.url = options.db_url
    config.client.host, config.client.port = options.client_host, options.client_port
    config.server.host, config.server.port = options.server_host, options.server_port
    config.server.address = options.address
    config.admin.host, config.admin.port = options.admin_host, options.admin_port
    text = render_config(config)
    created = db.ensure_database(options.db_url) if options.db_url else False
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.init-", dir=target.parent))
    try:
        (staging / "keys").mkdir(mode=0o700)
        (staging / "certs").mkdir()
        ConfStore(staging / "globalconf").install_anchor(anchor_pem)
        (staging / CONFIG_FILE).write_text(text)
        NodeHome.open(staging).close()  # migrates the database (SQLite: inside staging)
        os.rename(staging, target)  # an empty target directory is replaced, atomically
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return NodeHome.open(target), created
