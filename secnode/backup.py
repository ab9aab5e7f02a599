"""``secnode backup`` and ``secnode restore``: a node directory and its databases in one file.

A backup is a gzipped tar holding ``manifest.json``, the node directory as it is on disk
(``node/``: ``secnode.toml``, the encrypted keys, certificates, global configurations,
archives, anything else the operator keeps there) and a consistent snapshot of each
database taken while the node serves: SQLite through its online backup API (a
transactionally consistent copy, no lock held for long), PostgreSQL through ``pg_dump``
(one snapshot, custom format). Private keys are copied as they are stored, encrypted;
the passphrase is never part of a backup.

The databases are copied before the files, and archives are written to disk before their
row is committed, so every archive a snapshot names is in the backup. An archive written
after the snapshot is in the file too but named by no row: restore leaves it out.

Restore builds the new node directory beside the target and renames it into place only
after the restored message log verified (the same check as ``secnode log verify``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, make_url, select

from certs.errors import SecnodeError
from secnode.config import CONFIG_FILE, NodeDir, parse_config, render_config
from secnode.core.jsonfmt import format_time
from secnode.messagelog import audit, tables
from secnode.messagelog import database as logdb
from secnode.store import db

FORMAT = "secnode-backup/1"
MANIFEST = "manifest.json"
NODE_PREFIX = "node"
DB_PREFIX = "db"
#: Files that are the live databases (copied through their snapshot instead) or transient.
_SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


class BackupError(SecnodeError):
    """A backup cannot be written or restored; the message says why and what to do."""


@dataclass(frozen=True)
class DatabaseCopy:
    """One database in a backup: which, how it was copied, where in the file."""

    role: str  # "node" or "messagelog"
    kind: str  # "sqlite" or "postgresql"
    member: str  # the tar member holding the snapshot
    revision: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "kind": self.kind,
            "member": self.member,
            "revision": self.revision,
        }


@dataclass
class BackupSummary:
    path: Path
    node_id: str
    databases: list[DatabaseCopy]
    files: int
    archives: int
    created_at: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "node": self.node_id,
            "created_at": self.created_at,
            "databases": [d.as_dict() for d in self.databases],
            "files": self.files,
            "archives": self.archives,
        }


@dataclass
class RestoreSummary:
    path: Path
    node_id: str
    records: int
    chains: int
    archives: int
    left_out: list[str] = field(default_factory=list)
    log_empty: bool = False  # never exchanged: no record, no archive, nothing to verify

    def as_dict(self) -> dict[str, Any]:
        return {
            "dir": str(self.path),
            "node": self.node_id,
            "log_verified": not self.log_empty,
            "log_empty": self.log_empty,
            "records": self.records,
            "chains": self.chains,
            "archives": self.archives,
            "left_out": self.left_out,
        }


# ----- databases ----------------------------------------------------------------------------
def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database:
        raise BackupError(f"cannot back up {db.redact(url)}: no database file")
    return Path(database)


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection URI (no password: it goes in PGPASSWORD) for pg_dump/pg_restore."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run_pg(argv: list[str], env: dict[str, str], what: str) -> None:
    tool = argv[0]
    if shutil.which(tool) is None:
        raise BackupError(
            f"{tool} is not installed; it is needed to {what} "
            "(Debian/Ubuntu: apt-get install postgresql-client, of the server's major version)"
        )
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        reason = (result.stderr or result.stdout).strip().splitlines()
        raise BackupError(f"{tool} failed to {what}: {reason[-1] if reason else result.returncode}")


def _snapshot(url: str, out: Path) -> str:
    """Copy the database ``url`` names into ``out``; returns its kind."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        source = _sqlite_path(url)
        if not source.exists():
            raise BackupError(f"database file {source} does not exist")
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        dst = sqlite3.connect(out)
        try:
            src.backup(dst)  # one consistent snapshot, taken while writers carry on
        finally:
            dst.close()
            src.close()
        return "sqlite"
    if backend == "postgresql":
        uri, env = _libpq(url)
        _run_pg(
            [
                "pg_dump",
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                "--file",
                str(out),
                uri,
            ],
            env,
            f"dump {db.redact(url)}",
        )
        return "postgresql"
    raise BackupError(f"cannot back up a {backend} database ({db.redact(url)})")


def _database_files(nd: NodeDir) -> set[Path]:
    """SQLite files (and their WAL/SHM) inside the node directory: never copied raw."""
    out: set[Path] = set()
    for url in (nd.db_url, logdb.log_db_url(nd)):
        if make_url(url).get_backend_name() == "sqlite":
            path = _sqlite_path(url).resolve()
            out.update(Path(f"{path}{suffix}") for suffix in _SQLITE_SUFFIXES)
    return out


# ----- backup -------------------------------------------------------------------------------
def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = int(dt.datetime.now(dt.UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))


def backup(nd: NodeDir, out: Path) -> BackupSummary:
    """Write a backup of node directory ``nd`` to ``out`` (atomically: temp file, rename)."""
    out = out.absolute()
    if out.exists():
        raise BackupError(f"{out} exists; a backup never overwrites a file")
    if nd.path in out.parents:
        raise BackupError(f"{out} is inside the node directory; write the backup elsewhere")
    created_at = format_time(dt.datetime.now(dt.UTC))
    copies: list[DatabaseCopy] = []
    files: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix=".secnode-backup-", dir=out.parent) as work:
        snapshots: list[tuple[Path, DatabaseCopy]] = []
        roles = [("node", nd.db_url, db.NODE_SCHEMA)]
        if logdb.is_separate(nd) and logdb.has_log_database(nd):
            roles.append(("messagelog", logdb.log_db_url(nd), logdb.LOG_SCHEMA))
        for role, url, schema in roles:
            engine = db.make_engine(url)
            try:
                revision = db.current_revision(engine, schema)
            finally:
                engine.dispose()
            target = Path(work) / role
            kind = _snapshot(url, target)
            member = f"{DB_PREFIX}/{role}.{'sqlite' if kind == 'sqlite' else 'pgdump'}"
            snapshots.append((target, DatabaseCopy(role, kind, member, revision)))
        skip = _database_files(nd)
        partial = out.parent / f".{out.name}.partial"
        archive_count = 0
        archive_dir = (nd.path / nd.config.messagelog.archive_dir).resolve()
        try:
            with tarfile.open(partial, "w:gz") as tar:
                for path, copy in snapshots:
                    tar.add(path, copy.member)
                    files[copy.member] = _sha256(path)
                    copies.append(copy)
                spool = nd.path / "spool"  # bodies in flight, removed as exchanges end
                for path in sorted(nd.path.rglob("*")):
                    if path.resolve() in skip and not path.is_symlink():
                        continue
                    if path == spool or spool in path.parents:
                        continue
                    if path.is_file() and not path.is_symlink():
                        name = f"{NODE_PREFIX}/{path.relative_to(nd.path)}"
                        files[name] = _sha256(path)
                        archive_count += path.parent.resolve() == archive_dir
                    tar.add(path, f"{NODE_PREFIX}/{path.relative_to(nd.path)}", recursive=False)
                if archive_dir.is_dir() and nd.path not in archive_dir.parents:
                    for path in sorted(archive_dir.glob("*.zip")):  # archives kept elsewhere
                        name = f"{NODE_PREFIX}/archive/{path.name}"
                        tar.add(path, name)
                        files[name] = _sha256(path)
                        archive_count += 1
                manifest = {
                    "format": FORMAT,
                    "node": str(nd.config.node_id),
                    "created_at": created_at,
                    "databases": [c.as_dict() for c in copies],
                    # relative to the node directory, wherever it is restored
                    "archive_dir": str(archive_dir.relative_to(nd.path))
                    if nd.path in archive_dir.parents
                    else "archive",
                    "files": files,
                }
                _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2).encode() + b"\n")
            with open(partial, "rb") as fh:
                os.fsync(fh.fileno())
            os.chmod(partial, 0o600)
            os.rename(partial, out)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    return BackupSummary(out, str(nd.config.node_id), copies, len(files), archive_count, created_at)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ----- restore ------------------------------------------------------------------------------
def _read_manifest(tar: tarfile.TarFile, source: Path) -> dict[str, Any]:
    try:
        member = tar.extractfile(MANIFEST)
    except KeyError:
        member = None
    if member is None:
        raise BackupError(f"{source} is not a secnode backup (no {MANIFEST})")
    manifest: dict[str, Any] = json.loads(member.read())
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{source}: unknown backup format {manifest.get('format')!r}")
    return manifest


def _check_files(staging: Path, manifest: dict[str, Any]) -> None:
    for name, digest in manifest["files"].items():
        path = staging / name
        if not path.is_file() or _sha256(path) != digest:
            raise BackupError(f"backup damaged: {name} is missing or differs from the manifest")


def _empty_database(url: str) -> None:
    db.ensure_database(url)
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            existing = inspect(conn).get_table_names()
    finally:
        engine.dispose()
    if existing:
        raise BackupError(
            f"database {db.redact(url)} is not empty ({len(existing)} tables); restore into "
            "a new, empty database"
        )


def _restore_database(copy: dict[str, Any], staging: Path, node: Path, url: str | None) -> str:
    """Put one database back; returns the URL to write in the configuration ('' = default)."""
    snapshot = staging / copy["member"]
    if copy["kind"] == "sqlite":
        name = "secnode.db" if copy["role"] == "node" else logdb.LOG_FILE
        os.replace(snapshot, node / name)
        return ""
    option = "--db" if copy["role"] == "node" else "--log-db"
    if not url:
        raise BackupError(
            f"the backup holds a PostgreSQL dump of the {copy['role']} database; give "
            f"{option} URL of a new, empty database to restore it into"
        )
    _empty_database(url)
    uri, env = _libpq(url)
    _run_pg(
        [
            "pg_restore",
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--dbname",
            uri,
            str(snapshot),
        ],
        env,
        f"restore into {db.redact(url)}",
    )
    snapshot.unlink()
    return url


def _keep_named_archives(nd: NodeDir) -> list[str]:
    """Drop archive files no restored row names (written after the snapshot)."""
    archive_dir = nd.path / nd.config.messagelog.archive_dir
    if not archive_dir.is_dir() or not logdb.has_log_database(nd):
        return []
    engine = logdb.open_log_engine(nd, create=False)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(tables.archives.name):
                named: set[str] = set()
            else:
                named = set(conn.execute(select(tables.archives.c.file_name)).scalars())
    finally:
        engine.dispose()
    left_out = []
    for path in sorted(archive_dir.glob("*.zip")):
        if path.name not in named:
            path.unlink()
            left_out.append(path.name)
    return left_out


def _log_is_empty(nd: NodeDir) -> bool:
    """No record and no archive: a node that never exchanged has no log to verify."""
    archive_dir = nd.path / nd.config.messagelog.archive_dir
    if archive_dir.is_dir() and any(archive_dir.glob("*.zip")):
        return False
    if not logdb.has_log_database(nd):
        return True
    engine = logdb.open_log_engine(nd, create=False)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(tables.records.name):
                return True
            return conn.execute(select(tables.records.c.seq).limit(1)).first() is None
    finally:
        engine.dispose()


def restore(
    source: Path, target: Path, db_url: str | None = None, log_db_url: str | None = None
) -> RestoreSummary:
    """Restore backup ``source`` into the new node directory ``target``; verify its log."""
    target = target.absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupError(f"{target} exists and is not empty; restore into a new directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.restore-", dir=target.parent))
    try:
        try:
            with tarfile.open(source, "r:gz") as tar:
                manifest = _read_manifest(tar, source)
                tar.extractall(staging, filter="data")
        except (OSError, tarfile.TarError, ValueError) as exc:
            raise BackupError(f"cannot read backup {source}: {exc}") from exc
        _check_files(staging, manifest)
        node = staging / NODE_PREFIX
        config = parse_config((node / CONFIG_FILE).read_text())
        for copy in manifest["databases"]:
            url = _restore_database(
                copy, staging, node, db_url if copy["role"] == "node" else log_db_url
            )
            if copy["role"] == "node":
                config.database.url = url
            else:
                config.messagelog.database = url
        if not any(c["role"] == "messagelog" for c in manifest["databases"]):
            config.messagelog.database = ""  # the log is in the node database
        config.messagelog.archive_dir = manifest["archive_dir"]
        (node / CONFIG_FILE).write_text(render_config(config))
        nd = NodeDir.open(node)
        engine = db.make_engine(nd.db_url)
        try:
            db.migrate(engine)  # a backup from an older version comes back at this one's schema
        finally:
            engine.dispose()
        left_out = _keep_named_archives(nd)
        records, chains = 0, 0
        empty = _log_is_empty(nd)
        if not empty:
            result = audit.audit_node(node)
            if not result.report.ok:
                first = result.first_bad() or {}
                raise BackupError(
                    f"the restored message log does not verify: {first.get('kind')}: "
                    f"{first.get('message')}; nothing was restored to {target}"
                )
            records, chains = result.report.checked["records"], len(result.report.chains)
        os.rename(node, target)
        shutil.rmtree(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return RestoreSummary(
        target,
        str(config.node_id),
        records,
        chains,
        len(list((target / config.messagelog.archive_dir).glob("*.zip"))),
        left_out,
        empty,
    )
