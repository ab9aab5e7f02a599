"""Console accounts: operators (may change the node) and auditors (read the log and reports).

Passwords are hashed with argon2id (argon2-cffi); only the PHC hash string is stored.
What ``secnode admin user add|list|disable|passwd`` does, and what the login page
checks. Refusals raise :class:`AccountError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from certs.errors import SecnodeError
from secnode.console import clock
from secnode.console.tables import users

ROLES = ("operator", "auditor")
MIN_PASSWORD = 12
_USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
_hasher = PasswordHasher()
#: Verified against when the user does not exist, so an unknown name costs the same time.
_DUMMY_HASH = _hasher.hash("not a password of anyone")


class AccountError(SecnodeError):
    """An account operation was refused; the message says why."""


@dataclass(frozen=True)
class User:
    username: str
    role: str
    disabled: bool

    @property
    def can_change(self) -> bool:
        return self.role == "operator" and not self.disabled


def hash_secret(secret: str) -> str:
    return _hasher.hash(secret)


def verify_secret(stored: str | None, secret: str) -> bool:
    """Constant-work check: an absent hash is checked against a dummy one."""
    try:
        return _hasher.verify(stored or _DUMMY_HASH, secret) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")


def add_user(engine: Engine, username: str, role: str, password: str) -> User:
    if not _USERNAME.match(username):
        raise AccountError(
            f"user name {username!r}: lower-case letters, digits, '.', '_', '-' (2-64)"
        )
    if role not in ROLES:
        raise AccountError(f"role {role!r}: use one of {', '.join(ROLES)}")
    _check_password(password)
    now = clock.text(clock.now())
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(users).values(
                    username=username,
                    role=role,
                    password_hash=hash_secret(password),
                    disabled=False,
                    created_at=now,
                    password_changed_at=now,
                )
            )
    except IntegrityError as exc:
        raise AccountError(f"user {username} exists") from exc
    return User(username, role, False)


def list_users(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(users).order_by(users.c.username))
        return [
            {
                "username": r.username,
                "role": r.role,
                "disabled": bool(r.disabled),
                "created_at": r.created_at,
                "password_changed_at": r.password_changed_at,
            }
            for r in rows
        ]


def _set(engine: Engine, username: str, **values: Any) -> None:
    with engine.begin() as conn:
        done = conn.execute(update(users).where(users.c.username == username).values(**values))
    if done.rowcount != 1:
        raise AccountError(f"unknown user {username}")


def disable_user(engine: Engine, username: str) -> None:
    """Disable an account; its sessions end with it (checked on every request)."""
    _set(engine, username, disabled=True)


def set_password(engine: Engine, username: str, password: str) -> None:
    _check_password(password)
    _set(
        engine,
        username,
        password_hash=hash_secret(password),
        password_changed_at=clock.text(clock.now()),
    )


def get_user(engine: Engine, username: str) -> User | None:
    with engine.connect() as conn:
        row = conn.execute(select(users).where(users.c.username == username)).first()
    return None if row is None else User(row.username, row.role, bool(row.disabled))


def authenticate(engine: Engine, username: str, password: str) -> User | None:
    """The user if the password matches an enabled account; the same work either way."""
    with engine.connect() as conn:
        row = conn.execute(select(users).where(users.c.username == username)).first()
    ok = verify_secret(row.password_hash if row is not None else None, password)
    if not ok or row is None or row.disabled:
        return None
    return User(row.username, row.role, False)
