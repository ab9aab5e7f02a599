"""``secnode admin user ...`` (console accounts) and ``secnode records access-code`` (a
resident's one-time code for the disclosure page): parse options, call
:mod:`secnode.console.accounts` / :mod:`secnode.console.disclosure`, print."""

from __future__ import annotations

import datetime as dt
import sys

import click

from certs.cliutil import echo_json, echo_table, get_passphrase, passphrase_option
from secnode.cli.options import by_option, json_option, node_command
from secnode.console import accounts, audit, disclosure, tlscert
from secnode.home import NodeHome
from secnode.policy.common import actor


def _password(from_stdin: bool) -> str:
    """From standard input (one line, for scripts) or a hidden, confirmed prompt."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


password_stdin = click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input (one line)."
)


@click.group("admin")
def admin_group() -> None:
    """Administration of the node's web console."""


@admin_group.group("user")
def user_group() -> None:
    """Console accounts: operators change the node, auditors read the log and reports."""


@user_group.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(accounts.ROLES), required=True)
@password_stdin
@by_option
@node_command
def user_add(
    node: NodeHome, username: str, role: str, password_stdin: bool, by: str | None
) -> None:
    """Create an account (there is no default account and no default password)."""
    accounts.add_user(node.engine, username, role, _password(password_stdin))
    audit.record(node.engine, actor(by), "cli", "user.add", username, detail={"role": role})
    click.echo(f"added {role} {username}")


@user_group.command("list")
@json_option
@node_command
def user_list(node: NodeHome, as_json: bool) -> None:
    """Accounts with their role and state (never their password hash)."""
    rows = accounts.list_users(node.engine)
    if as_json:
        echo_json(rows)
        return
    echo_table(rows, ["username", "role", "disabled", "created_at", "password_changed_at"])


@user_group.command("disable")
@click.argument("username")
@by_option
@node_command
def user_disable(node: NodeHome, username: str, by: str | None) -> None:
    """Disable an account; its open sessions stop working at once."""
    accounts.disable_user(node.engine, username)
    audit.record(node.engine, actor(by), "cli", "user.disable", username)
    click.echo(f"disabled {username}")


@user_group.command("passwd")
@click.argument("username")
@password_stdin
@by_option
@node_command
def user_passwd(node: NodeHome, username: str, password_stdin: bool, by: str | None) -> None:
    """Set a new password for an account."""
    accounts.set_password(node.engine, username, _password(password_stdin))
    audit.record(node.engine, actor(by), "cli", "user.passwd", username)
    click.echo(f"password of {username} changed")


@click.command("access-code")
@click.option("--subject", "subject_ref", required=True, help="The subject reference.")
@click.option(
    "--days", type=click.IntRange(1, 90), default=14, show_default=True, help="Valid for."
)
@by_option
@json_option
@node_command
def access_code_cmd(
    node: NodeHome, subject_ref: str, days: int, by: str | None, as_json: bool
) -> None:
    """Issue a one-time code with which the individual opens the disclosure page.

    The code is shown only now (stored hashed); hand it over to the individual in person
    or by post, together with the subject reference.
    """
    who = actor(by)
    code, expires = disclosure.issue_code(node.engine, subject_ref, who, dt.timedelta(days=days))
    audit.record(node.engine, who, "cli", "access-code.issue", subject_ref)
    if as_json:
        echo_json({"subject_ref": subject_ref, "code": code, "expires_at": expires.isoformat()})
        return
    click.echo(f"access code for {subject_ref}: {code} (valid until {expires:%Y-%m-%d %H:%M} UTC)")


@admin_group.command("tls-cert")
@click.option(
    "--host",
    "hosts",
    multiple=True,
    default=("127.0.0.1", "localhost"),
    show_default=True,
    help="Name or address the browser uses (repeat for several).",
)
@click.option("--days", type=click.IntRange(1, 825), default=365, show_default=True)
@passphrase_option
@node_command
def tls_cert_cmd(
    node: NodeHome, hosts: tuple[str, ...], days: int, passphrase_file: str | None
) -> None:
    """Make a self-signed HTTPS certificate for the console and the disclosure page."""
    passphrase = get_passphrase(passphrase_file)
    cert, key = tlscert.make_self_signed(node.path, passphrase, hosts, days)
    click.echo(f"wrote {cert.name} and {key.name}; to use them, set in secnode.toml:")
    click.echo(f'  [admin]       tls_cert = "{cert.name}"  tls_key = "{key.name}"')
    click.echo(f'  [disclosure]  tls_cert = "{cert.name}"  tls_key = "{key.name}"  port = N')
