"""The global configuration at the node's edge: fetch it, keep the last good copy on disk.

The format and its verification are pure and live in :mod:`secnode.core.globalconf`;
this module adds the I/O: :func:`fetch` (standard library), :func:`fetch_async` (with
the caller's aiohttp session) and :class:`ConfStore` (the node's configuration
directory, switched atomically).
"""

from __future__ import annotations

import datetime as dt
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from secnode.core.globalconf import (
    MAX_DOCUMENT_BYTES,
    MAX_SIGNATURE_BYTES,
    VERSION_HEADER,
    GlobalConf,
    GlobalConfError,
    cert_to_pem,
    load_pem_certs,
    verify,
)
from secnode.core.jsonfmt import cert_der
from secnode.files import atomic_write

if TYPE_CHECKING:
    import aiohttp


# ----- I/O: fetching ----------------------------------------------------------------------
@dataclass(frozen=True)
class Fetched:
    document: bytes
    signature: bytes
    version: int


def signature_url(url: str, version: int) -> str:
    """``http://h/globalconf`` -> ``http://h/globalconf.sig?version=N`` (the matching pair)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc, parts.path + ".sig", f"version={version}", "")
    )


def _version_header(value: str | None, url: str) -> int:
    try:
        return int(value or "")
    except ValueError as exc:
        raise GlobalConfError("unavailable", f"{url} gave no {VERSION_HEADER} header") from exc


def fetch(url: str, *, etag: str | None = None, timeout: float = 10.0) -> Fetched | None:
    """GET the document and then the signature of that same version (blocking, stdlib).

    Returns None when the server answers 304 to ``etag`` (nothing new).
    """
    headers = {"If-None-Match": etag} if etag else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        ) as resp:
            version = _version_header(resp.headers.get(VERSION_HEADER), url)
            document = resp.read(MAX_DOCUMENT_BYTES + 1)
        with urllib.request.urlopen(signature_url(url, version), timeout=timeout) as resp:
            signature = resp.read(MAX_SIGNATURE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        exc.close()  # its response holds the connection
        if exc.code == 304:
            return None
        raise GlobalConfError("unavailable", f"{exc.url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise GlobalConfError("unavailable", f"cannot fetch {url}: {exc}") from exc
    return Fetched(document, signature, version)


async def fetch_async(
    session: aiohttp.ClientSession, url: str, *, etag: str | None = None
) -> Fetched | None:
    """:func:`fetch` for an event loop, with the caller's aiohttp session."""
    import aiohttp

    headers = {"If-None-Match": etag} if etag else {}
    try:
        async with session.get(url, headers=headers) as resp:
            if resp.status == 304:
                return None
            if resp.status != 200:
                raise GlobalConfError("unavailable", f"{url}: HTTP {resp.status}")
            version = _version_header(resp.headers.get(VERSION_HEADER), url)
            document = await resp.content.read(MAX_DOCUMENT_BYTES + 1)
        sig_url = signature_url(url, version)
        async with session.get(sig_url) as resp:
            if resp.status != 200:
                raise GlobalConfError("unavailable", f"{sig_url}: HTTP {resp.status}")
            signature = await resp.content.read(MAX_SIGNATURE_BYTES + 1)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise GlobalConfError("unavailable", f"cannot fetch {url}: {exc}") from exc
    return Fetched(document, signature, version)


# ----- I/O: the copy on disk --------------------------------------------------------------
class ConfStore:
    """A node's global configuration directory (e.g. ``NODE_DIR/globalconf``).

    ``anchor.pem`` holds the trusted anchor(s); ``v<N>/conf.json`` + ``conf.sig``
    hold verified copies and the ``current`` symlink names the last good one, so
    the pair is switched in one atomic rename and a crash never leaves a
    document next to another version's signature.
    """

    ANCHOR = "anchor.pem"
    CURRENT = "current"
    KEEP = 3

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)

    @property
    def anchor_path(self) -> Path:
        return self.dir / self.ANCHOR

    def install_anchor(self, pem: bytes) -> list[x509.Certificate]:
        """Store the anchor handed over out of band (one or more PEM certificates)."""
        certs = load_pem_certs(pem)
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.anchor_path, b"".join(cert_to_pem(c).encode() for c in certs))
        return certs

    def anchors(self) -> list[x509.Certificate]:
        try:
            return load_pem_certs(self.anchor_path.read_bytes())
        except FileNotFoundError as exc:
            raise GlobalConfError(
                "untrusted_signer", f"no configuration anchor at {self.anchor_path}"
            ) from exc

    def save(self, conf: GlobalConf) -> None:
        """Keep ``conf`` as the last good copy (atomic switch of the ``current`` link)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        target = self.dir / f"v{conf.version}"
        target.mkdir(exist_ok=True)
        atomic_write(target / "conf.json", conf.document)
        atomic_write(target / "conf.sig", conf.signature)
        # A name of its own: another process (sync, a sibling serve) may be saving too.
        link = self.dir / f".{self.CURRENT}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        link.symlink_to(target.name)
        os.replace(link, self.dir / self.CURRENT)
        self._prune(keep={target.name})

    def _prune(self, keep: set[str]) -> None:
        versions = sorted(
            (p for p in self.dir.glob("v*") if p.is_dir() and p.name[1:].isdigit()),
            key=lambda p: int(p.name[1:]),
        )
        for old in versions[: -self.KEEP]:
            if old.name in keep:
                continue
            try:  # another process may be pruning the same directory
                for f in old.iterdir():
                    f.unlink(missing_ok=True)
                old.rmdir()
            except FileNotFoundError:
                pass

    def load_last_good(self, at: dt.datetime | None = None) -> GlobalConf | None:
        """The last verified copy, re-verified against the anchor (expired ones included).

        The caller decides what an expired copy means (a node stops exchanging).
        Returns None when there is no copy yet.
        """
        current = self.dir / self.CURRENT
        if not current.exists():
            return None
        # Resolve the link once: another process may switch it between the two reads, and a
        # document must never be checked against another version's signature.
        held = current.resolve()
        try:
            document = (held / "conf.json").read_bytes()
            signature = (held / "conf.sig").read_bytes()
        except OSError as exc:
            raise GlobalConfError("malformed", f"cannot read the held copy: {exc}") from exc
        return verify(document, signature, self.anchors(), at=at, allow_expired=True)

    def held_version(self) -> int | None:
        """The version ``current`` names, from the link alone (no read, no verification).

        Cheap enough to ask every second: a running node uses it to notice a copy that
        another process (``secnode sync``, a sibling ``secnode serve``) kept.
        """
        try:
            name = os.readlink(self.dir / self.CURRENT)
        except OSError:
            return None
        name = os.path.basename(name.rstrip("/"))
        return int(name[1:]) if name.startswith("v") and name[1:].isdigit() else None

    def _held(self, at: dt.datetime | None) -> GlobalConf | None:
        """The held copy, or None when it is damaged (then a fresh copy replaces it)."""
        self.anchors()  # a missing anchor is never papered over
        try:
            return self.load_last_good(at)
        except GlobalConfError:
            return None

    def accept(self, fetched: Fetched, at: dt.datetime | None = None) -> GlobalConf:
        """Verify ``fetched`` against the anchor and the held copy, keep it, follow rotation."""
        held = self._held(at)
        anchors = self.anchors()
        conf = verify(fetched.document, fetched.signature, anchors, held=held, at=at)
        rotated = not any(cert_der(conf.signer) == cert_der(a) for a in anchors)
        if rotated:
            # Trust old and new while switching, so a crash between steps stays loadable.
            self._write_anchors([*anchors, conf.signer])
        self.save(conf)
        if rotated:
            self._write_anchors([conf.signer])
        return conf

    def refresh(
        self, url: str, *, at: dt.datetime | None = None, timeout: float = 10.0
    ) -> GlobalConf:
        """Fetch, verify and keep the newest configuration; the held copy if unchanged."""
        held = self._held(at)
        fetched = fetch(url, etag=held.etag if held else None, timeout=timeout)
        if fetched is None and held is not None:
            return held
        if fetched is None:
            raise GlobalConfError("unavailable", f"{url} answered 304 but no copy is held")
        return self.accept(fetched, at)

    def _write_anchors(self, certs: Iterable[x509.Certificate]) -> None:
        atomic_write(self.anchor_path, b"".join(cert_to_pem(c).encode() for c in certs))
