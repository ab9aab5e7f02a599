"""Attach the optional extensions (message log, policy) to a runtime."""

from __future__ import annotations

from secnode.runtime import NodeRuntime


async def attach_extensions(rt: NodeRuntime) -> None:
    """Message log sink and policy decision point, once those modules are configured."""
    # --- message log (issue 6): rt.sink, its background tasks, /health + /metrics hooks ---
    from secnode.messagelog.sink import attach as attach_messagelog

    await attach_messagelog(rt)
    # --- end message log ---
    # --- policy (issue 7): rt.decision, its /health section ---
    from secnode.policy.point import attach as attach_policy

    await attach_policy(rt)
    # --- end policy ---
