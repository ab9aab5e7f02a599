"""``secnode demo``: run the two-city federation and show sample exchanges both ways."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import click

from secnode.core.identifiers import ServiceId, SubsystemId
from secnode.demo.calls import CallResult, call_rest, call_soap, http
from secnode.demo.federation import DemoError, Federation, build_two_city_federation


def _show(title: str, result: CallResult, expect: bytes) -> bool:
    ok = result.status == 200 and expect in result.body
    mark = "OK  " if ok else "FAIL"
    click.echo(f"  [{mark}] {title}: HTTP {result.status}")
    for name in ("X-Road-Id", "X-Road-Client", "X-Road-Service", "X-Road-Request-Hash",
                 "X-Road-Error"):
        if name in result.headers:
            value = result.headers[name]
            click.echo(f"         {name}: {value[:60]}{'...' if len(value) > 60 else ''}")
    preview = result.body.decode("utf-8", "replace").strip().replace("\n", " ")
    click.echo(f"         body: {preview[:160]}{'...' if len(preview) > 160 else ''}")
    return ok


def sample_calls(fed: Federation) -> bool:
    aizu, takamatsu = fed.nodes["aizu"], fed.nodes["takamatsu"]
    residents = ServiceId.parse(f"{aizu.member}/residents/residents")
    welfare = ServiceId.parse(f"{takamatsu.member}/welfare/getResident")
    click.echo("\nSample exchanges:")
    results = [
        _show(f"REST  {takamatsu.client_id} -> {residents}/1001 (via Takamatsu and Aizu nodes)",
              call_rest(takamatsu.client_url, SubsystemId.parse(takamatsu.client_id),
                        residents, "/1001"), b"Aizu Taro"),
        _show(f"SOAP  {aizu.client_id} -> {welfare} (via Aizu and Takamatsu nodes)",
              call_soap(aizu.client_url, SubsystemId.parse(aizu.client_id), welfare,
                        "<ns1:id>2002</ns1:id>"), b"Sanuki Hanako"),
        _show("REST  listClients at the Aizu node",
              http("GET", aizu.client_url + "/listClients", None,
                   {"Accept": "application/json"}), b"372013"),
        _show(f"REST  listMethods of {aizu.member}/residents (from Takamatsu)",
              call_rest(takamatsu.client_url, SubsystemId.parse(takamatsu.client_id),
                        ServiceId.parse(f"{aizu.member}/residents/listMethods")),
              b"residents"),
    ]
    denied = call_rest(aizu.client_url, SubsystemId.parse(aizu.client_id), residents, "/1001")
    denied_ok = denied.status >= 400 and b"AccessDenied" in denied.body
    click.echo(f"  [{'OK  ' if denied_ok else 'FAIL'}] refusal without an access right "
               f"(Aizu portal -> Aizu residents): HTTP {denied.status} "
               f"{denied.headers.get('X-Road-Error', '')}")
    results.append(denied_ok)
    return all(results)


def print_usage(fed: Federation) -> None:
    aizu, takamatsu = fed.nodes["aizu"], fed.nodes["takamatsu"]
    click.echo(f"""
The federation is running (Ctrl-C stops it). Directories under {fed.base}:
  ca/ tsa/ central/ aizu/ takamatsu/  (use certs / central / secnode --dir on them)
  passphrase file: {fed.base / 'passphrase'} (export SECNODE_PASSPHRASE=$(cat ...))

Try:
  curl -s -H 'X-Road-Client: {takamatsu.client_id}' \\
       {takamatsu.client_url}/r1/{aizu.member}/residents/residents/1001
  curl -s {aizu.client_url}/listClients
  curl -s {aizu.admin_url}/health
  curl -s {takamatsu.admin_url}/metrics
  SECNODE_PASSPHRASE=$(cat {fed.base / 'passphrase'}) secnode status --dir {aizu.dir}
""")


def register(main: click.Group) -> None:
    @main.command("demo")
    @click.option("--dir", "base", default="demo", show_default=True,
                  type=click.Path(file_okay=False), help="Where to build the federation.")
    @click.option("--once", is_flag=True, help="Run the sample calls, then stop (exit 1 on "
                  "any failure).")
    def demo(base: str, once: bool) -> None:
        """Build and run a two-city federation (CA, OCSP, TSA, central, two nodes)."""
        started = time.monotonic()
        click.echo(f"Building the demo federation in {Path(base).resolve()} ...")
        try:
            fed = build_two_city_federation(Path(base).resolve(), say=click.echo)
        except DemoError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        try:
            click.echo(f"Federation up in {time.monotonic() - started:.1f} s; "
                       f"manifest {fed.base / 'demo.json'}")
            ok = sample_calls(fed)
            if once:
                click.echo("\nall sample calls succeeded" if ok else "\nsome sample calls FAILED")
                sys.exit(0 if ok else 1)
            print_usage(fed)
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            fed.stop()
