"""Transport floor: what two bare aiohttp relays cost, measured like bench/exchange.py.

The node path has four HTTP hops (client -> client node -> provider node ->
service and back). This runs the same topology with two minimal relays that
only forward bytes (no TLS, no parsing, no signatures, no log), so the
exchange benchmark's figures can be read against the cost of the hops alone
on the same machine in the same conditions.

    python bench/floor.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.exchange import cpu_seconds, run_load  # noqa: E402
from secnode.demo.ports import free_port  # noqa: E402

RELAY = """
import asyncio, sys
import aiohttp
from aiohttp import web
port, target = int(sys.argv[1]), sys.argv[2]
async def main():
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
    async def forward(request):
        body = await request.read()
        async with session.post(target, data=body,
                                headers={"Content-Type": request.content_type}) as resp:
            return web.Response(body=await resp.read(), status=resp.status,
                                content_type=resp.content_type)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()
try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    duration, warmup = (2.0, 0.5) if args.quick else (6.0, 1.0)
    service, relay_b, relay_a = free_port(), free_port(), free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "secnode.demo.services", "--port", str(service)],
            stdout=subprocess.DEVNULL,
        )
    ]
    wait_port(service)
    procs.append(
        subprocess.Popen(
            [sys.executable, "-c", RELAY, str(relay_b), f"http://127.0.0.1:{service}/echo"]
        )
    )
    procs.append(
        subprocess.Popen(
            [sys.executable, "-c", RELAY, str(relay_a), f"http://127.0.0.1:{relay_b}/"]
        )
    )
    wait_port(relay_b)
    wait_port(relay_a)
    payload = b'{"data":"' + b"x" * 1013 + b'"}'
    headers = {"Content-Type": "application/json"}
    rows = []
    try:
        for concurrency in (1, 16, 64):
            direct = run_load(
                f"http://127.0.0.1:{service}/echo", headers, payload, concurrency, duration, warmup
            )
            before = sum(cpu_seconds(p.pid) for p in procs[1:])
            chain = run_load(
                f"http://127.0.0.1:{relay_a}/", headers, payload, concurrency, duration, warmup
            )
            used = sum(cpu_seconds(p.pid) for p in procs[1:]) - before
            rows.append(
                {
                    "payload": len(payload),
                    "concurrency": concurrency,
                    "direct_rps": round(direct.rps, 1),
                    "relay_rps": round(chain.rps, 1),
                    "ratio": round(chain.rps / direct.rps, 3) if direct.rps else None,
                    "direct_p50_ms": round(direct.pct(0.5), 3),
                    "relay_p50_ms": round(chain.pct(0.5), 3),
                    "relay_cpu_us_per_msg": round(
                        used / (chain.requests * (duration + warmup) / duration) * 1e6, 1
                    )
                    if chain.requests
                    else None,
                }
            )
    finally:
        for proc in procs:
            proc.terminate()
    if args.json:
        print(json.dumps({"scenarios": rows}))
    else:
        cols = list(rows[0])
        print(" | ".join(cols))
        print(" | ".join("---" for _ in cols))
        for row in rows:
            print(" | ".join(str(row[c]) for c in cols))
    return 0


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    raise SystemExit(main())
