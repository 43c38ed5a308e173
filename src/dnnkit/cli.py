"""The ``dnnkit`` command line: list · show · reproduce · bench · report."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table as RichTable

from dnnkit.core import registry
from dnnkit.core.config import config_to_dict
from dnnkit.core.progress import progress_enabled
from dnnkit.core.report import fmt, write_index

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="dnnkit: fourteen deep-learning papers as tested, reusable software.")
console = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 140)


def _fail(msg: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {msg}")
    raise typer.Exit(code)


def _check_seed(seed: int) -> None:
    """The seed is used whole (torch and numpy take up to 2**63 - 1): refuse, never truncate."""
    if not 0 <= seed <= 2**63 - 1:
        _fail(f"--seed must be an int in [0, 2**63 - 1]. Got {seed} instead.")


def _check_writable_dir(path: Path, option: str) -> None:
    """Refuse an output folder that cannot be written, before any computation."""
    import os
    import tempfile

    if path.exists() and not path.is_dir():
        _fail(f"{option} {str(path)!r} is a file, not a folder.")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        _fail(f"{option} {str(path)!r} is not writable (checked {str(probe)!r}).")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".dnnkit-write-check-"):
            pass
    except OSError as exc:
        _fail(f"{option} {str(path)!r} is not writable: {exc.strerror or exc}.")


def _check_writable_file(path: Path, option: str) -> None:
    """Refuse an output file whose folder is missing or read-only, before any computation."""
    import os

    if path.is_dir():
        _fail(f"{option} {str(path)!r} is a folder, not a file.")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        _fail(f"{option} {str(path)!r}: the folder {str(parent)!r} does not exist.")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists()
                                                    and not os.access(path, os.W_OK)):
        _fail(f"{option} {str(path)!r} is not writable.")


def _get(name: str) -> registry.Experiment:
    try:
        return registry.get(name)
    except KeyError as exc:
        _fail(str(exc.args[0]))
        raise  # unreachable


@app.command("list")
def list_cmd() -> None:
    """List the registered experiments and benchmarks."""
    t = RichTable("experiment", "paper", "claim", "bench")
    benches = set(registry.bench_names())
    for n in registry.names():
        e = registry.get(n)
        t.add_row(n, e.paper, e.claim, "yes" if n in benches else "-")
    console.print(t)


@app.command()
def show(name: str) -> None:
    """Show an experiment's paper, claim and default / quick configs."""
    e = _get(name)
    console.print(f"[bold]{e.name}[/]  ({e.module})\npaper: {e.paper}\nclaim: {e.claim}")
    console.print("default config:", json.dumps(config_to_dict(e.default_config()), indent=2))
    console.print("quick config:", json.dumps(config_to_dict(e.default_config(True)), indent=2))


@app.command()
def reproduce(
    names: Optional[list[str]] = typer.Argument(None, help="experiments to run"),
    all_: bool = typer.Option(False, "--all", help="run every registered experiment"),
    quick: bool = typer.Option(False, "--quick", help="smallest config that still checks claims"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda[:N]"),
    out: Path = typer.Option(Path("results"), "--out", help="output folder"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="config override key=value"),
    strict: bool = typer.Option(False, "--strict", help="exit 1 when a claim check fails"),
    no_progress: bool = typer.Option(False, "--no-progress"),
) -> None:
    """Run paper reproductions and write reports (report.md, metrics.json, figures, index)."""
    from dnnkit.core.runner import run_experiment

    chosen = registry.names() if all_ else list(names or [])
    if not chosen:
        _fail("name at least one experiment or pass --all (see `dnnkit list`).")
    for n in chosen:
        _get(n)
    if set_ and len(chosen) > 1:
        _fail("--set applies to one experiment at a time.")
    _check_seed(seed)
    if set_:
        from dnnkit.core.config import apply_overrides

        e = _get(chosen[0])
        try:  # the Config dataclasses declare their fields' constraints: check before work
            apply_overrides(e.default_config(quick), set_)
        except (KeyError, ValueError, TypeError) as exc:
            _fail(f"{chosen[0]}: {exc.args[0] if exc.args else exc}")
    _check_writable_dir(out, "--out")
    failed = []
    for n in chosen:
        console.print(f"[bold]reproducing {n}[/] ({'quick' if quick else 'default'} config)")
        try:
            outcome = run_experiment(n, out=out, quick=quick, seed=seed, device=device,
                                     overrides=set_ or None,
                                     progress=progress_enabled(None) and not no_progress)
        except (KeyError, ValueError, TypeError) as exc:
            _fail(f"{n}: {exc.args[0] if exc.args else exc}")
            raise
        for c in outcome.result.claims:
            mark = "[green]PASS[/]" if c.passed else "[red]FAIL[/]"
            console.print(f"  {mark} {c.name}: {fmt(c.measured)} (expected {c.expected})")
        console.print(f"  {outcome.seconds:.1f} s -> {outcome.out_dir / 'report.md'}")
        if not outcome.result.passed:
            failed.append(n)
    console.print(f"index: {out / 'index.html'}")
    if failed:
        console.print(f"[yellow]claim checks failed for: {', '.join(failed)}[/]")
        if strict:
            raise typer.Exit(1)


@app.command()
def bench(
    name: str,
    quick: bool = typer.Option(False, "--quick", help="smaller sizes, fewer repeats"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the rows as JSON"),
) -> None:
    """Time dnnkit against its anchor library on the same work, in one process."""
    try:
        b = registry.get_bench(name)
    except KeyError as exc:
        _fail(str(exc.args[0]))
        raise
    if json_out is not None:
        _check_writable_file(json_out, "--json")
    rows = b.run(quick=quick)
    t = RichTable("work", "dnnkit (s)", "anchor", "anchor (s)", "anchor/dnnkit", "note")
    for r in rows:
        t.add_row(r.label, f"{r.ours_s:.4g}", r.anchor, f"{r.anchor_s:.4g}",
                  f"{r.speedup:.3g}x", r.note)
    console.print(t)
    if json_out is not None:
        json_out.write_text(json.dumps([r.as_dict() for r in rows], indent=2))


@app.command()
def report(root: Path = typer.Argument(Path("results"))) -> None:
    """Rebuild index.md and index.html from the run folders under ROOT."""
    if not root.is_dir():
        _fail(f"{str(root)!r} is not a folder with reproduction results.")
    md, page = write_index(root)
    console.print(f"wrote {md} and {page}")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
