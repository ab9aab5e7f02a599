"""The node's side of the policy engine: store, decision point, records, report.

The decisions themselves are made by the pure core (:mod:`secnode.core.policy`);
this package gives them a database (SQLite or PostgreSQL, schema ``0003_policy``),
wires them into the message path (:class:`~secnode.policy.point.PolicyPoint`) and
keeps the records APPI asks for. The registry operations
the operator commands call are in :mod:`secnode.policy.admin`.
"""
