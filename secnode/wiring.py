"""Attach the optional extensions (message log, policy) to a runtime."""

from __future__ import annotations

from secnode.runtime import NodeRuntime


async def attach_extensions(rt: NodeRuntime) -> None:
    """Message log sink and policy decision point, once those modules are configured."""
    return None
