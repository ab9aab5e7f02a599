"""``secnode``: the security node's CLI.

``secnode init DIR`` makes a node directory; every other command works on
``--dir DIR`` (or ``$SECNODE_DIR``, default the current directory).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from certs.cliutil import UserError, get_passphrase, guarded, passphrase_option
from secnode.config import DIR_ENV, ConfigError
from secnode.core.identifiers import IdentifierError
from secnode.home import NodeHome, init_node

DOMAIN_ERRORS: tuple[type[BaseException], ...] = (ConfigError, IdentifierError, ValueError)


def node_command(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--dir`` and open the node; domain errors become one-line ``error:`` exits."""

    @click.option("--dir", "node_dir", envvar=DIR_ENV, default=None,
                  type=click.Path(file_okay=False), help="Node directory (default: cwd).")
    @guarded(*DOMAIN_ERRORS)
    @functools.wraps(func)
    def wrapper(node_dir: str | None, **kwargs: Any) -> Any:
        node = NodeHome.open(node_dir)
        try:
            return func(node, **kwargs)
        finally:
            node.close()

    return wrapper


@click.group()
@click.version_option(package_name="secnode")
def main() -> None:
    """Security node: keys, registration, services, message exchange, log, policy."""


@main.command("init")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--member", required=True, help="Owner member, e.g. JP/GOV/072028.")
@click.option("--server-code", required=True, help="This node's code, e.g. ss1.")
@click.option("--central", "central_url", required=True, help="Central registry base URL.")
@click.option("--anchor", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Configuration anchor (central's anchor.pem), handed over out of band.")
@click.option("--db", "db_url", default="", help="SQLAlchemy URL (default: sqlite in DIR).")
@click.option("--client-port", default=8080, show_default=True, type=int)
@click.option("--server-port", default=5500, show_default=True, type=int)
@click.option("--admin-port", default=5588, show_default=True, type=int)
@click.option("--address", default="", help="host:port other nodes use to reach this node.")
@guarded(*DOMAIN_ERRORS)
def init_cmd(directory: str, member: str, server_code: str, central_url: str, anchor: str,
             db_url: str, client_port: int, server_port: int, admin_port: int,
             address: str) -> None:
    """Create a node directory: secnode.toml, database, anchor copy."""
    node = init_node(directory, member, server_code, central_url, anchor, db_url,
                     client_port, server_port, admin_port,
                     address or f"127.0.0.1:{server_port}")
    click.echo(f"initialised node {node.node_id} in {node.path}")
    node.close()


@main.group("keys")
def keys_group() -> None:
    """The node's auth key (TLS between nodes) and the member's sign key."""


@keys_group.command("new")
@click.option("--usage", required=True, type=click.Choice(["auth", "sign"]))
@click.option("--type", "key_type", type=click.Choice(["ec", "rsa"]), default="ec",
              show_default=True)
@click.option("--org", default=None, help="Organisation name for the CSR subject.")
@click.option("--subject", default=None, help="Override the whole CSR subject.")
@click.option("--renew", is_flag=True,
              help="The node has a key of this usage in use: write keys/<usage>-N.* beside it.")
@passphrase_option
@node_command
def keys_new(node: NodeHome, usage: str, key_type: str, org: str | None, subject: str | None,
             renew: bool, passphrase_file: str | None) -> None:
    """Create a key (encrypted PKCS#8) and write its CSR for the CA."""
    csr = node.new_key(usage, get_passphrase(passphrase_file), key_type, org, subject, renew)
    click.echo(f"wrote {usage} key {csr.with_suffix('.key')} and CSR {csr}")


def _register_groups() -> None:
    """Command groups that live in their own modules."""
    from secnode import cli_log, cli_policy, cli_services, cli_setup
    from secnode.demo import cli as demo_cli

    cli_setup.register(main)
    cli_services.register(main)
    cli_log.register(main)  # message log (issue 6)
    cli_policy.register(main)  # policy (issue 7); after cli_services: adds 'service classify'
    demo_cli.register(main)


_register_groups()

__all__ = ["UserError", "main", "node_command"]
