"""``secnode serve``: run the node's three listeners and its background jobs in one process.

- client interface (plain HTTP or HTTPS) for the member's own information systems
- node-to-node interface (mutual TLS on the auth key) for other nodes
- admin interface (127.0.0.1 by default): ``/health`` and ``/metrics``; over HTTPS also the
  web console (``/console/``, :mod:`secnode.app.console_mount`)
- the resident disclosure page, when ``[disclosure] port`` is set (HTTPS)

With ``--workers N`` (:mod:`secnode.app.workers`) N such processes share the client and
node-to-node ports (``SO_REUSEPORT``); the admin interface and the disclosure page run in
worker 0 only.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import ssl
from dataclasses import dataclass, field

from aiohttp import web

from secnode.app.runtime import NodeRuntime
from secnode.home import NodeHome
from secnode.proxy.boundary import http_error_logger
from secnode.trust.tls import server_context

log = logging.getLogger("secnode.app.serve")


@dataclass(frozen=True)
class WorkerRole:
    """Which worker a process is: worker 0 also runs the admin interface."""

    index: int
    count: int

    @property
    def primary(self) -> bool:
        return self.index == 0


@dataclass
class RunningNode:
    runtime: NodeRuntime
    runners: list[web.AppRunner] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    server_ssl: ssl.SSLContext | None = None
    #: This process's place among ``--workers``; None when it is the only process.
    role: WorkerRole | None = None

    @property
    def shares_ports(self) -> bool:
        return self.role is not None and self.role.count > 1

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for runner in self.runners:
            await runner.cleanup()
        await self.runtime.close()
        for ext in reversed(self.runtime.extensions):
            await ext.close()


async def _site(
    app: web.Application,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    *,
    shared: bool = False,
) -> web.AppRunner:
    """Bind one listener; ``shared``: several workers bind the same port (SO_REUSEPORT)."""
    # Malformed HTTP (aiohttp's parser refuses it before any handler): one warning line.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, logger=http_error_logger())
    await runner.setup()
    site = web.TCPSite(
        runner, host, port, ssl_context=ssl_context, backlog=1024, reuse_port=shared or None
    )
    await site.start()
    return runner


async def _start_node_listener(running: RunningNode) -> bool:
    """Start the mutual-TLS listener for other nodes once an auth certificate and a global
    configuration exist; returns whether it runs."""
    rt = running.runtime
    if rt.auth_cert is None or rt.conf is None:
        return False
    from secnode.proxy.server_side import build_server_app

    cfg = rt.config.server
    running.server_ssl = server_context(
        rt.auth_cert_file(), rt.auth_key_file(), rt.passphrase, rt.conf.ca_certs
    )
    running.runners.append(
        await _site(
            build_server_app(rt),
            cfg.host,
            cfg.port,
            running.server_ssl,
            shared=running.shares_ports,
        )
    )
    log.info("node-to-node interface listening on %s:%d", cfg.host, cfg.port)
    return True


async def _wait_for_node_listener(running: RunningNode, interval: float = 2.0) -> None:
    """A node set up while serving (certificates imported, first sync) needs no restart."""
    while True:
        await asyncio.sleep(interval)
        try:
            if await _start_node_listener(running):
                if running.runtime.peer_client is None:
                    await running.runtime.reopen_peer_session()
                return
        except Exception:
            log.exception("could not start the node-to-node interface; will retry")


def client_ssl_context(rt: NodeRuntime) -> ssl.SSLContext | None:
    """HTTPS for information systems when configured; with ``tls_client_ca``, client
    certificates from that file's CAs (or the registered certificates themselves, listed
    in it: partial chains are accepted).

    A certificate is optional at the TLS layer so that a caller without one gets the X-Road
    error (``Server.ClientProxy.SslAuthenticationFailed``) rather than a broken handshake;
    which certificate may act as which subsystem is decided per message
    (``secnode client allow --cert``), deny by default.
    """
    cfg = rt.config.client
    if not cfg.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(
        str(rt.node.path / cfg.tls_cert), str(rt.node.path / cfg.tls_key), password=rt.passphrase
    )
    if cfg.tls_client_ca:
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        ctx.load_verify_locations(str(rt.node.path / cfg.tls_client_ca))
    return ctx


async def start_node(
    node: NodeHome, passphrase: bytes, role: WorkerRole | None = None
) -> RunningNode:
    """Start listeners and jobs; returns once all ports are bound."""
    from secnode.app import admin, console_mount, jobs
    from secnode.app.asic import build_client_app  # the proxy's client interface + /asic
    from secnode.app.extensions import attach_extensions
    from secnode.app.memory import tune_allocator
    from secnode.proxy import spool

    tune_allocator()  # large bodies are mmapped and returned when freed (app/memory.py)
    spool.sweep(node.path / "spool")  # files of a process that was killed mid-exchange
    rt = NodeRuntime(node, passphrase)
    rt.load_conf()
    rt.load_certificates()
    rt.reload_services()
    await attach_extensions(rt)
    await rt.open_sessions()
    running = RunningNode(rt, role=role)
    cfg = rt.config
    if role is None or role.primary:
        admin_app = admin.build_admin_app(rt)
        admin_ssl = console_mount.admin_tls(rt, admin_app)
        running.runners.append(await _site(admin_app, cfg.admin.host, cfg.admin.port, admin_ssl))
        disclosure = console_mount.disclosure_site(rt)
        if disclosure is not None:
            running.runners.append(
                await _site(disclosure[0], cfg.disclosure.host, cfg.disclosure.port, disclosure[1])
            )
    running.runners.append(
        await _site(
            build_client_app(rt),
            cfg.client.host,
            cfg.client.port,
            client_ssl_context(rt),
            shared=running.shares_ports,
        )
    )
    if not await _start_node_listener(running):
        log.warning(
            "node-to-node interface waits: %s",
            "no auth certificate imported"
            if rt.auth_cert is None
            else "no global configuration yet",
        )
        running.tasks.append(asyncio.create_task(_wait_for_node_listener(running)))
    running.tasks.extend(jobs.start_jobs(rt, running))
    log.info(
        "node %s serving: client %s:%d, node-to-node %s:%d, admin %s:%d",
        node.node_id,
        cfg.client.host,
        cfg.client.port,
        cfg.server.host,
        cfg.server.port,
        cfg.admin.host,
        cfg.admin.port,
    )
    return running


async def _watch_supervisor(pid: int, stop: asyncio.Event) -> None:
    """A worker whose supervisor is gone (killed) stops: nobody would restart or stop it."""
    while os.getppid() == pid:
        await asyncio.sleep(1.0)
    log.warning("supervisor (pid %d) is gone; this worker stops", pid)
    stop.set()


def serve_forever(
    node: NodeHome,
    passphrase: bytes,
    *,
    role: WorkerRole | None = None,
    supervisor_pid: int | None = None,
) -> None:
    async def main() -> None:
        running = await start_node(node, passphrase, role)
        # Everything built at start-up (configuration, trust caches, modules) lives as long as
        # the process: keep it out of the cyclic collector's full passes, which otherwise
        # re-walk it on the message path (docs/performance.md).
        gc.freeze()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if supervisor_pid is not None:
            running.tasks.append(asyncio.create_task(_watch_supervisor(supervisor_pid, stop)))
        await stop.wait()
        log.info("node %s stopping", node.node_id)
        await running.stop()
        log.info("node %s stopped", node.node_id)

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
