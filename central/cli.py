"""``central``: the central registry operator's CLI."""

from __future__ import annotations

import click

from central import cli_conf, cli_db, cli_registry
from certs.cliutil import ErrorMappingGroup


@click.group(cls=ErrorMappingGroup)
@click.version_option(package_name="secnode")
def main() -> None:
    """Central registry: members, nodes, trust services, signed global configuration.

    Every command except 'init' and 'conf verify' works on the registry directory
    given by --dir, else $CENTRAL_DIR, else the current directory.
    """


for _command in [*cli_conf.COMMANDS, *cli_registry.COMMANDS, *cli_db.COMMANDS]:
    main.add_command(_command)
