"""``secnode agreement``, ``consent`` and ``stop-request``: the registry's per-party and
per-person entries, thin over :mod:`secnode.policy.admin`."""

from __future__ import annotations

import json

import click

from certs.cliutil import echo_json, echo_table
from secnode.cli.options import by_option, json_option, node_command, when
from secnode.core.policy import AgreementState
from secnode.home import NodeHome
from secnode.policy import admin


# ----- agreements -------------------------------------------------------------------------------
@click.group("agreement")
def agreement_group() -> None:
    """Data-sharing agreements (ODRL-shaped, versioned)."""


@agreement_group.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--check", is_flag=True, help="Validate against the store; change nothing.")
@by_option
@node_command
def agreement_add(node: NodeHome, file: str, check: bool, by: str | None) -> None:
    """Validate the agreement in FILE and store it as a new version."""
    uid, version, state = admin.add_agreement(node, file, by, check=check)
    verb = "checked (nothing stored)" if check else "added"
    click.echo(f"{verb} agreement {uid} v{version} ({state})")


@agreement_group.command("list")
@click.option("--all-versions", is_flag=True, help="Every stored version.")
@json_option
@node_command
def agreement_list(node: NodeHome, all_versions: bool, as_json: bool) -> None:
    """Agreements (current versions unless --all-versions)."""
    summaries = admin.agreements(node, all_versions)
    if as_json:
        echo_json(summaries)
    else:
        echo_table(summaries, ["uid", "version", "state", "type", "assignee", "valid_to", "title"])


@agreement_group.command("show")
@click.argument("uid")
@click.option("--version", "version", type=int, default=None)
@json_option
@node_command
def agreement_show(node: NodeHome, uid: str, version: int | None, as_json: bool) -> None:
    """One agreement as stored (the current version unless --version)."""
    doc = admin.agreement_doc(node, uid, version)
    if as_json:
        echo_json(doc)
    else:
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2))


def _set_state(node: NodeHome, uid: str, state: AgreementState, by: str | None) -> None:
    version, old = admin.set_agreement_state(node, uid, state, by)
    click.echo(f"agreement {uid} v{version}: {old} -> {state.value}")


@agreement_group.command("suspend")
@click.argument("uid")
@by_option
@node_command
def agreement_suspend(node: NodeHome, uid: str, by: str | None) -> None:
    """Suspend an agreement: requests under it are refused from now on."""
    _set_state(node, uid, AgreementState.SUSPENDED, by)


@agreement_group.command("terminate")
@click.argument("uid")
@by_option
@node_command
def agreement_terminate(node: NodeHome, uid: str, by: str | None) -> None:
    """Terminate an agreement for good (a new one needs a new uid or version)."""
    _set_state(node, uid, AgreementState.TERMINATED, by)


@agreement_group.command("resume")
@click.argument("uid")
@by_option
@node_command
def agreement_resume(node: NodeHome, uid: str, by: str | None) -> None:
    """Make a suspended agreement active again."""
    _set_state(node, uid, AgreementState.ACTIVE, by)


# ----- consents ---------------------------------------------------------------------------------
@click.group("consent")
def consent_group() -> None:
    """Consent records, keyed by pairwise pseudonymous subject references."""


@consent_group.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@by_option
@node_command
def consent_add(node: NodeHome, file: str, by: str | None) -> None:
    """Record the consent in FILE (Kantara / ISO 27560 shape, DPV status)."""
    consent_id, subject_ref, status = admin.add_consent(node, file, by)
    click.echo(f"recorded consent {consent_id} for subject {subject_ref} ({status})")


@consent_group.command("withdraw")
@click.argument("consent_id")
@click.option("--at", "at_text", default=None, help="When it was withdrawn (default: now).")
@by_option
@node_command
def consent_withdraw(node: NodeHome, consent_id: str, at_text: str | None, by: str | None) -> None:
    """Withdraw a consent: the next request relying on it is refused."""
    at = when(at_text, "--at")
    withdrawn = admin.withdraw_consent(node, consent_id, at, by)
    click.echo(f"consent {withdrawn} withdrawn at {at.isoformat()}")


@consent_group.command("list")
@click.option("--subject", "subject_ref", default=None, help="Only this subject reference.")
@json_option
@node_command
def consent_list(node: NodeHome, subject_ref: str | None, as_json: bool) -> None:
    """Consent records (status as stored; validity also depends on time)."""
    summaries = admin.consents(node, subject_ref)
    if as_json:
        echo_json(summaries)
    else:
        rows = [
            {**c, "recipients": ",".join(c["recipients"]), "purposes": ",".join(c["purposes"])}
            for c in summaries
        ]  # JSON keeps the lists; the table shows them joined
        echo_table(
            rows, ["consent_id", "subject_ref", "status", "recipients", "purposes", "expires_at"]
        )


@consent_group.command("show")
@click.argument("consent_id")
@json_option
@node_command
def consent_show(node: NodeHome, consent_id: str, as_json: bool) -> None:
    """One consent record and its events (given, withdrawn, ...)."""
    doc, history = admin.consent_detail(node, consent_id)
    if as_json:
        echo_json({"consent": doc, "events": history})
    else:
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
        echo_table(history, ["at", "event", "status", "actor"])


# ----- stop requests ----------------------------------------------------------------------------
@click.group("stop-request")
def stop_group() -> None:
    """Individuals' requests to stop provision (opt-out stop, APPI Art. 35)."""


@stop_group.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@by_option
@node_command
def stop_add(node: NodeHome, file: str, by: str | None) -> None:
    """Record the stop request in FILE."""
    stop_id, subject_ref, scope = admin.add_stop_request(node, file, by)
    click.echo(f"recorded stop request {stop_id} for subject {subject_ref} ({scope})")


@stop_group.command("list")
@click.option("--subject", "subject_ref", default=None)
@json_option
@node_command
def stop_list(node: NodeHome, subject_ref: str | None, as_json: bool) -> None:
    """Stop requests."""
    docs = admin.stop_requests(node, subject_ref)
    if as_json:
        echo_json(docs)
    else:
        echo_table(
            docs, ["id", "subject_ref", "scope", "recipient", "purpose", "since", "lifted_at"]
        )
