"""What ``secnode demo`` shows: sample exchanges both ways and how to try the federation.

The command itself is :mod:`secnode.cli.commands.demo`."""

from __future__ import annotations

import click

from secnode.core.identifiers import ServiceId, SubsystemId
from secnode.demo.calls import CallResult, call_rest, call_soap, http
from secnode.demo.federation import Federation


def _show(title: str, result: CallResult, expect: bytes) -> bool:
    ok = result.status == 200 and expect in result.body
    mark = "OK  " if ok else "FAIL"
    click.echo(f"  [{mark}] {title}: HTTP {result.status}")
    for name in (
        "X-Road-Id",
        "X-Road-Client",
        "X-Road-Service",
        "X-Road-Request-Hash",
        "X-Road-Error",
    ):
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
        _show(
            f"REST  {takamatsu.client_id} -> {residents}/1001 (via Takamatsu and Aizu nodes)",
            call_rest(
                takamatsu.client_url, SubsystemId.parse(takamatsu.client_id), residents, "/1001"
            ),
            b"Aizu Taro",
        ),
        _show(
            f"SOAP  {aizu.client_id} -> {welfare} (via Aizu and Takamatsu nodes)",
            call_soap(
                aizu.client_url, SubsystemId.parse(aizu.client_id), welfare, "<ns1:id>2002</ns1:id>"
            ),
            b"Sanuki Hanako",
        ),
        _show(
            "REST  listClients at the Aizu node",
            http("GET", aizu.client_url + "/listClients", None, {"Accept": "application/json"}),
            b"372013",
        ),
        _show(
            f"REST  listMethods of {aizu.member}/residents (from Takamatsu)",
            call_rest(
                takamatsu.client_url,
                SubsystemId.parse(takamatsu.client_id),
                ServiceId.parse(f"{aizu.member}/residents/listMethods"),
            ),
            b"residents",
        ),
    ]
    denied = call_rest(aizu.client_url, SubsystemId.parse(aizu.client_id), residents, "/1001")
    denied_ok = denied.status >= 400 and b"AccessDenied" in denied.body
    click.echo(
        f"  [{'OK  ' if denied_ok else 'FAIL'}] refusal without an access right "
        f"(Aizu portal -> Aizu residents): HTTP {denied.status} "
        f"{denied.headers.get('X-Road-Error', '')}"
    )
    results.append(denied_ok)
    return all(results)


def print_usage(fed: Federation) -> None:
    aizu, takamatsu = fed.nodes["aizu"], fed.nodes["takamatsu"]
    click.echo(f"""
The federation is running (Ctrl-C stops it). Directories under {fed.base}:
  ca/ tsa/ central/ aizu/ takamatsu/  (use certs / central / secnode --dir on them)
  passphrase file: {fed.base / "passphrase"} (export SECNODE_PASSPHRASE=$(cat ...))

Try:
  curl -s -H 'X-Road-Client: {takamatsu.client_id}' \\
       {takamatsu.client_url}/r1/{aizu.member}/residents/residents/1001
  curl -s {aizu.client_url}/listClients
  curl -s --cacert {aizu.tls_cert} {aizu.admin_url}/health
  curl -s --cacert {takamatsu.tls_cert} {takamatsu.admin_url}/metrics
  SECNODE_PASSPHRASE=$(cat {fed.base / "passphrase"}) secnode status --dir {aizu.dir}

Web console (make an account first; there is none by default):
  SECNODE_PASSPHRASE=$(cat {fed.base / "passphrase"}) \\
    secnode admin user add NAME --role operator --dir {aizu.dir}
Resident disclosure page (a code per resident):
  secnode records access-code --subject SUBJECT --dir {aizu.dir}
""")


def print_console_urls(fed: Federation) -> None:
    """Each node's console and disclosure page (self-signed HTTPS; certificate in its dir)."""
    click.echo("\nWeb consoles and resident disclosure pages:")
    for city in fed.nodes.values():
        click.echo(f"  {city.name:10} console_url    {city.console_url}")
        click.echo(f"  {'':10} disclosure_url {city.disclosure_url}")
