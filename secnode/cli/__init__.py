"""``secnode``: the security node's CLI.

``secnode init DIR`` makes a node directory; every other command works on
``--dir DIR`` (or ``$SECNODE_DIR``, default the current directory).
The root group is :data:`secnode.cli._root.main`; the commands live in
``secnode.cli.commands.*`` as module-level click commands, each a thin layer
over a library module (``secnode.services``, ``secnode.enrolment``,
``secnode.messagelog.evidence``, ``secnode.policy.admin``).
"""

from secnode.cli._root import main

__all__ = ["main"]
