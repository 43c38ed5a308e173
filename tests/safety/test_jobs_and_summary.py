"""Issue 12: ``dnnkit reproduce --jobs N`` runs workers in parallel (pinned threads, inheriting
the lock on --out), and index.html opens with a one-screen summary table."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dnnkit.core.report import Claim, Result, write_index, write_run

# A stand-in for ``python -m dnnkit reproduce NAME ...``: records when it ran, its thread and
# lock environment, sleeps, and exits 0 (pass), 1 (claims failed) or 3 (error) by name.
FAKE = """#!/bin/sh
name="$4"
out="$6"
echo "start $(date +%s.%N)" > "$out/.fake-$name"
echo "threads $OMP_NUM_THREADS lock $DNNKIT_OUT_LOCK_HELD" >> "$out/.fake-$name"
sleep 1
echo "end $(date +%s.%N)" >> "$out/.fake-$name"
echo "worker output of $name"
case "$name" in
  shortcut) exit 1 ;;
  systolic) exit 3 ;;
esac
exit 0
"""


def test_jobs_runs_workers_in_parallel_with_pinned_threads(tmp_path, monkeypatch):
    from dnnkit.cli import app

    fake = tmp_path / "fakepython"
    fake.write_text(FAKE)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(sys, "executable", str(fake))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cpus: None, raising=False)
    out = tmp_path / "results"
    names = ["deep_taylor", "options", "shortcut", "systolic"]
    r = CliRunner().invoke(app, ["reproduce", *names, "--jobs", "2", "--out", str(out),
                                 "--no-progress"])
    assert r.exit_code == 2, r.output                     # systolic "crashed"
    assert "systolic" in r.output and "stopped with an error" in r.output
    assert "claims failed" in r.output and "worker output of options" in r.output
    spans = {}
    for n in names:
        lines = dict(line.split(" ", 1) for line in (out / f".fake-{n}").read_text().splitlines())
        spans[n] = (float(lines["start"]), float(lines["end"]))
        assert lines["threads"].startswith("2 lock ")       # 4 cores / 2 workers
        assert lines["threads"].endswith(str(out.resolve()))
    # at most two at once, and the first two overlapped
    a, b = spans["deep_taylor"], spans["options"]
    assert a[0] < b[1] and b[0] < a[1]
    for t in [s for s, _ in spans.values()]:
        assert sum(s <= t < e for s, e in spans.values()) <= 2
    assert (out / "index.html").is_file()
    # the live view (one line per running module) works too
    from dnnkit.cli import _reproduce_parallel

    failed, errors = _reproduce_parallel(["deep_taylor", "shortcut"], 2, quick=True, seed=0,
                                         device="cpu", out=out, progress=True)
    assert failed == ["shortcut"] and errors == []


def _run(root: Path, name: str, passed=(True, True), figure=True):
    folder = root / name
    folder.mkdir(parents=True)
    figs = []
    if figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        plt.figure(figsize=(4, 3))
        plt.plot([0, 1], [1, 0])
        plt.savefig(folder / "main.png")
        plt.close()
        figs = ["main.png"]
    claims = [Claim.at_least(f"{name} accuracy", 0.93, 0.5 if passed[0] else 0.99,
                             paper="0.97"),
              Claim.holds("long " * 60, passed[1], measured="wall of text " * 40)]
    write_run(folder, name=name, paper=f"{name} et al. 2020", claim=f"{name} works well.",
              config={}, result=Result(summary="details " * 100, claims=claims, figures=figs),
              seed=0, seconds=1.0)


def test_index_opens_with_a_one_screen_summary(tmp_path):
    _run(tmp_path, "alpha")
    _run(tmp_path, "beta", passed=(True, False), figure=False)
    _, page = write_index(tmp_path)
    text = page.read_text()
    summary = text[text.index("<table id='summary'>"):text.index("</table>")]
    rows = summary.split("<tr>")[2:]
    assert len(rows) == 2                                  # one row per paper
    assert "alpha works well." in rows[0] and "0.93" in rows[0] and "paper: 0.97" in rows[0]
    assert "2/2" in rows[0] and "1/2" in rows[1]
    assert rows[0].count("data:image/png") == 1 and "data:image/png" not in rows[1]
    assert "wall of text" not in summary and "details" not in summary  # no walls of text
    assert text.index("<table id='summary'>") < text.index("Details")


def _chromium() -> str | None:
    import shutil

    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser",
                                                          "google-chrome")) if p), None)


@pytest.mark.slow
def test_index_in_headless_chromium(tmp_path):
    """The page loads, every image decodes, nothing overflows horizontally at 1280 px."""
    import subprocess

    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium / chromium-browser / google-chrome on PATH (Debian: apt-get "
                    "install chromium)")
    for n in ("alpha", "beta", "gamma"):
        _run(tmp_path, n)
    _, page = write_index(tmp_path)
    probe = ("<script>window.addEventListener('load',()=>{const imgs=[...document.images];"
             "const r={images:imgs.length,decoded:imgs.filter(i=>i.complete&&i.naturalWidth>0)"
             ".length,scroll:document.documentElement.scrollWidth,"
             "width:document.documentElement.clientWidth};"
             "document.title='RESULT'+JSON.stringify(r);"
             "document.body.insertAdjacentHTML('beforeend','<pre id=result>'+"
             "JSON.stringify(r)+'</pre>');});</script>")
    probe_page = tmp_path / "probe.html"
    probe_page.write_text(page.read_text().replace("</body>", probe + "</body>"))
    r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                        "--window-size=1280,900", "--virtual-time-budget=5000", "--dump-dom",
                        probe_page.as_uri()], capture_output=True, text=True, timeout=120)
    dom = r.stdout
    assert "<pre id=\"result\">" in dom, r.stderr[-2000:]
    res = json.loads(dom.split("<pre id=\"result\">", 1)[1].split("</pre>", 1)[0])
    assert res["images"] >= 6 and res["decoded"] == res["images"]
    assert res["scroll"] <= res["width"] <= 1280


def test_headline_prefers_a_claim_with_the_papers_number(tmp_path):
    folder = tmp_path / "x"
    claims = [Claim.at_least("sanity", 1.0, 0.5, paper="(not reported)"),
              Claim.at_least("top-1", 0.91, 0.5, paper="0.93"),
              Claim.at_least("speed", 2.0, 1.0, paper="3x")]
    write_run(folder, name="x", paper="P", claim="C", config={},
              result=Result(summary="s", claims=claims), seed=0, seconds=1.0)
    _, page = write_index(tmp_path)
    assert "top-1: <b>0.91</b>" in page.read_text()
    m = json.loads((folder / "metrics.json").read_text())
    m["metrics"] = {"headline": "speed"}
    (folder / "metrics.json").write_text(json.dumps(m))
    _, page = write_index(tmp_path)
    assert "speed: <b>2</b>" in page.read_text()
