"""System parameters published in the global configuration, and the registry's row counts.

The parameters (refresh intervals, validity, OCSP freshness) must keep the
relations X-Road enforces between them, checked on every change here; the
publisher and the instance read them with :func:`settings`.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from central.errors import RegistryError
from central.models import Setting
from central.registry.common import count_rows
from central.store import Store
from secnode.core.globalconf import SETTINGS_DEFAULTS


def settings(session: Session) -> dict[str, int]:
    values = dict(SETTINGS_DEFAULTS)
    for row in session.scalars(select(Setting)):
        if row.name in values:
            values[row.name] = row.value
    return values


def show_settings(store: Store) -> dict[str, int]:
    with store.read() as s:
        return settings(s)


def check_settings(values: dict[str, int]) -> None:
    """Relations X-Road also enforces (ug-syspar §3.7, §4.2)."""
    for name, value in values.items():
        if value <= 0:
            raise RegistryError(f"{name} must be positive")
    if values["conf_refresh_interval"] >= values["conf_validity_seconds"]:
        raise RegistryError("conf_refresh_interval must be shorter than conf_validity_seconds")
    if values["timestamping_interval"] >= values["ocsp_freshness_seconds"]:
        raise RegistryError("timestamping_interval must be shorter than ocsp_freshness_seconds")
    if values["ocsp_fetch_interval"] >= values["ocsp_freshness_seconds"]:
        raise RegistryError("ocsp_fetch_interval must be shorter than ocsp_freshness_seconds")


def set_setting(store: Store, operator: str, name: str, value: str) -> dict[str, int]:
    if name not in SETTINGS_DEFAULTS:
        raise RegistryError(f"unknown setting {name!r}; use one of {', '.join(SETTINGS_DEFAULTS)}")
    try:
        number = int(value)
    except ValueError as exc:
        raise RegistryError(f"{name} must be a whole number of seconds, not {value!r}") from exc
    with store.change(operator, "settings.set", {"name": name, "value": number}) as (s, det):
        current = settings(s)
        det["previous"] = current[name]
        current[name] = number
        check_settings(current)
        row = s.get(Setting, name)
        if row is None:
            s.add(Setting(name=name, value=number))
        else:
            row.value = number
        return current


def counts(store: Store) -> dict[str, int]:
    """Row counts per table (used by tests and ``central status``)."""
    from central import models

    tables = {
        "members": models.Member,
        "subsystems": models.Subsystem,
        "nodes": models.RegisteredNode,
        "approved_cas": models.ApprovedCA,
        "approved_tsas": models.ApprovedTSA,
        "groups": models.GlobalGroup,
        "group_members": models.GroupMember,
        "requests": models.RegistrationRequest,
        "conf_versions": models.ConfVersion,
        "signing_keys": models.SigningKey,
        "audit": models.AuditEntry,
    }
    with store.read() as s:
        return {name: count_rows(s, model) for name, model in tables.items()}
