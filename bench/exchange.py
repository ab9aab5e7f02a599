"""Exchange benchmark: the same workload direct to the service and through both nodes.

Topology (each its own process, all on 127.0.0.1): load generator (this
process) -> client node (Takamatsu) -> pooled mutual TLS -> provider node
(Aizu) -> sample REST service. The direct baseline calls the sample service
with the same load generator. Direct and through-the-nodes runs are
interleaved in one invocation and the ratios are computed within the run, so
the figures compare like with like on whatever machine runs it.

    python bench/exchange.py [--quick] [--json] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from secnode.demo.federation import Federation, build_two_city_federation  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (from /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class RunResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(q * len(data)))]


async def load(url: str, headers: dict[str, str], payload: bytes, concurrency: int,
               duration: float, warmup: float) -> RunResult:
    """Closed-loop load: ``concurrency`` workers each send POSTs back to back."""
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    latencies: list[float] = []
    counts = {"ok": 0, "err": 0}
    async with aiohttp.ClientSession(connector=connector) as session:
        measure_from = time.perf_counter() + warmup
        stop_at = measure_from + duration

        async def worker() -> None:
            while True:
                start = time.perf_counter()
                if start >= stop_at:
                    return
                try:
                    async with session.post(url, data=payload, headers=headers) as resp:
                        body = await resp.read()
                        ok = resp.status == 200 and len(body) == len(payload)
                except aiohttp.ClientError:
                    ok = False
                end = time.perf_counter()
                if start >= measure_from:
                    latencies.append((end - start) * 1000)
                    counts["ok" if ok else "err"] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return RunResult(counts["ok"], counts["err"], duration, latencies)


def run_load(*args: object) -> RunResult:
    return asyncio.run(load(*args))  # type: ignore[arg-type]


def scenario(fed: Federation, payload_size: int, concurrency: int, duration: float,
             warmup: float, reps: int) -> dict[str, object]:
    takamatsu = fed.nodes["takamatsu"]
    node_pids = [fed.processes["node-aizu"].pid, fed.processes["node-takamatsu"].pid]
    payload = (b'{"data":"' + b"x" * max(0, payload_size - 11) + b'"}')[:payload_size]
    direct_url = f"http://127.0.0.1:{fed.ports['rest_service']}/echo"
    node_url = f"{takamatsu.client_url}/r1/{fed.nodes['aizu'].member}/residents/echo"
    json_headers = {"Content-Type": "application/json"}
    node_headers = {**json_headers, "X-Road-Client": takamatsu.client_id}
    direct_runs: list[RunResult] = []
    node_runs: list[RunResult] = []
    node_cpu: list[float] = []
    for _ in range(reps):
        direct_runs.append(run_load(direct_url, json_headers, payload, concurrency, duration,
                                    warmup))
        before = sum(cpu_seconds(p) for p in node_pids)
        started = time.perf_counter()
        result = run_load(node_url, node_headers, payload, concurrency, duration, warmup)
        elapsed = time.perf_counter() - started
        used = sum(cpu_seconds(p) for p in node_pids) - before
        node_runs.append(result)
        total_requests = result.requests * (elapsed / duration) if duration else 0
        node_cpu.append(used / total_requests * 1e6 if total_requests else float("nan"))
    direct = max(direct_runs, key=lambda r: r.rps)
    node = max(node_runs, key=lambda r: r.rps)
    return {
        "payload": payload_size,
        "concurrency": concurrency,
        "direct_rps": round(statistics.median(r.rps for r in direct_runs), 1),
        "node_rps": round(statistics.median(r.rps for r in node_runs), 1),
        "ratio": round(statistics.median(r.rps for r in node_runs)
                       / statistics.median(r.rps for r in direct_runs), 3),
        "direct_p50_ms": round(direct.pct(0.5), 3),
        "node_p50_ms": round(node.pct(0.5), 3),
        "direct_p99_ms": round(direct.pct(0.99), 3),
        "node_p99_ms": round(node.pct(0.99), 3),
        "node_cpu_us_per_msg": round(statistics.median(node_cpu), 1),
        "errors": sum(r.errors for r in node_runs + direct_runs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs (< 2 minutes)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--dir", default=None, help="federation directory (default: temp)")
    parser.add_argument("--duration", type=float, default=None)
    parser.add_argument("--payloads", default="1024,65536")
    parser.add_argument("--concurrency", default="1,16,64")
    args = parser.parse_args()
    duration = args.duration or (2.0 if args.quick else 8.0)
    warmup = 0.5 if args.quick else 1.5
    reps = 1 if args.quick else 2
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="secnode-bench-"))
    say = (lambda _m: None) if args.json else (lambda m: print(m, file=sys.stderr))
    fed = build_two_city_federation(base, say=say)
    try:
        scenarios = [
            scenario(fed, int(p), int(c), duration, warmup, reps)
            for p in args.payloads.split(",") for c in args.concurrency.split(",")
        ]
    finally:
        fed.stop()
    if args.json:
        print(json.dumps({"scenarios": scenarios}))
    else:
        cols = ["payload", "concurrency", "direct_rps", "node_rps", "ratio", "direct_p50_ms",
                "node_p50_ms", "direct_p99_ms", "node_p99_ms", "node_cpu_us_per_msg", "errors"]
        print(" | ".join(cols))
        print(" | ".join("---" for _ in cols))
        for row in scenarios:
            print(" | ".join(str(row[c]) for c in cols))
        for row in scenarios:
            if row["concurrency"] == 1:
                print(f"added p50 latency at c=1, {row['payload']} B: "
                      f"{float(row['node_p50_ms']) - float(row['direct_p50_ms']):.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
