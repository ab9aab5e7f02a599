"""Extensions of a running node (message log, policy decision point) and how they attach.

An extension is attached once at start-up, kept in ``rt.extensions`` and asked for
three things: its ``/health`` section, its ``/metrics`` gauges and to close (flush what it
wrote behind) when the node stops. Nothing else reaches into the runtime.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from secnode.app.runtime import NodeRuntime


class Extension(Protocol):
    """What the admin interface and the node's stop ask of an extension."""

    #: The key of its section in ``/health``.
    name: str

    def health(self) -> Mapping[str, Any]:
        """Its section; ``reasons`` make the node unhealthy, ``warnings`` are listed."""
        ...

    def collect(self) -> Iterable[Metric]:
        """Its gauges, read when ``/metrics`` is scraped (in a thread; may be none).
        Counters go through ``rt.count``."""
        ...

    async def close(self) -> None:
        """Stop its tasks and write what is still queued."""
        ...


async def attach_extensions(rt: NodeRuntime) -> None:
    """Message log sink, then the policy decision point (each adds itself to ``rt``)."""
    from secnode.messagelog.sink import attach as attach_messagelog
    from secnode.policy.point import attach as attach_policy

    await attach_messagelog(rt)
    await attach_policy(rt)
