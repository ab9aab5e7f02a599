"""Creating a registry and rotating its configuration signing key.

Both write files (key, anchor) and database rows. Files that only make sense
with their rows are removed again if the transaction fails; files that publish
a committed state (``anchor.pem``) are written only after the commit.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select

from central import config as config_mod
from central import publish, signing
from central.config import CentralConfig
from central.errors import Conflict, NotFound, RegistryError
from central.models import Instance
from central.registry.parameters import settings
from central.store import Store, now
from secnode.core.jsonfmt import format_time


@contextmanager
def _remove_on_error(created: list[Path]) -> Iterator[list[Path]]:
    """Files appended to the yielded list are deleted if the block fails."""
    try:
        yield created
    except BaseException:
        for path in created:
            path.unlink(missing_ok=True)
        raise


def init(
    directory: Path,
    instance: str,
    database_url: str | None,
    passphrase: bytes,
    operator: str,
    key_type: str = "ec",
) -> dict[str, Any]:
    """Make a registry directory: config, database schema, active signing key, anchor."""
    created_dir = not directory.exists()
    config = config_mod.create(directory, instance, database_url)
    store: Store | None = None
    try:
        store = Store(config.db_url)
        with (
            _remove_on_error([]) as created,
            store.change(operator, "instance.init", {"instance": instance}) as (s, det),
        ):
            existing = s.scalars(select(Instance)).first()
            if existing is not None:
                raise Conflict(
                    f"database {_db_label(config)} already holds the registry "
                    f"of instance {existing.code}; refusing to initialise it again"
                )
            s.add(Instance(code=instance, created_at=now()))
            key = signing.create_key(s, config, passphrase, "active", key_type)
            created.append(config.key_path(key.key_file))
            det["anchor_sha256"] = key.cert_sha256
        signing.write_anchor(config.anchor_path, signing.cert_of(key))
    except BaseException:
        (directory / config_mod.CONFIG_FILE).unlink(missing_ok=True)
        if store is not None and not config.database_url:
            store.close()
            for suffix in ("", "-wal", "-shm"):
                (directory / (config_mod.DB_FILE + suffix)).unlink(missing_ok=True)
        if created_dir:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    finally:
        if store is not None:
            store.close()
    return {
        "directory": str(directory),
        "instance": instance,
        "database": _db_label(config),
        "anchor": str(config.anchor_path),
        "anchor_sha256": key.cert_sha256,
    }


def _db_label(config: CentralConfig) -> str:
    from central.store import redact

    return redact(config.db_url)


def open_store(config: CentralConfig) -> Store:
    store = Store(config.db_url)
    with store.read() as s:
        row = s.scalars(select(Instance)).first()
    if row is None:
        store.close()
        raise RegistryError(f"database {_db_label(config)} holds no registry; run 'central init'")
    if row.code != config.instance:
        store.close()
        raise RegistryError(
            f"database holds instance {row.code} but central.toml says {config.instance}"
        )
    return store


def rotate_key(
    store: Store, config: CentralConfig, operator: str, passphrase: bytes, key_type: str = "ec"
) -> dict[str, Any]:
    """Step 1: create the next key and announce it in a newly signed configuration."""
    with _remove_on_error([]) as created, store.change(operator, "conf.rotate-key") as (s, det):
        if signing.announced_keys(s):
            raise Conflict(
                "a next signing key is already announced; run 'central conf activate-key' first"
            )
        # validate the current key and passphrase before creating anything
        signing.load_signer(config, signing.active_key(s), passphrase)
        key = signing.create_key(s, config, passphrase, "announced", key_type)
        created.append(config.key_path(key.key_file))
        row = publish.resign_in(s, config, passphrase, kind="announce")
        det.update(next_sha256=key.cert_sha256, version=row.version if row else None)
    signing.write_anchor(config.next_anchor_path, signing.cert_of(key))
    validity = settings_now(store)["conf_validity_seconds"]
    return {
        "next_anchor": str(config.next_anchor_path),
        "next_sha256": key.cert_sha256,
        "announced_in_version": row.version if row else None,
        "activate_after": format_time(key.created_at + dt.timedelta(seconds=validity)),
    }


def settings_now(store: Store) -> dict[str, int]:
    with store.read() as s:
        return settings(s)


def activate_key(
    store: Store, config: CentralConfig, operator: str, passphrase: bytes, force: bool = False
) -> dict[str, Any]:
    """Step 2: sign with the announced key from now on; the old key is retired."""
    with store.change(operator, "conf.activate-key", {"force": force}) as (s, det):
        announced = signing.announced_keys(s)
        if not announced:
            raise NotFound("no announced signing key; run 'central conf rotate-key' first")
        new = announced[0]
        validity = settings(s)["conf_validity_seconds"]
        ready = new.created_at + dt.timedelta(seconds=validity)
        if now() < ready and not force:
            raise Conflict(
                f"the next key was announced at {format_time(new.created_at)}; nodes may not "
                f"all have seen it before {format_time(ready)} (conf_validity_seconds="
                f"{validity}); wait or use --force"
            )
        signing.load_signer(config, new, passphrase)
        old = signing.active_key(s)
        old.state, old.retired_at = "retired", now()
        s.flush()
        new.state, new.activated_at = "active", now()
        s.flush()
        row = publish.resign_in(s, config, passphrase, kind="rotate")
        det.update(
            old_sha256=old.cert_sha256,
            new_sha256=new.cert_sha256,
            version=row.version if row else None,
        )
    retired = config.directory / f"anchor-retired-{old.id}.pem"
    signing.write_anchor(retired, signing.cert_of(old))
    signing.write_anchor(config.anchor_path, signing.cert_of(new))
    config.next_anchor_path.unlink(missing_ok=True)
    return {
        "anchor": str(config.anchor_path),
        "anchor_sha256": new.cert_sha256,
        "retired_sha256": old.cert_sha256,
        "version": row.version if row else None,
    }
