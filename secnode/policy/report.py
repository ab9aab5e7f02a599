"""The transparency report from the node's decision log (and nothing else).

Recipient names and ordinance-basis labels come from the registry, so the
published table says 〇〇市 rather than an identifier; the counts come only from
the provider-side decision log, so an auditor can re-derive every cell.
"""

from __future__ import annotations

from sqlalchemy import Engine

from secnode.core.policy import TransparencyReport, build_transparency_report
from secnode.policy import records, store


def transparency_report(
    engine: Engine, fiscal_year: int, suppress_below: int
) -> TransparencyReport:
    with engine.connect() as conn:
        entries = records.report_entries(conn, fiscal_year)
        try:
            registry = store.load_registry(conn)
        except ValueError:  # names are a courtesy; the counts do not depend on them
            registry = None
    names: dict[str, str] = {}
    labels: dict[str, tuple[str, str]] = {}
    if registry is not None:
        names = {str(m.id): m.name for m in registry.members.values()}
        labels = {o.code: (o.label_ja, o.label_en) for o in registry.ordinance_bases.values()}
    return build_transparency_report(
        entries,
        fiscal_year,
        suppress_below=suppress_below,
        recipient_names=names,
        basis_labels=labels,
    )
