"""The transparency report from the node's decision log (and nothing else).

Recipient and unit names, ordinance-basis labels and what each basis rests on come from
the registry, so the published table says 〇〇市 or A警察署 rather than an identifier;
the counts come only from the provider-side decision log, so an auditor can re-derive
every cell.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine

from secnode.core.identifiers import MemberId
from secnode.core.policy import TransparencyReport, build_transparency_report
from secnode.core.policy.vocabulary import BASES, regime_of
from secnode.policy import records, store


def transparency_report(
    engine: Engine,
    fiscal_year: int,
    suppress_below: int,
    *,
    group_by: str = "member",
    own_member: MemberId | None = None,
    publisher: str | None = None,
    contact: str | None = None,
    published: dt.date | None = None,
) -> TransparencyReport:
    with engine.connect() as conn:
        entries = records.report_entries(conn, fiscal_year)
        try:
            registry = store.load_registry(conn)
        except ValueError:  # names are a courtesy; the counts do not depend on them
            registry = None
    names: dict[str, str] = {}
    units: dict[str, str] = {}
    labels: dict[str, tuple[str, str]] = {}
    articles: dict[str, str] = {}
    if registry is not None:
        names = {str(m.id): m.name for m in registry.members.values()}
        units = {
            f"{m.id}/{code}": name for m in registry.members.values() for code, name in m.units
        }
        labels = {o.code: (o.label_ja, o.label_en) for o in registry.ordinance_bases.values()}
        own = registry.members.get(own_member) if own_member is not None else None
        if own is not None:
            publisher = publisher or own.name
            regime = regime_of(own.legal_type)
            for code in [*BASES, *registry.ordinance_bases]:
                basis = registry.basis(code)
                if basis is not None and regime in basis.regimes:
                    articles[code] = basis.article(regime)
    return build_transparency_report(
        entries,
        fiscal_year,
        suppress_below=suppress_below,
        recipient_names=names,
        basis_labels=labels,
        group_by=group_by,
        unit_names=units,
        basis_articles=articles,
        publisher=publisher,
        contact=contact,
        published=published,
    )
