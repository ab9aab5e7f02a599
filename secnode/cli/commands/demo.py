"""``secnode demo``: build the two-city federation, run sample exchanges both ways."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import click

from secnode.demo.cli import print_console_urls, print_usage, sample_calls
from secnode.demo.federation import DemoError, build_two_city_federation
from secnode.demo.mission import run_mission


@click.command("demo")
@click.option(
    "--dir",
    "base",
    default="demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where to build the federation.",
)
@click.option(
    "--once",
    is_flag=True,
    help="Run the sample calls and the mission, then stop (exit 1 on any failure).",
)
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
        click.echo(
            f"Federation up in {time.monotonic() - started:.1f} s; "
            f"manifest {fed.base / 'demo.json'}"
        )
        print_console_urls(fed)
        ok = sample_calls(fed)
        mission_ok = run_mission(fed.base, say=click.echo)
        if once:
            click.echo("\nall sample calls succeeded" if ok else "\nsome sample calls FAILED")
            click.echo(
                "every mission step showed its point" if mission_ok else "the mission FAILED"
            )
            sys.exit(0 if ok and mission_ok else 1)
        print_usage(fed)
        click.echo(
            f"The mission ran ({'OK' if mission_ok else 'with FAILURES'}); its documents "
            f"are in {fed.base / 'mission'}, its report beside demo.json."
        )
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fed.stop()
