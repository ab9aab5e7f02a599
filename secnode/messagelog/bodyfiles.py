"""Large bodies out of the log's database: content-addressed, append-only body files.

A body the node spooled to a file (:mod:`secnode.proxy.spool`, over 256 KiB) is not
written into its record's row: SQLite would push it through its page cache and WAL
(twice: WAL, then checkpoint) and PostgreSQL through TOAST. It is kept as
``<node>/messagelog-bodies/sha256/<2 hex>/<64 hex>``, named by the ``body_sha256``
the record (and its hash) already binds, and the row says ``body_file`` instead of
holding the bytes. The file is made durable before the record that references it is
committed (:meth:`BodyStore.put`: the spool file is hard-linked, or copied, to a
temporary name, fsynced, renamed, and the directory fsynced), so a committed record
never names a body that a crash could lose. Two records with the same body share one
file; files are never rewritten. ``secnode log verify`` re-hashes every body file a
record names (a missing or altered one is reported, naming the record), and archives
carry them (:mod:`secnode.messagelog.archiver`).
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from pathlib import Path

from secnode.proxy.spool import Spool

#: The body store's directory in the node directory.
BODIES_DIR = "messagelog-bodies"


class BodyStore:
    """The node's body files under ``root`` (see module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: bytes) -> Path:
        name = sha256.hex()
        return self.root / "sha256" / name[:2] / name

    def put(self, spool: Spool) -> Path:
        """Make ``spool``'s body durable as its body file (blocking: run it in a thread).

        An existing file of the right size is kept (content-addressed, append-only: an
        altered one is verify's to find, not ours to overwrite)."""
        assert spool.path is not None, "only a spooled body becomes a body file"
        final = self.path(spool.sha256)
        try:
            if final.stat().st_size == spool.size:
                return final
        except FileNotFoundError:
            pass
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{secrets.token_hex(8)}"
        try:
            _link_or_copy(spool.path, tmp)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(final.parent)
        return final


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link (no copy: spool and store share a file system), else a copy."""
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copyfile(source, target)
        os.chmod(target, 0o600)  # bodies are personal data: as private as the spool file


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
