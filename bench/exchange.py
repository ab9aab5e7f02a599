"""Exchange benchmark: the same workload direct to the service and through both nodes.

Topology (each its own process, all on 127.0.0.1): load generator (this
process) -> client node (Takamatsu) -> pooled mutual TLS -> provider node
(Aizu) -> sample REST service. The direct baseline calls the sample service
with the same load generator. Direct and through-the-nodes runs are
interleaved in one invocation and the ratios are computed within the run, so
the figures compare like with like on whatever machine runs it.

    python bench/exchange.py [--quick] [--json] [--dir DIR] [--log on|off|both]
        [--workers N] [--profile DIR] [--payloads 1024,65536,1048576]
        [--policy on|off|both]

``--log both`` adds the message-log cost: the node runs repeated with the log
(records, group commit, 1 s time-stamping against the demo TSA) on and off,
alternating on the same federation, and prints the throughput of each.
``--policy both`` adds the policy decision's cost: the nodes run with the policy
enforced (one decision and one decision-log row per message) and not, alternating on
the same federation, plus a personal-data request with the whole policy path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from secnode.demo.federation import Federation  # noqa: E402
from secnode.demo.node import NodeHandle  # noqa: E402
from secnode.demo.two_cities import build_two_city_federation  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (``serve --workers``: the supervisor and its workers)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(parents.get(current, []))
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its descendants (from /proc), in seconds."""
    total = 0.0
    for member in process_tree(pid):
        try:
            fields = _stat(member)
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its descendants, MiB."""
    total = 0
    for member in process_tree(pid):
        try:
            total += int(_stat(member)[21]) * os.sysconf("SC_PAGE_SIZE")
        except FileNotFoundError:
            continue
    return total / 2**20


class PeakRss:
    """Samples each node's process-tree RSS (10 Hz) while a run is in progress."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak = {name: 0.0 for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], rss_mib(pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


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


async def load(
    url: str,
    headers: dict[str, str],
    payload: bytes,
    concurrency: int,
    duration: float,
    warmup: float,
) -> RunResult:
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


# ----- policy on/off --------------------------------------------------------------
def set_policy(fed: Federation, on: bool) -> None:
    """Enforce the policy on both nodes (a decision and a decision-log row per message) or
    not (access rights alone); running nodes pick the switch up within a second."""
    for city in fed.nodes.values():
        fed.run(
            "secnode",
            "policy",
            "enable" if on else "disable",
            "--reason",
            "benchmark",
            "--dir",
            city.dir,
        )
    time.sleep(1.5)


def personal_echo(fed: Federation) -> tuple[str, dict[str, str]]:
    """A personal-data twin of the echo service (agreement + consent) and the headers a
    client sends for it: the full policy path (consent lookup, provider record, signed
    statement, receipt record on the client node)."""
    aizu, taka = fed.nodes["aizu"], fed.nodes["takamatsu"]
    service = f"{aizu.member}/residents/echo-personal"
    fed.run(
        "secnode",
        "service",
        "add",
        "residents",
        "echo-personal",
        "--type",
        "rest",
        "--url",
        f"http://127.0.0.1:{fed.ports['rest_service']}/echo",
        "--dir",
        aizu.dir,
    )
    fed.run("secnode", "acl", "grant", "residents/echo-personal", taka.client_id, "--dir", aizu.dir)
    purpose = "WELFARE-ELIGIBILITY"
    doc = {
        "format": "secnode-policy",
        "format_version": 1,
        "members": [
            {"id": c.member, "legal_type": "PUBLIC_BODY", "name": c.member_name}
            for c in (aizu, taka)
        ],
        "purposes": [{"code": purpose, "label_ja": "福祉", "label_en": "Welfare"}],
        "services": [
            {
                "id": service,
                "fields": [{"name": "data", "class": "PERSONAL"}],
                "acquisition_circumstances": "benchmark",
            }
        ],
        "agreements": [
            {
                "uid": "DSA-BENCH",
                "version": 1,
                "state": "ACTIVE",
                "assigner": aizu.member,
                "assignee": [taka.client_id],
                "valid_from": "2025-04-01",
                "valid_to": "2035-03-31",
                "permission": [
                    {
                        "target": service,
                        "action": "use",
                        "constraint": [
                            {
                                "leftOperand": "purpose",
                                "operator": "isAnyOf",
                                "rightOperand": [purpose],
                            },
                            {
                                "leftOperand": "legalBasis",
                                "operator": "isAnyOf",
                                "rightOperand": ["CONSENT"],
                            },
                            {
                                "leftOperand": "dataItem",
                                "operator": "isPartOf",
                                "rightOperand": ["data"],
                            },
                        ],
                    }
                ],
            }
        ],
        "consents": [
            {
                "consent_id": "CR-BENCH",
                "subject_ref": "BENCH-1",
                "controller": aizu.member,
                "recipients": [taka.client_id],
                "services": [service],
                "purposes": [purpose],
                "status": "ConsentGiven",
                "given_at": "2025-04-01T00:00:00+09:00",
                "expires_at": "2035-03-31T00:00:00+09:00",
            }
        ],
    }
    path = fed.base / "bench-policy.json"
    path.write_text(json.dumps(doc, ensure_ascii=False))
    fed.run("secnode", "policy", "import", path, "--dir", aizu.dir)
    time.sleep(2.5)  # services and rights are re-read every 2 s
    return service, {
        "X-Road-Purpose": purpose,
        "X-Road-Legal-Basis": "CONSENT",
        "X-Road-Consent-Id": "CR-BENCH",
        "X-Road-Data-Subject": "BENCH-1",
        "X-Road-Data-Items": "data",
        "X-Road-Issue": "BENCH",
    }


def node_counter(city: NodeHandle, name: str, **labels: str) -> float:
    """The sum of a counter's samples from the node's /metrics whose labels include
    ``labels`` (0 until it was first counted)."""
    from prometheus_client.parser import text_string_to_metric_families

    url = f"{city.admin_url}/metrics"
    with urllib.request.urlopen(url, timeout=10, context=city.admin_context()) as resp:
        text = resp.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == f"secnode_{name}"
        and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def policy_cost(
    fed: Federation,
    payload_size: int,
    concurrency: int,
    duration: float,
    warmup: float,
    reps: int,
    personal: tuple[str, dict[str, str]],
) -> dict[str, object]:
    """The policy's cost, two ways.

    Directly: both nodes add up the wall time their policy hooks take on the message
    path (``policy_seconds_total``: the decision, filtering, records, waits for the store
    included); per message that is the latency the policy adds, unaffected by the
    machine's other load. And as an A/B test: runs with the policy enforced and not,
    alternating (on/off, then off/on, ...) on the same federation; the added p50 is the
    median over the pairs of (on p50 / off p50 - 1), noisy on a shared machine. Node CPU
    per message is from /proc. 'personal' is the personal-data twin (enforced)."""
    takamatsu = fed.nodes["takamatsu"]
    cities = list(fed.nodes.values())
    node_pids = [fed.processes["node-aizu"].pid, fed.processes["node-takamatsu"].pid]
    payload = (b'{"data":"' + b"x" * max(0, payload_size - 11) + b'"}')[:payload_size]
    url = f"{takamatsu.client_url}/r1/{fed.nodes['aizu'].member}/residents/echo"
    headers = {"Content-Type": "application/json", "X-Road-Client": takamatsu.client_id}
    runs: dict[str, list[RunResult]] = {"off": [], "on": [], "personal": []}
    cpu: dict[str, list[float]] = {"off": [], "on": [], "personal": []}
    spent: dict[str, list[float]] = {"off": [], "on": [], "personal": []}

    def measure(kind: str, target: str, extra: dict[str, str]) -> None:
        before = sum(cpu_seconds(p) for p in node_pids)
        policy_before = sum(node_counter(c, "policy_seconds_total") for c in cities)
        sent_before = node_counter(takamatsu, "requests_total", direction="outbound")
        started = time.perf_counter()
        result = run_load(target, {**headers, **extra}, payload, concurrency, duration, warmup)
        elapsed = time.perf_counter() - started
        used = sum(cpu_seconds(p) for p in node_pids) - before
        sent = node_counter(takamatsu, "requests_total", direction="outbound") - sent_before
        policy = sum(node_counter(c, "policy_seconds_total") for c in cities) - policy_before
        total = result.requests * (elapsed / duration) if duration else 0
        runs[kind].append(result)
        cpu[kind].append(used / total * 1e6 if total else float("nan"))
        spent[kind].append(policy / sent * 1000 if sent else float("nan"))

    for rep in range(reps):
        for on in (True, False) if rep % 2 == 0 else (False, True):
            set_policy(fed, on)
            measure("on" if on else "off", url, {})
            if on:
                measure("personal", f"{takamatsu.client_url}/r1/{personal[0]}", personal[1])
    p50 = {k: statistics.median(r.pct(0.5) for r in v) for k, v in runs.items()}
    rps = {k: statistics.median(r.rps for r in v) for k, v in runs.items()}
    ms = {k: statistics.median(v) for k, v in spent.items()}
    pairs = [
        on.pct(0.5) / off.pct(0.5) - 1 for on, off in zip(runs["on"], runs["off"], strict=True)
    ]
    return {
        "payload": payload_size,
        "concurrency": concurrency,
        "off_p50_ms": round(p50["off"], 3),
        "on_p50_ms": round(p50["on"], 3),
        "policy_ms": round(ms["on"], 3),
        "policy_share": round(ms["on"] / p50["off"], 3),
        "ab_p50_added": round(statistics.median(pairs), 3),
        "personal_p50_ms": round(p50["personal"], 3),
        "personal_policy_ms": round(ms["personal"], 3),
        "personal_share": round(ms["personal"] / p50["off"], 3),
        "off_policy_ms": round(ms["off"], 3),
        "off_cpu_us": round(statistics.median(cpu["off"]), 1),
        "on_cpu_us": round(statistics.median(cpu["on"]), 1),
        "personal_cpu_us": round(statistics.median(cpu["personal"]), 1),
        "off_rps": round(rps["off"], 1),
        "on_rps": round(rps["on"], 1),
        "personal_rps": round(rps["personal"], 1),
        "runs": reps,
        "errors": sum(r.errors for v in runs.values() for r in v),
    }


def scenario(
    fed: Federation, payload_size: int, concurrency: int, duration: float, warmup: float, reps: int
) -> dict[str, object]:
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
    peaks: dict[str, float] = {"aizu": 0.0, "takamatsu": 0.0}
    for _ in range(reps):
        direct_runs.append(
            run_load(direct_url, json_headers, payload, concurrency, duration, warmup)
        )
        # Warm the nodes' pools first (the node-to-node mTLS connections, one handshake
        # each, ~1.3 ms CPU per side): a kept-alive pool is the steady state measured.
        run_load(node_url, node_headers, payload, concurrency, warmup, 0.0)
        before = sum(cpu_seconds(p) for p in node_pids)
        started = time.perf_counter()
        with PeakRss(dict(zip(("aizu", "takamatsu"), node_pids, strict=True))) as rss:
            result = run_load(node_url, node_headers, payload, concurrency, duration, warmup)
        elapsed = time.perf_counter() - started
        used = sum(cpu_seconds(p) for p in node_pids) - before
        peaks = {name: max(peaks[name], rss.peak[name]) for name in peaks}
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
        "ratio": round(
            statistics.median(r.rps for r in node_runs)
            / statistics.median(r.rps for r in direct_runs),
            3,
        ),
        "direct_p50_ms": round(direct.pct(0.5), 3),
        "node_p50_ms": round(node.pct(0.5), 3),
        "direct_p99_ms": round(direct.pct(0.99), 3),
        "node_p99_ms": round(node.pct(0.99), 3),
        "node_cpu_us_per_msg": round(statistics.median(node_cpu), 1),
        "aizu_peak_rss_mib": round(peaks["aizu"], 1),
        "taka_peak_rss_mib": round(peaks["takamatsu"], 1),
        "errors": sum(r.errors for r in node_runs + direct_runs),
    }


# ----- profiles (py-spy) ----------------------------------------------------------
def py_spy() -> str:
    """py-spy on PATH, or beside this Python (the venv's ``[bench]`` extra, not activated)."""
    beside = Path(sys.executable).parent / "py-spy"
    found = shutil.which("py-spy") or (str(beside) if beside.exists() else None)
    if found is None:
        raise SystemExit("--profile needs py-spy: pip install -e '.[bench]'")
    return found


class Profiler:
    """``py-spy record`` on both nodes' process trees while the scenarios run.

    Each node's collapsed stacks go to ``DIR/<node>.txt``; ``DIR/<node>-summary.txt``
    lists the functions with the largest shares of samples, self and inclusive.
    """

    def __init__(self, directory: Path, pids: dict[str, int]) -> None:
        self.directory = directory
        self.pids = pids
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> Profiler:
        self.directory.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            self.procs[name] = subprocess.Popen(
                [
                    py_spy(), "record", "--pid", str(pid), "--subprocesses", "--rate", "200",
                    "--format", "raw", "--output", str(self.directory / f"{name}.txt"),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        time.sleep(1.0)
        return self

    def __exit__(self, *_exc: object) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGINT)
        for name, proc in self.procs.items():
            proc.wait(60)
            raw = self.directory / f"{name}.txt"
            if raw.exists():
                (self.directory / f"{name}-summary.txt").write_text(summarise(raw))


def summarise(raw: Path, top: int = 30) -> str:
    """Self and inclusive shares of samples per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        total += count
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count

    def share(counts: Counter[str]) -> list[str]:
        return [f"{100 * n / total:6.2f}  {f}" for f, n in counts.most_common(top)] if total else []

    lines = [f"{total} samples", "", "self %  function", *share(own)]
    lines += ["", "incl %  function", *share(inclusive)]
    return "\n".join(lines) + "\n"


# ----- message log on/off -------------------------------------------------------
def set_message_log(fed: Federation, on: bool) -> None:
    """Restart both nodes with ``[messagelog] enabled`` = ``on`` (1 s stamping when on)."""
    import re

    for city in fed.nodes.values():
        proc = fed.processes.pop(f"node-{city.name}", None)
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        path = city.dir / "secnode.toml"
        text = re.sub(
            r"(?m)^enabled = \w+", f"enabled = {'true' if on else 'false'}", path.read_text()
        )
        path.write_text(
            re.sub(r"(?m)^timestamping_interval = \d+", "timestamping_interval = 1", text)
        )
        fed.start_node(city)


def log_cost(
    fed: Federation, payload_size: int, concurrency: int, duration: float, warmup: float, reps: int
) -> dict[str, object]:
    """Node throughput with the log on vs off, alternating (on/off, off/on, ...) against drift."""
    takamatsu = fed.nodes["takamatsu"]
    payload = (b'{"data":"' + b"x" * max(0, payload_size - 11) + b'"}')[:payload_size]
    url = f"{takamatsu.client_url}/r1/{fed.nodes['aizu'].member}/residents/echo"
    headers = {"Content-Type": "application/json", "X-Road-Client": takamatsu.client_id}
    runs: dict[bool, list[RunResult]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    for rep in range(reps):
        for on in (True, False) if rep % 2 == 0 else (False, True):
            set_message_log(fed, on)
            pids = [fed.processes["node-aizu"].pid, fed.processes["node-takamatsu"].pid]
            before = sum(cpu_seconds(p) for p in pids)
            started = time.perf_counter()
            result = run_load(url, headers, payload, concurrency, duration, warmup)
            elapsed = time.perf_counter() - started
            used = sum(cpu_seconds(p) for p in pids) - before
            total = result.requests * (elapsed / duration) if duration else 0
            runs[on].append(result)
            cpu[on].append(used / total * 1e6 if total else float("nan"))
    on_rps = statistics.median(r.rps for r in runs[True])
    off_rps = statistics.median(r.rps for r in runs[False])
    return {
        "payload": payload_size,
        "concurrency": concurrency,
        "log_off_rps": round(off_rps, 1),
        "log_on_rps": round(on_rps, 1),
        "loss": round(1 - on_rps / off_rps, 3) if off_rps else None,
        "log_off_p50_ms": round(statistics.median(r.pct(0.5) for r in runs[False]), 3),
        "log_on_p50_ms": round(statistics.median(r.pct(0.5) for r in runs[True]), 3),
        "log_off_cpu_us": round(statistics.median(cpu[False]), 1),
        "log_on_cpu_us": round(statistics.median(cpu[True]), 1),
        "runs": reps,
        "errors": sum(r.errors for rs in runs.values() for r in rs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs (< 2 minutes)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--dir", default=None, help="federation directory (default: temp)")
    parser.add_argument(
        "--policy",
        choices=["on", "off", "both"],
        default="on",
        help="policy enforcement during the runs; 'both' also measures its cost",
    )
    parser.add_argument(
        "--policy-reps",
        type=int,
        default=None,
        help="on/off alternations per point for --policy both (default 4, quick 2)",
    )
    parser.add_argument("--duration", type=float, default=None)
    parser.add_argument("--payloads", default="1024,65536,1048576")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="serve --workers for each node (default 1: the two nodes share this host)",
    )
    parser.add_argument(
        "--profile",
        default=None,
        metavar="DIR",
        help="record both nodes with py-spy during the scenarios; summaries in DIR",
    )
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument(
        "--log",
        choices=["on", "off", "both"],
        default="on",
        help="message log during the runs; 'both' also measures its cost",
    )
    parser.add_argument(
        "--log-reps",
        type=int,
        default=None,
        help="on/off alternations per point for --log both (default 4, quick 2)",
    )
    args = parser.parse_args()
    duration = args.duration or (2.0 if args.quick else 8.0)
    warmup = 0.5 if args.quick else 1.5
    reps = 1 if args.quick else 2
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="secnode-bench-"))
    say = (lambda _m: None) if args.json else (lambda m: print(m, file=sys.stderr))
    os.environ["SECNODE_WORKERS"] = str(args.workers)  # the nodes' env is copied from ours
    fed = build_two_city_federation(base, say=say)
    points = [
        (int(p), int(c)) for p in args.payloads.split(",") for c in args.concurrency.split(",")
    ]
    log_rows: list[dict[str, object]] = []
    policy_rows: list[dict[str, object]] = []
    try:
        if args.log == "off":
            set_message_log(fed, False)
        if args.policy == "off":
            set_policy(fed, False)
        if args.profile:
            pids = {n: fed.processes[f"node-{n}"].pid for n in ("aizu", "takamatsu")}
            with Profiler(Path(args.profile), pids):
                scenarios = [scenario(fed, p, c, duration, warmup, reps) for p, c in points]
            say(f"py-spy summaries in {args.profile}/{{aizu,takamatsu}}-summary.txt")
        else:
            scenarios = [scenario(fed, p, c, duration, warmup, reps) for p, c in points]
        if args.log == "both":
            log_reps = args.log_reps or (2 if args.quick else 4)
            log_rows = [log_cost(fed, p, c, duration, warmup, log_reps) for p, c in points]
        if args.policy == "both":
            personal = personal_echo(fed)
            policy_reps = args.policy_reps or (2 if args.quick else 4)
            policy_rows = [
                policy_cost(fed, p, c, duration, warmup, policy_reps, personal) for p, c in points
            ]
    finally:
        fed.stop()
    if args.json:
        print(json.dumps({"scenarios": scenarios, "message_log": log_rows, "policy": policy_rows}))
    else:
        cols = [
            "payload",
            "concurrency",
            "direct_rps",
            "node_rps",
            "ratio",
            "direct_p50_ms",
            "node_p50_ms",
            "direct_p99_ms",
            "node_p99_ms",
            "node_cpu_us_per_msg",
            "aizu_peak_rss_mib",
            "taka_peak_rss_mib",
            "errors",
        ]
        print(f"workers per node: {args.workers}")
        print(" | ".join(cols))
        print(" | ".join("---" for _ in cols))
        for row in scenarios:
            print(" | ".join(str(row[c]) for c in cols))
        for row in scenarios:
            if row["concurrency"] == 1:
                print(
                    f"added p50 latency at c=1, {row['payload']} B: "
                    f"{float(row['node_p50_ms']) - float(row['direct_p50_ms']):.2f} ms"
                )
        if log_rows:
            cols = [
                "payload",
                "concurrency",
                "log_off_rps",
                "log_on_rps",
                "loss",
                "log_off_p50_ms",
                "log_on_p50_ms",
                "log_off_cpu_us",
                "log_on_cpu_us",
                "runs",
                "errors",
            ]
            print("\nmessage log cost (log + 1 s time-stamping on vs off):")
            print(" | ".join(cols))
            print(" | ".join("---" for _ in cols))
            for row in log_rows:
                print(" | ".join(str(row[c]) for c in cols))
        if policy_rows:
            cols = [
                "payload",
                "concurrency",
                "off_p50_ms",
                "on_p50_ms",
                "policy_ms",
                "policy_share",
                "ab_p50_added",
                "personal_p50_ms",
                "personal_policy_ms",
                "personal_share",
                "off_cpu_us",
                "on_cpu_us",
                "personal_cpu_us",
                "off_rps",
                "on_rps",
                "personal_rps",
                "runs",
                "errors",
            ]
            print("\npolicy decision cost (enforced vs not; personal = full policy path):")
            print(" | ".join(cols))
            print(" | ".join("---" for _ in cols))
            for row in policy_rows:
                print(" | ".join(str(row[c]) for c in cols))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
