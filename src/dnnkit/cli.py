"""The ``dnnkit`` command line: list · show · reproduce · bench · report."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional

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


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


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
    jobs: Optional[int] = typer.Option(
        None, "--jobs", "-j", min=1,
        help="worker processes when several experiments run (default: the core count); each "
             "worker is pinned to its share of the cores"),
) -> None:
    """Run paper reproductions and write reports (report.md, metrics.json, figures, index)."""
    from dnnkit.core.runner import ResultsLocked, out_lock, run_experiment

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
    jobs = min(jobs or _cores(), len(chosen))
    show_progress = progress_enabled(None) and not no_progress
    failed: list[str] = []
    try:
        with out_lock(out):
            if jobs > 1:
                failed, errors = _reproduce_parallel(chosen, jobs, quick=quick, seed=seed,
                                                     device=device, out=out,
                                                     progress=show_progress)
                write_index(out)
                if errors:
                    console.print(f"index: {out / 'index.html'}")
                    _fail(f"these reproductions stopped with an error: {', '.join(errors)} "
                          f"(their output is above).")
            else:
                for n in chosen:
                    console.print(f"[bold]reproducing {n}[/] "
                                  f"({'quick' if quick else 'default'} config)")
                    try:
                        outcome = run_experiment(n, out=out, quick=quick, seed=seed,
                                                 device=device, overrides=set_ or None,
                                                 progress=show_progress)
                    except ResultsLocked:
                        raise
                    except (KeyError, ValueError, TypeError) as exc:
                        _fail(f"{n}: {exc.args[0] if exc.args else exc}")
                        raise
                    for c in outcome.result.claims:
                        mark = "[green]PASS[/]" if c.passed else "[red]FAIL[/]"
                        console.print(f"  {mark} {c.name}: {fmt(c.measured)} "
                                      f"(expected {c.expected})")
                    console.print(f"  {outcome.seconds:.1f} s -> {outcome.out_dir / 'report.md'}")
                    if not outcome.result.passed:
                        failed.append(n)
    except ResultsLocked as exc:
        _fail(str(exc))
    console.print(f"index: {out / 'index.html'}")
    if failed:
        console.print(f"[yellow]claim checks failed for: {', '.join(failed)}[/]")
        if strict:
            raise typer.Exit(1)


def _reproduce_parallel(chosen: list[str], jobs: int, *, quick: bool, seed: int, device: str,
                        out: Path, progress: bool) -> tuple[list[str], list[str]]:
    """Run each experiment in its own ``dnnkit reproduce NAME`` worker process, ``jobs`` at once.

    Workers inherit the parent's lock on ``out``; each gets ``cores // jobs`` threads and, on
    Linux, is pinned to its own block of cores. One line per running module shows its progress.
    Returns (experiments whose claim checks failed, experiments that stopped with an error).
    """
    import subprocess
    import tempfile
    import time

    from rich.live import Live
    from rich.text import Text

    from dnnkit.core.runner import _HELD_ENV

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    per = max(1, (len(cores) or jobs) // jobs)
    env = {**os.environ, _HELD_ENV: str(out.resolve()), "OMP_NUM_THREADS": str(per),
           "MKL_NUM_THREADS": str(per), "PYTHONUNBUFFERED": "1"}
    logs = Path(tempfile.mkdtemp(prefix="dnnkit-jobs-"))
    pending = list(chosen)
    running: dict[str, tuple[subprocess.Popen, float, int, Any]] = {}
    free_slots = list(range(jobs))
    failed, errors = [], []
    console.print(f"[bold]reproducing {len(chosen)} experiments[/] with {jobs} workers "
                  f"x {per} thread(s) ({'quick' if quick else 'default'} configs)")

    def start(name: str) -> None:
        slot = free_slots.pop(0)
        cpus = set(cores[slot * per:(slot + 1) * per]) if len(cores) >= jobs * per else None
        cmd = [sys.executable, "-m", "dnnkit", "reproduce", name, "--out", str(out), "--seed",
               str(seed), "--device", device, "--no-progress", "--jobs", "1", "--strict"]
        if quick:
            cmd.append("--quick")
        log_fh = open(logs / f"{name}.log", "w+")
        pre = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        proc = subprocess.Popen(cmd, env=env, stdout=log_fh, stderr=subprocess.STDOUT,
                                preexec_fn=pre)
        running[name] = (proc, time.perf_counter(), slot, log_fh)

    def lines() -> Text:
        now = time.perf_counter()
        t = Text()
        for name, (_, t0, slot, _) in running.items():
            t.append(f"  [{slot}] {name}: running {now - t0:.0f} s\n")
        t.append(f"  {len(chosen) - len(pending) - len(running)}/{len(chosen)} done")
        return t

    live = Live(lines(), console=console, transient=True, auto_refresh=False) if progress \
        else None
    try:
        if live is not None:
            live.start()
        while pending or running:
            while pending and free_slots:
                name = pending.pop(0)
                start(name)
                if live is None:
                    console.print(f"  started {name}")
            for name in list(running):
                proc, t0, slot, log_fh = running[name]
                rc = proc.poll()
                if rc is None:
                    continue
                del running[name]
                free_slots.append(slot)
                log_fh.seek(0)
                text = log_fh.read()
                log_fh.close()
                status = {0: "[green]PASS[/]", 1: "[yellow]claims failed[/]"}.get(
                    rc, f"[red]error (exit {rc})[/]")
                if live is not None:
                    live.stop()
                console.print(f"[bold]{name}[/]: {status} in {time.perf_counter() - t0:.1f} s")
                console.print(text.rstrip(), markup=False, highlight=False)
                if live is not None:
                    live.start()
                if rc == 1:
                    failed.append(name)
                elif rc != 0:
                    errors.append(name)
            if live is not None:
                live.update(lines(), refresh=True)
            time.sleep(0.2)
    finally:
        if live is not None:
            live.stop()
        for proc, _, _, log_fh in running.values():   # interrupted: stop our workers
            proc.terminate()
            log_fh.close()
        import shutil

        shutil.rmtree(logs, ignore_errors=True)
    return failed, errors


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
    """Rebuild index.md and index.html from the run folders under ROOT.

    A damaged run folder is skipped with a warning naming it; the good ones are still indexed."""
    if not root.is_dir():
        _fail(f"{str(root)!r} is not a folder with reproduction results.")
    md, page = write_index(root)
    console.print(f"wrote {md} and {page}")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
