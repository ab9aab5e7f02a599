"""Policy commands: the registry (policy, agreements, consents, stop requests, classification),
``policy explain``, Art. 33(5) disclosure (``records``) and the transparency report.

Every change is validated by the pure core before it is stored, is recorded as a
registry change (who, what, when) and reaches running nodes sharing the database
with their next request. ``--by`` names who made a change (default:
``$SECNODE_ACTOR``, else the OS user).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click

from certs.cliutil import UserError, echo_json, echo_table
from secnode.core.identifiers import ServiceId, SubsystemId
from secnode.core.policy import (
    AgreementState,
    DataClass,
    dumps_policy,
    explain,
    load_policy,
    parse_request,
    render_explanation,
    render_report,
)
from secnode.core.policy.report import FORMATS
from secnode.core.policy.strict_json import PolicyFormatError, parse_json
from secnode.core.policy.timeutil import parse_instant
from secnode.home import NodeHome
from secnode.policy import records, store
from secnode.policy.common import actor, utc_text
from secnode.policy.evaluation import evaluate
from secnode.policy.report import transparency_report

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
by_option = click.option("--by", "by", default=None,
                         help="Who makes this change (default: $SECNODE_ACTOR or the OS user).")


def _read_json(path: str) -> object:
    try:
        return parse_json(Path(path).read_bytes())
    except PolicyFormatError as exc:
        raise exc.in_source(path) from None


def _in_file(path: str, exc: PolicyFormatError) -> PolicyFormatError:
    return exc.in_source(path)


def _when(text: str | None, what: str) -> dt.datetime:
    if text is None:
        return dt.datetime.now(dt.UTC)
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise UserError(f"{what}: {exc}") from None


def _doc(row: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(row["doc"]))


# ----- policy ------------------------------------------------------------------------------------
def _register_policy(main: click.Group, node_command: Any) -> None:
    @main.group("policy")
    def policy_group() -> None:
        """The node's policy: import/export, state, explain a decision."""

    @policy_group.command("import")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False))
    @by_option
    @node_command
    def import_cmd(node: NodeHome, file: str, by: str | None) -> None:
        """Validate FILE (strict: unknown vocabulary is refused) and merge it into the store."""
        snapshot = load_policy(file)
        with node.engine.begin() as conn:
            counts = store.import_policy(conn, snapshot, actor(by), Path(file).name)
        click.echo(f"imported {file} (policy {snapshot.policy_version or '-'}, "
                   f"{snapshot.digest}): {counts['added']} added, {counts['updated']} updated, "
                   f"{counts['unchanged']} unchanged")

    @policy_group.command("export")
    @click.argument("file", type=click.Path(dir_okay=False))
    @node_command
    def export_cmd(node: NodeHome, file: str) -> None:
        """Write the stored policy (registry, consents, stop requests) as one document."""
        with node.engine.connect() as conn:
            snapshot = store.load_full(conn)
        Path(file).write_text(dumps_policy(snapshot), encoding="utf-8")
        click.echo(f"exported policy to {file} ({snapshot.digest})")

    @policy_group.command("show")
    @json_option
    @node_command
    def show_cmd(node: NodeHome, as_json: bool) -> None:
        """Enforcement, generation, version, digest and what the store holds."""
        with node.engine.connect() as conn:
            state = store.state_row(conn)
            held = store.counts(conn)
            try:
                digest, error = store.load_registry(conn).digest, None
            except ValueError as exc:
                digest, error = None, str(exc)
        out = {"enforcing": bool(state["enforcing"]), "generation": int(state["generation"]),
               "policy_version": state["policy_version"], "registry_digest": digest,
               "load_error": error, "settings": json.loads(state["settings"]),
               "retention_years": max(records.MIN_RETENTION_YEARS,
                                      node.dir.config.policy.records_retention_years),
               "counts": held}
        if as_json:
            echo_json(out)
            return
        click.echo(f"enforcing: {'yes' if out['enforcing'] else 'no (no policy yet)'}")
        for key in ("generation", "policy_version", "registry_digest", "retention_years"):
            click.echo(f"{key}: {out[key]}")
        if error:
            click.echo(f"load error: {error}")
        click.echo("holds: " + ", ".join(f"{k} {v}" for k, v in held.items()))

    @policy_group.command("explain")
    @click.argument("request_file", type=click.Path(exists=True, dir_okay=False))
    @click.option("--at", "at_text", default=None,
                  help="Evaluation time with offset (default: now).")
    @json_option
    @node_command
    def explain_cmd(node: NodeHome, request_file: str, at_text: str | None, as_json: bool) -> None:
        """Decide REQUEST.json as this node would (same function) and say why."""
        try:
            request = parse_request(_read_json(request_file))
        except PolicyFormatError as exc:
            raise _in_file(request_file, exc) from None
        at = _when(at_text, "--at")
        with node.engine.connect() as conn:
            try:
                registry = store.load_registry(conn)
            except ValueError:
                registry = None
            decision = evaluate(conn, registry, request, at, lock=False)
        if as_json:
            echo_json(explain(decision, registry))
        else:
            click.echo(render_explanation(decision, registry), nl=False)

    @policy_group.command("history")
    @click.option("--limit", default=50, show_default=True, type=int)
    @json_option
    @node_command
    def history_cmd(node: NodeHome, limit: int, as_json: bool) -> None:
        """Registry changes, newest first: who changed what, when."""
        with node.engine.connect() as conn:
            rows = store.change_rows(conn, limit)
        if as_json:
            echo_json([{**r, "detail": json.loads(r["detail"]) if r["detail"] else None}
                       for r in rows])
        else:
            echo_table(rows, ["at", "actor", "action", "kind", "key"])

    @policy_group.command("log")
    @click.option("--since", default=None, help="From this time (with offset).")
    @click.option("--until", default=None, help="Before this time (with offset).")
    @click.option("--subject", "subject_ref", default=None)
    @click.option("--message-id", default=None)
    @click.option("--side", type=click.Choice(["provider", "client"]), default=None)
    @click.option("--limit", default=1000, show_default=True, type=int)
    @json_option
    @node_command
    def log_cmd(node: NodeHome, since: str | None, until: str | None, subject_ref: str | None,
                message_id: str | None, side: str | None, limit: int, as_json: bool) -> None:
        """The decision log: every decision, allow and deny, with its digest."""
        bounds = [utc_text(_when(v, o)) if v else None
                  for v, o in ((since, "--since"), (until, "--until"))]
        with node.engine.connect() as conn:
            rows = records.decision_rows(conn, since=bounds[0], until=bounds[1], side=side,
                                         subject_ref=subject_ref, message_id=message_id,
                                         limit=limit)
        if as_json:
            echo_json([{**json.loads(r["entry"]), "at": r["at"],
                        "entry_sha256": r["entry_sha256"]} for r in rows])
            return
        echo_table([{**r, "decision": "ALLOW" if r["allow"] else "DENY"} for r in rows],
                   ["at", "side", "decision", "reason", "client", "service", "basis",
                    "message_id"])

    @policy_group.command("disable")
    @click.option("--reason", required=True, help="Why (recorded with your name).")
    @by_option
    @node_command
    def disable_cmd(node: NodeHome, reason: str, by: str | None) -> None:
        """Stop enforcing: access rights alone decide (recorded; use for migrations only)."""
        with node.engine.begin() as conn:
            store.set_enforcing(conn, False, actor(by), reason)
        click.echo("policy enforcement is OFF: personal data is protected by access rights only")

    @policy_group.command("enable")
    @click.option("--reason", default="enabled", help="Why (recorded with your name).")
    @by_option
    @node_command
    def enable_cmd(node: NodeHome, reason: str, by: str | None) -> None:
        """Enforce the stored policy again (deny by default)."""
        with node.engine.begin() as conn:
            store.set_enforcing(conn, True, actor(by), reason)
        click.echo("policy enforcement is ON")

    @policy_group.command("purge")
    @click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
    @node_command
    def purge_cmd(node: NodeHome, dry_run: bool) -> None:
        """Delete decision-log rows and records whose retention ended."""
        with node.engine.begin() as conn:
            counts = store.purge_before(conn, utc_text())
            if dry_run:
                conn.rollback()
        verb = "would delete" if dry_run else "deleted"
        click.echo(f"{verb}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


# ----- agreements ------------------------------------------------------------------------------
def _agreement_summary(row: dict[str, Any]) -> dict[str, Any]:
    doc = _doc(row)
    return {"uid": row["uid"], "version": row["version"], "state": row["state"],
            "type": doc.get("type"), "assignee": ",".join(doc.get("assignee", [])),
            "valid_from": doc.get("valid_from"), "valid_to": doc.get("valid_to"),
            "title": doc.get("title"), "added_at": row["added_at"]}


def _register_agreements(main: click.Group, node_command: Any) -> None:
    @main.group("agreement")
    def agreement_group() -> None:
        """Data-sharing agreements (ODRL-shaped, versioned)."""

    @agreement_group.command("add")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False))
    @by_option
    @node_command
    def add_cmd(node: NodeHome, file: str, by: str | None) -> None:
        """Validate the agreement in FILE and store it as a new version."""
        data = _read_json(file)
        try:
            with node.engine.begin() as conn:
                agreement = store.add_agreement(conn, data, actor(by))
        except PolicyFormatError as exc:
            raise _in_file(file, exc) from None
        click.echo(f"added agreement {agreement.uid} v{agreement.version} "
                   f"({agreement.state.value})")

    @agreement_group.command("list")
    @click.option("--all-versions", is_flag=True, help="Every stored version.")
    @json_option
    @node_command
    def list_cmd(node: NodeHome, all_versions: bool, as_json: bool) -> None:
        """Agreements (current versions unless --all-versions)."""
        with node.engine.connect() as conn:
            rows = store.agreement_rows(conn)
        if not all_versions:
            latest: dict[str, dict[str, Any]] = {}
            for row in rows:
                latest[row["uid"]] = row
            rows = list(latest.values())
        summaries = [_agreement_summary(r) for r in rows]
        if as_json:
            echo_json(summaries)
        else:
            echo_table(summaries, ["uid", "version", "state", "type", "assignee", "valid_to",
                                   "title"])

    @agreement_group.command("show")
    @click.argument("uid")
    @click.option("--version", "version", type=int, default=None)
    @json_option
    @node_command
    def show_cmd(node: NodeHome, uid: str, version: int | None, as_json: bool) -> None:
        """One agreement as stored (the current version unless --version)."""
        with node.engine.connect() as conn:
            rows = store.agreement_rows(conn, uid)
        if version is not None:
            rows = [r for r in rows if r["version"] == version]
        if not rows:
            raise UserError(f"unknown agreement {uid}" + (f" v{version}" if version else ""))
        doc = _doc(rows[-1])
        if as_json:
            echo_json(doc)
        else:
            click.echo(json.dumps(doc, ensure_ascii=False, indent=2))

    def _state_cmd(name: str, state: AgreementState, help_text: str) -> None:
        @agreement_group.command(name, help=help_text)
        @click.argument("uid")
        @by_option
        @node_command
        def cmd(node: NodeHome, uid: str, by: str | None) -> None:
            with node.engine.begin() as conn:
                version, old = store.set_agreement_state(conn, uid, state, actor(by))
            click.echo(f"agreement {uid} v{version}: {old} -> {state.value}")

    _state_cmd("suspend", AgreementState.SUSPENDED,
               "Suspend an agreement: requests under it are refused from now on.")
    _state_cmd("terminate", AgreementState.TERMINATED,
               "Terminate an agreement for good (a new one needs a new uid or version).")
    _state_cmd("resume", AgreementState.ACTIVE, "Make a suspended agreement active again.")


# ----- consents and stop requests --------------------------------------------------------------
def _consent_summary(row: dict[str, Any]) -> dict[str, Any]:
    doc = _doc(row)
    return {"consent_id": row["consent_id"], "subject_ref": row["subject_ref"],
            "status": row["status"], "recipients": ",".join(doc.get("recipients", [])),
            "purposes": ",".join(doc.get("purposes", [])), "expires_at": doc.get("expires_at"),
            "updated_at": row["updated_at"]}


def _register_consents(main: click.Group, node_command: Any) -> None:
    @main.group("consent")
    def consent_group() -> None:
        """Consent records, keyed by pairwise pseudonymous subject references."""

    @consent_group.command("add")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False))
    @by_option
    @node_command
    def add_cmd(node: NodeHome, file: str, by: str | None) -> None:
        """Record the consent in FILE (Kantara / ISO 27560 shape, DPV status)."""
        data = _read_json(file)
        try:
            with node.engine.begin() as conn:
                record = store.add_consent(conn, data, actor(by))
        except PolicyFormatError as exc:
            raise _in_file(file, exc) from None
        click.echo(f"recorded consent {record.consent_id} for subject {record.subject_ref} "
                   f"({record.status.value})")

    @consent_group.command("withdraw")
    @click.argument("consent_id")
    @click.option("--at", "at_text", default=None, help="When it was withdrawn (default: now).")
    @by_option
    @node_command
    def withdraw_cmd(node: NodeHome, consent_id: str, at_text: str | None, by: str | None) -> None:
        """Withdraw a consent: the next request relying on it is refused."""
        at = _when(at_text, "--at")
        with node.engine.begin() as conn:
            record = store.withdraw_consent(conn, consent_id, at, actor(by))
        click.echo(f"consent {record.consent_id} withdrawn at {at.isoformat()}")

    @consent_group.command("list")
    @click.option("--subject", "subject_ref", default=None, help="Only this subject reference.")
    @json_option
    @node_command
    def list_cmd(node: NodeHome, subject_ref: str | None, as_json: bool) -> None:
        """Consent records (status as stored; validity also depends on time)."""
        with node.engine.connect() as conn:
            rows = store.consent_rows(conn, subject_ref)
        summaries = [_consent_summary(r) for r in rows]
        if as_json:
            echo_json(summaries)
        else:
            echo_table(summaries, ["consent_id", "subject_ref", "status", "recipients",
                                   "purposes", "expires_at"])

    @consent_group.command("show")
    @click.argument("consent_id")
    @json_option
    @node_command
    def show_cmd(node: NodeHome, consent_id: str, as_json: bool) -> None:
        """One consent record and its events (given, withdrawn, ...)."""
        with node.engine.connect() as conn:
            rows = [r for r in store.consent_rows(conn) if r["consent_id"] == consent_id]
            events = store.consent_event_rows(conn, consent_id=consent_id)
        if not rows:
            raise UserError(f"unknown consent {consent_id}")
        doc = _doc(rows[0])
        history = [{k: e[k] for k in ("at", "event", "status", "actor")} for e in events]
        if as_json:
            echo_json({"consent": doc, "events": history})
        else:
            click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
            echo_table(history, ["at", "event", "status", "actor"])

    @main.group("stop-request")
    def stop_group() -> None:
        """Individuals' requests to stop provision (opt-out stop, APPI Art. 35)."""

    @stop_group.command("add")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False))
    @by_option
    @node_command
    def stop_add_cmd(node: NodeHome, file: str, by: str | None) -> None:
        """Record the stop request in FILE."""
        data = _read_json(file)
        try:
            with node.engine.begin() as conn:
                stop = store.add_stop_request(conn, data, actor(by))
        except PolicyFormatError as exc:
            raise _in_file(file, exc) from None
        click.echo(f"recorded stop request {stop.id} for subject {stop.subject_ref} "
                   f"({stop.scope.value})")

    @stop_group.command("list")
    @click.option("--subject", "subject_ref", default=None)
    @json_option
    @node_command
    def stop_list_cmd(node: NodeHome, subject_ref: str | None, as_json: bool) -> None:
        """Stop requests."""
        with node.engine.connect() as conn:
            docs = [_doc(r) for r in store.stop_rows(conn, subject_ref)]
        if as_json:
            echo_json(docs)
        else:
            echo_table(docs, ["id", "subject_ref", "scope", "recipient", "purpose", "since",
                              "lifted_at"])


# ----- service classification ---------------------------------------------------------------------
def _service_id(node: NodeHome, text: str) -> ServiceId:
    """``SUBSYSTEM/CODE[/VERSION]`` of this member, or a full service id (any member)."""
    parts = text.split("/")
    if len(parts) >= 5:
        return ServiceId.parse(text)
    if len(parts) in (2, 3):
        return ServiceId.of(SubsystemId.of(node.member_id, parts[0]), parts[1],
                            parts[2] if len(parts) == 3 else None)
    raise UserError(f"service {text!r}: use SUBSYSTEM/SERVICE[/VERSION] or a full id")


def _classification(service: ServiceId, file: str | None, non_personal: bool,
                    fields: tuple[str, ...], purposes: tuple[str, ...],
                    profiles: tuple[str, ...], subject_required: bool | None,
                    acquisition: str | None, title: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if file is not None:
        raw = _read_json(file)
        if not isinstance(raw, dict):
            raise UserError(f"{file}: expected a JSON object (one service entry)")
        data = dict(raw)
        if "id" in data and str(data["id"]) != str(service):
            raise UserError(f"{file}: id {data['id']} is not {service}")
    data["id"] = str(service)
    if non_personal:
        data.pop("fields", None)
        data["data_classes"] = [DataClass.NON_PERSONAL.value]
        data.setdefault("subject_required", False)
    if fields:
        data.pop("data_classes", None)
        parsed = []
        for item in fields:
            name, sep, cls = item.partition("=")
            if not sep:
                raise UserError(f"--field {item!r}: use NAME=CLASS (e.g. name=PERSONAL)")
            parsed.append({"name": name, "class": cls})
        data["fields"] = parsed
    if purposes:
        data["registered_purposes"] = list(purposes)
    if profiles:
        data["exception_profiles"] = list(profiles)
    if subject_required is not None:
        data["subject_required"] = subject_required
    if acquisition:
        data["acquisition_circumstances"] = acquisition
    if title:
        data["title"] = title
    if "fields" not in data and "data_classes" not in data:
        raise UserError("give a classification: FILE, --non-personal or --field NAME=CLASS")
    return data


def _register_classify(main: click.Group, node_command: Any) -> None:
    service_group = main.commands.get("service")
    if not isinstance(service_group, click.Group):
        raise RuntimeError("the 'service' command group must be registered first")
    classes = ", ".join(c.value for c in DataClass)

    @service_group.command("classify")
    @click.argument("service")
    @click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False))
    @click.option("--non-personal", is_flag=True, help="No personal data at all.")
    @click.option("--field", "fields", multiple=True, metavar="NAME=CLASS",
                  help=f"A field and its data class ({classes}); repeat for each field.")
    @click.option("--purpose", "purposes", multiple=True,
                  help="A registered purpose (Art. 17 / Art. 61); repeat.")
    @click.option("--profile", "profiles", multiple=True, help="An exception profile id; repeat.")
    @click.option("--subject-required/--no-subject-required", default=None,
                  help="Requests must name the data subject (per-person data).")
    @click.option("--acquisition", default=None, help="取得の経緯 for the recipient's record.")
    @click.option("--title", default=None)
    @by_option
    @node_command
    def classify_cmd(node: NodeHome, service: str, file: str | None, non_personal: bool,
                     fields: tuple[str, ...], purposes: tuple[str, ...],
                     profiles: tuple[str, ...], subject_required: bool | None,
                     acquisition: str | None, title: str | None, by: str | None) -> None:
        """Classify SERVICE's fields (FILE: one 'services' entry of a policy document)."""
        sid = _service_id(node, service)
        data = _classification(sid, file, non_personal, fields, purposes, profiles,
                               subject_required, acquisition, title)
        try:
            with node.engine.begin() as conn:
                outcome = store.classify_service(conn, data, actor(by))
        except PolicyFormatError as exc:
            raise (_in_file(file, exc) if file else exc) from None
        click.echo(f"classification of {sid}: {outcome}")


# ----- records and report ---------------------------------------------------------------------
def _register_records(main: click.Group, node_command: Any) -> None:
    @main.command("records")
    @click.option("--subject", "subject_ref", required=True,
                  help="The pseudonymous subject reference the individual was given.")
    @json_option
    @node_command
    def records_cmd(node: NodeHome, subject_ref: str, as_json: bool) -> None:
        """Provision (Art. 29) and receipt (Art. 30) records of one individual (Art. 33(5))."""
        out = records.subject_records(node.engine, subject_ref)
        if as_json:
            echo_json(out)
            return
        click.echo(f"subject {subject_ref}: {len(out['provisions'])} provision(s), "
                   f"{len(out['receipts'])} receipt(s)")
        rows = [{"at": p["at"], "to": p.get("recipient"), "service": p.get("service"),
                 "items": ",".join(p.get("data_items") or []), "basis": p.get("basis"),
                 "consent": p.get("consent_id")} for p in out["provisions"]]
        if rows:
            click.echo("provided (APPI Art. 29):")
            echo_table(rows, ["at", "to", "service", "items", "basis", "consent"])
        rows = [{"at": r["at"], "from": r.get("provider_name") or r.get("provider"),
                 "service": r.get("service"), "items": ",".join(r.get("data_items") or []),
                 "basis": r.get("basis"), "acquired": r.get("acquisition_circumstances")}
                for r in out["receipts"]]
        if rows:
            click.echo("received (APPI Art. 30):")
            echo_table(rows, ["at", "from", "service", "items", "basis", "acquired"])

    group = main.commands.get("report")
    if not isinstance(group, click.Group):
        @main.group("report")
        def report_group() -> None:
            """Reports made from the node's records."""

        group = report_group

    @group.command("transparency")
    @click.option("--fiscal-year", required=True, type=int,
                  help="Japanese fiscal year (April 1 - March 31), e.g. 2026.")
    @click.option("--format", "fmt", type=click.Choice(FORMATS), default="table",
                  show_default=True)
    @click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None,
                  help="Write to this file instead of standard output.")
    @click.option("--suppress-below", type=int, default=None,
                  help="Hide subject counts below this (default: [policy] "
                       "report_suppression_threshold).")
    @node_command
    def transparency_cmd(node: NodeHome, fiscal_year: int, fmt: str, out_file: str | None,
                         suppress_below: int | None) -> None:
        """Provisions, subjects and refusals per reason and recipient, from the decision log."""
        threshold = suppress_below or node.dir.config.policy.report_suppression_threshold
        report = transparency_report(node.engine, fiscal_year, threshold)
        text = render_report(report, fmt)
        if out_file:
            Path(out_file).write_text(text, encoding="utf-8")
            click.echo(f"wrote {fmt} report for FY{fiscal_year} to {out_file}")
        else:
            click.echo(text, nl=False)


def register(main: click.Group) -> None:
    from secnode.cli import node_command

    _register_policy(main, node_command)
    _register_agreements(main, node_command)
    _register_consents(main, node_command)
    _register_classify(main, node_command)
    _register_records(main, node_command)
