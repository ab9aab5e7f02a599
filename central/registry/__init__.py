"""Administrative operations on the registry: each one a transaction with its audit row.

Functions take the :class:`~central.store.Store`, the operator's name and plain
values (identifier strings, PEM bytes), check them, and raise
:class:`~central.errors.RegistryError` with a one-line reason on refusal. They
return plain dicts so the CLI can print them as a table or as ``--json``.

The operations live in one module per thing administered: ``members``
(members and subsystems), ``groups`` (global groups), ``nodes`` (nodes and
their auth certificates), ``trust`` (approved CAs and TSAs) and
``parameters`` (system parameters, row counts), over the checks and views in
``common``. This package names them all, as the one surface
:mod:`central.cli_registry` and the tests call.
"""

from central.registry.common import (
    ca_view,
    group_view,
    load_cert,
    member_row,
    member_view,
    node_view,
    subsystem_view,
    tsa_view,
)
from central.registry.groups import (
    add_group,
    add_group_member,
    list_groups,
    remove_group,
    remove_group_member,
)
from central.registry.members import (
    add_member,
    add_subsystem,
    list_members,
    list_subsystems,
    remove_member,
    remove_subsystem,
    show_member,
)
from central.registry.nodes import (
    add_node,
    drop_previous_auth_cert,
    keep_previous_auth_cert,
    list_nodes,
    node_with_auth_cert,
    put_node,
    remove_node,
)
from central.registry.parameters import (
    check_settings,
    counts,
    set_setting,
    settings,
    show_settings,
)
from central.registry.trust import (
    add_ca,
    add_tsa,
    approved_ca_certs,
    check_member_cert,
    list_cas,
    list_tsas,
    remove_ca,
    remove_tsa,
)

__all__ = [
    "add_ca",
    "add_group",
    "add_group_member",
    "add_member",
    "add_node",
    "add_subsystem",
    "add_tsa",
    "approved_ca_certs",
    "ca_view",
    "check_member_cert",
    "check_settings",
    "counts",
    "drop_previous_auth_cert",
    "group_view",
    "keep_previous_auth_cert",
    "list_cas",
    "list_groups",
    "list_members",
    "list_nodes",
    "list_subsystems",
    "list_tsas",
    "load_cert",
    "member_row",
    "member_view",
    "node_view",
    "node_with_auth_cert",
    "put_node",
    "remove_ca",
    "remove_group",
    "remove_group_member",
    "remove_member",
    "remove_node",
    "remove_subsystem",
    "remove_tsa",
    "set_setting",
    "settings",
    "show_member",
    "show_settings",
    "subsystem_view",
    "tsa_view",
]
