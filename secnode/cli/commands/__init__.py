"""The ``secnode`` commands, one module per concern; attached to the root in ``_root``."""
