"""Issue 12, results folders and ``dnnkit report``: whole runs only (SIGKILL during the write),
atomic JSON, a lock on --out, damaged metrics skipped, escaping, figures from the run folder only,
RunContext.path refusing escaping names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dnnkit
from dnnkit.core import registry
from dnnkit.core.report import Claim, Result, write_index, write_run

SRC = str(Path(dnnkit.__file__).resolve().parents[1])   # the dnnkit under test

# A child process registers a tiny experiment and runs it; in "kill" mode it SIGKILLs itself
# while the metrics JSON is being produced (json.dumps is the one step both the old and the new
# writer share).
CHILD = textwrap.dedent("""
    import json, os, signal, sys
    from dataclasses import dataclass
    from dnnkit.core import registry
    from dnnkit.core.report import Claim, Result
    from dnnkit.core.runner import run_experiment

    @dataclass(frozen=True)
    class Config:
        tag: str = "A"
        @classmethod
        def quick(cls):
            return cls()

    @registry.register("tiny", paper="P", claim="C", config=Config)
    def run(cfg, ctx):
        ctx.path("fig.txt").write_text(cfg.tag)
        return Result(summary=cfg.tag, claims=[Claim.holds("ok", True)])

    registry._DISCOVERED = True
    mode, out, tag = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "kill":
        real = json.dumps
        def dumps(obj, *a, **k):
            if isinstance(obj, dict) and "claims" in obj and k.get("indent"):
                os.kill(os.getpid(), signal.SIGKILL)
            return real(obj, *a, **k)
        json.dumps = dumps
    run_experiment("tiny", out=out, overrides={"tag": tag})
""")


def _child(tmp_path, *args, **kw):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True,
                          text=True, timeout=120, **kw)


@dataclass(frozen=True)
class TinyConfig:
    tag: str = "A"

    @classmethod
    def quick(cls):
        return cls()


@pytest.fixture
def tiny():
    """The child's tiny experiment, registered in this process for the test only."""
    def run(cfg, ctx):
        ctx.path("fig.txt").write_text(cfg.tag)
        return Result(summary=cfg.tag, claims=[Claim.holds("ok", True)])

    registry.names()                                    # discover the real ones first
    registry.register("tiny", paper="P", claim="C", config=TinyConfig)(run)
    yield "tiny"
    registry._EXPERIMENTS.pop("tiny", None)


def test_sigkill_during_results_write_leaves_the_previous_whole_run(tmp_path, tiny):
    from dnnkit.core.runner import run_experiment

    out = tmp_path / "results"
    run_experiment(tiny, out=out, overrides={"tag": "A"})
    killed = _child(tmp_path, "kill", str(out), "B")
    assert killed.returncode == -9, killed.stderr
    run = out / "tiny"
    cfg = json.loads((run / "config.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert cfg["config"]["tag"] == "A" and metrics["summary"] == "A"   # one run, not a mix
    assert (run / "fig.txt").read_text() == "A"
    assert not list(run.glob("*.tmp"))
    # the next run cleans the killed run's leftovers and swaps in whole
    run_experiment(tiny, out=out, overrides={"tag": "C"})
    assert json.loads((run / "metrics.json").read_text())["summary"] == "C"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".tiny")) == []


def test_second_writer_into_the_same_out_gets_a_clear_error(tmp_path, tiny):
    from dnnkit.cli import app
    from dnnkit.core.runner import ResultsLocked, out_lock, run_experiment

    out = tmp_path / "results"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from dnnkit.core.runner import out_lock\n"
         f"with out_lock({str(out)!r}):\n print('locked', flush=True); sys.stdin.readline()"],
        env={**os.environ, "PYTHONPATH": SRC}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ResultsLocked, match="another dnnkit reproduce .* --out"):
            run_experiment(tiny, out=out)
        r = CliRunner().invoke(app, ["reproduce", tiny, "--out", str(out), "--no-progress"])
        assert r.exit_code == 2 and "another dnnkit reproduce" in r.output
        assert not (out / "tiny").exists()
    finally:
        holder.communicate("\n", timeout=60)
    with out_lock(out):                  # re-entrant within one process
        run_experiment(tiny, out=out, index=False)
    run_experiment(tiny, out=out)        # free again
    assert (out / "tiny" / "metrics.json").is_file()


def _good_run(folder: Path, name: str, figures=(), claim_name="acc") -> None:
    write_run(folder, name=name, paper="Paper 2020", claim="It works.", config={},
              result=Result(summary="s", claims=[Claim.at_least(claim_name, 0.9, 0.5,
                                                                paper="0.95")],
                            figures=list(figures)), seed=0, seconds=1.0)


@pytest.mark.parametrize("content", [b"", b"{\"experiment\": \"x\", \"cla", b"[]", b"{}",
                                     b"{\"experiment\": \"x\"}", b"\xff\xfe\x00bad",
                                     b"{\"experiment\": \"x\", \"paper\": \"p\", \"claim\": \"c\","
                                     b" \"claims\": [{\"name\": \"a\"}]}"])
def test_report_skips_damaged_runs_with_a_warning_and_indexes_the_rest(tmp_path, caplog,
                                                                       content):
    _good_run(tmp_path / "good", "good")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metrics.json").write_bytes(content)
    with caplog.at_level("WARNING", logger="dnnkit"):
        md, page = write_index(tmp_path)
    assert "broken" in caplog.text
    assert "[good]" in md.read_text() and "good" in page.read_text()
    assert "Skipped" in md.read_text()


def test_cli_report_and_later_reproduce_survive_a_damaged_sibling(tmp_path):
    from dnnkit.cli import app

    _good_run(tmp_path / "good", "good")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metrics.json").write_text("{}")
    r = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "index.html").is_file()


def test_index_escapes_every_string(tmp_path):
    evil = "<script>alert(1)</script>|[x](javascript:y)"
    write_run(tmp_path / "run", name=evil, paper=evil, claim=evil, config={},
              result=Result(summary=evil, claims=[Claim.holds(evil, True, measured=evil,
                                                              paper=evil)]),
              seed=0, seconds=1.0)
    md, page = write_index(tmp_path)
    for text in (md.read_text(), page.read_text()):
        assert "<script>" not in text
    assert "](javascript:" not in md.read_text()
    assert "&lt;script&gt;" in page.read_text()


def test_only_figures_inside_the_run_folder_are_embedded(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.plot([0, 1])
    plt.savefig(tmp_path / "secret.png")
    plt.close()
    run = tmp_path / "results" / "exp"
    _good_run(run, "exp")
    m = json.loads((run / "metrics.json").read_text())
    m["figures"] = ["../../secret.png", str(tmp_path / "secret.png")]
    (run / "metrics.json").write_text(json.dumps(m))
    _, page = write_index(tmp_path / "results")
    assert "data:image/png" not in page.read_text()
    with pytest.raises(ValueError, match="inside the run folder"):
        _good_run(tmp_path / "r2", "exp", figures=["../secret.png"])


def test_run_context_path_refuses_escaping_names(tmp_path):
    ctx = registry.RunContext(out_dir=tmp_path / "run")
    assert ctx.path("fig.png") == tmp_path / "run" / "fig.png"
    assert ctx.path("sub/fig.png").parent.is_dir()
    for bad in ("../x.png", "sub/../../x.png", str(tmp_path / "x.png"), ""):
        with pytest.raises(ValueError, match="RunContext.path"):
            ctx.path(bad)
    (tmp_path / "run" / "link").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="escapes"):
        ctx.path("link/x.png")



def test_results_have_the_usual_file_modes(tmp_path, tiny):
    from dnnkit.core.runner import run_experiment

    old = os.umask(0o022)
    try:
        run_experiment(tiny, out=tmp_path)
    finally:
        os.umask(old)
    assert (tmp_path / "tiny").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "tiny" / "metrics.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "index.html").stat().st_mode & 0o777 == 0o644


def test_reproduce_next_to_a_damaged_sibling_succeeds(tmp_path, tiny):
    from dnnkit.cli import app

    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metrics.json").write_text("[]")
    r = CliRunner().invoke(app, ["reproduce", tiny, "--out", str(tmp_path), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "tiny" in (tmp_path / "index.md").read_text()
