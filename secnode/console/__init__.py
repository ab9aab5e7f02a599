"""The node's web console (operators and auditors, on the admin listener over TLS) and the
resident disclosure page (on the public disclosure listener).

Pages call the same library operations as the CLI (``secnode.services``,
``secnode.policy.admin``, ``secnode.messagelog.evidence``); every change is recorded in
the append-only admin audit trail (:mod:`secnode.console.audit`).
"""
