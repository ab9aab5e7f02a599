"""The ``secnode`` root group and the one place where every command is attached to it.

Each command is a module-level click command in ``secnode.cli.commands.*``; this
module imports them and adds them, so the command tree reads top to bottom here
and no command module needs the root (no import circle, no registration order).
The root is an :class:`~certs.cliutil.ErrorMappingGroup`: a
:class:`~certs.errors.SecnodeError` from any command is one ``error:`` line.
"""

from __future__ import annotations

import click

from certs.cliutil import ErrorMappingGroup
from secnode.cli.commands import (
    agreements,
    backup,
    console,
    database,
    demo,
    log,
    policy,
    policy_authoring,
    records,
    services,
    setup,
    status,
)


@click.group(cls=ErrorMappingGroup)
@click.version_option(package_name="secnode")
def main() -> None:
    """Security node: keys, registration, services, message exchange, log, policy."""


for _command in (
    # setting the node up (docs/operations.md, in this order)
    setup.init_cmd,
    setup.keys_group,
    setup.certs_group,
    setup.subsystem_group,
    setup.register_cmd,
    status.status_cmd,
    setup.sync_cmd,
    setup.serve_cmd,
    # day two: schema upgrades, backup and restore
    database.db_group,
    backup.backup_cmd,
    backup.restore_cmd,
    # what the node provides and who may call
    services.service_group,
    services.acl_group,
    services.client_group,
    # message log
    log.log_group,
    # policy
    policy.policy_group,
    agreements.agreement_group,
    agreements.consent_group,
    agreements.stop_group,
    records.records_cmd,
    records.report_group,
    # the web console's accounts
    console.admin_group,
    # the two-city demo federation
    demo.demo,
):
    main.add_command(_command)
services.service_group.add_command(policy.classify_cmd)
for _command in (
    policy_authoring.policy_init,
    policy_authoring.member_group,
    policy_authoring.purpose_group,
):
    policy.policy_group.add_command(_command)
records.records_cmd.add_command(console.access_code_cmd)
