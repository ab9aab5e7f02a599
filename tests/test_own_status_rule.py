"""The judgement behind the own-status rule (pure): the edges the e2e tests do not reach."""

from __future__ import annotations

import datetime as dt

from secnode.core.health import CertView, cert_reasons, cert_usable

NOW = dt.datetime(2026, 4, 1, 9, 0, tzinfo=dt.UTC)
FRESHNESS = 600.0


def view(**changes: object) -> CertView:
    base: dict[str, object] = {
        "usage": "sign",
        "subject": "CN=x",
        "sha256": "ab" * 32,
        "not_before": NOW - dt.timedelta(days=1),
        "not_after": NOW + dt.timedelta(days=365),
        "ocsp_status": "good",
        "ocsp_this_update": NOW - dt.timedelta(seconds=60),
        "ocsp_next_update": NOW + dt.timedelta(hours=1),
    }
    base.update(changes)
    return CertView(**base)  # type: ignore[arg-type]


def test_good_and_fresh_is_usable_with_no_reasons() -> None:
    assert cert_usable(view(), FRESHNESS, NOW)
    assert cert_reasons("sign", view(), FRESHNESS, NOW) == []


def test_each_lapse_is_unusable_and_named() -> None:
    cases = {
        "is stale": view(ocsp_this_update=NOW - dt.timedelta(seconds=601)),
        "stale": view(ocsp_next_update=NOW - dt.timedelta(seconds=1)),  # nextUpdate passed
        "revoked": view(ocsp_status="revoked"),
        "unknown": view(ocsp_status="unknown"),
        "no OCSP response": view(ocsp_status=None, ocsp_this_update=None),
        "expired at": view(not_after=NOW - dt.timedelta(seconds=1)),
        "not valid before": view(not_before=NOW + dt.timedelta(seconds=1)),
    }
    for words, cert in cases.items():
        assert not cert_usable(cert, FRESHNESS, NOW), words
        reasons = cert_reasons("sign", cert, FRESHNESS, NOW)
        assert any(words in r for r in reasons), (words, reasons)
