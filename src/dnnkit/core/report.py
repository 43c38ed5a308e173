"""Results and reports a reader can trust.

An experiment returns a :class:`Result` (claims checked, metrics, tables, figures, deviations).
:func:`write_run` turns it into ``report.md``, ``metrics.json``, ``config.json`` and ``env.json``
in the run folder; :func:`write_index` gathers every run folder under a root into ``index.md``
and a self-contained ``index.html`` (figures embedded). The page opens with a one-screen summary
(one row per paper: the claim, the headline number measured beside the paper's, checks passed /
total, a thumbnail of the main figure); the details per module follow.

Safety: every file is written atomically (temporary file + ``os.replace``); every string that
reaches ``index.md`` / ``index.html`` is escaped; only figures inside a run's own folder are
embedded; a damaged run folder (unreadable or malformed ``metrics.json``) is skipped with a
warning naming it, and the index is still written for the good runs.

Report layout (after Flower's baseline READMEs): Paper · What is reproduced · Setup · Results
(tables + figures) · Claim check (expected vs observed, pass/fail) · Deviations · Environment.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import logging
import math
import os
import platform
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["Claim", "Table", "Result", "write_run", "write_index", "environment", "fmt",
           "load_runs", "write_json", "write_text"]

log = logging.getLogger("dnnkit")


def fmt(x: Any) -> str:
    """Compact human formatting of a number (or anything)."""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x) or math.isinf(x):
            return str(x)
        if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
            return f"{x:.3e}"
        return f"{x:.4g}"
    return str(x)


@dataclass
class Claim:
    """One checked statement: what the paper says, what we expect at CPU scale, what we measured."""

    name: str
    expected: str
    measured: Any
    passed: bool
    paper: str = ""

    @classmethod
    def at_least(cls, name: str, measured: float, threshold: float, *, paper: str = "") -> "Claim":
        return cls(name, f">= {fmt(threshold)}", float(measured),
                   bool(float(measured) >= threshold), paper)

    @classmethod
    def at_most(cls, name: str, measured: float, threshold: float, *, paper: str = "") -> "Claim":
        return cls(name, f"<= {fmt(threshold)}", float(measured),
                   bool(float(measured) <= threshold), paper)

    @classmethod
    def between(cls, name: str, measured: float, low: float, high: float, *,
                paper: str = "") -> "Claim":
        m = float(measured)
        return cls(name, f"in [{fmt(low)}, {fmt(high)}]", m, bool(low <= m <= high), paper)

    @classmethod
    def holds(cls, name: str, condition: bool, *, measured: Any = "", expected: str = "true",
              paper: str = "") -> "Claim":
        return cls(name, expected, measured if measured != "" else bool(condition),
                   bool(condition), paper)

    def as_dict(self) -> dict[str, Any]:
        m = self.measured
        if isinstance(m, float) and (math.isnan(m) or math.isinf(m)):
            m = str(m)
        return {"name": self.name, "paper": self.paper, "expected": self.expected,
                "measured": m, "passed": self.passed}


@dataclass
class Table:
    """A small table for the report (rendered as Markdown and HTML)."""

    title: str
    columns: list[str]
    rows: list[list[Any]]

    def markdown(self) -> str:
        head = "| " + " | ".join(self.columns) + " |"
        sep = "|" + "|".join("---" for _ in self.columns) + "|"
        body = ["| " + " | ".join(fmt(c) for c in r) + " |" for r in self.rows]
        return "\n".join([f"**{self.title}**", "", head, sep, *body])

    def as_dict(self) -> dict[str, Any]:
        return {"title": self.title, "columns": self.columns,
                "rows": [[c if isinstance(c, (int, float, str, bool)) or c is None else str(c)
                          for c in r] for r in self.rows]}


@dataclass
class Result:
    """What an experiment returns. Figures are file names inside the run folder.

    The index's summary row shows the first figure as the thumbnail and, as the headline,
    the claim named by ``metrics["headline"]`` (else the first claim with the paper's number).
    """

    summary: str
    claims: list[Claim]
    metrics: dict[str, Any] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    setup: str = ""
    deviations: list[str] = field(default_factory=list)
    oracle: str = ""

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.claims)


def environment() -> dict[str, Any]:
    """Versions and machine facts recorded next to every run."""
    import numpy
    import torch

    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.cuda.is_available(),
        "threads": torch.get_num_threads(),
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        import dnnkit

        env["dnnkit"] = dnnkit.__version__
    except Exception:  # pragma: no cover
        pass
    return env


def _json_default(o: Any) -> Any:
    try:
        import numpy as np
        import torch

        if isinstance(o, torch.Tensor):
            return o.detach().cpu().tolist()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, np.generic):
            return o.item()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    return str(o)


def _clean(o: Any) -> Any:
    if isinstance(o, float) and (math.isnan(o) or math.isinf(o)):
        return str(o)
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically: a reader (or a crash) sees the old or the new file,
    never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())     # mkstemp's 0600 -> the usual file mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON atomically (NaN and infinities become strings)."""
    write_text(path, json.dumps(_clean(json.loads(json.dumps(obj, default=_json_default))),
                                indent=2, sort_keys=True) + "\n")


def _inside(folder: Path, name: str) -> Path | None:
    """``folder / name`` when it names a file inside ``folder`` (no absolute path, no ``..``,
    no symlink out), else ``None``."""
    if not isinstance(name, str) or not name or Path(name).is_absolute():
        return None
    p = folder / name
    try:
        if not p.resolve().is_relative_to(folder.resolve()):
            return None
    except (OSError, RuntimeError):
        return None
    return p


def write_run(out_dir: str | Path, *, name: str, paper: str, claim: str, config: dict[str, Any],
              result: Result, seed: int, seconds: float) -> Path:
    """Write ``report.md``, ``metrics.json``, ``config.json`` and ``env.json`` for one run."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bad = [f for f in result.figures if _inside(out, f) is None]
    if bad:
        raise ValueError(f"Result.figures must name files inside the run folder; got {bad}.")
    env = environment()
    write_json(out / "config.json", {"experiment": name, "seed": seed, "config": config})
    write_json(out / "env.json", env)
    metrics = {
        "experiment": name, "paper": paper, "claim": claim, "passed": result.passed,
        "seconds": seconds, "seed": seed, "oracle": result.oracle, "summary": result.summary,
        "claims": [c.as_dict() for c in result.claims], "metrics": result.metrics,
        "tables": [t.as_dict() for t in result.tables], "figures": list(result.figures),
    }
    write_json(out / "metrics.json", metrics)

    lines = [f"# {name}: reproduction report", "", "## Paper", "", paper, "",
             f"**Headline claim.** {claim}", "", "## What is reproduced", "", result.summary, ""]
    lines += ["## Setup", "", result.setup or "(see config.json)", "",
              f"Seed {seed}; wall time {seconds:.1f} s.", "", "```json",
              json.dumps(config, indent=2, default=str), "```", ""]
    lines += ["## Results", ""]
    for t in result.tables:
        lines += [t.markdown(), ""]
    for fig in result.figures:
        lines += [f"![{fig}]({fig})", ""]
    if result.oracle:
        lines += ["**Oracle agreement.** " + result.oracle, ""]
    lines += ["## Claim check", "", "| check | paper | expected here | measured | pass |",
              "|---|---|---|---|---|"]
    for c in result.claims:
        lines.append(f"| {c.name} | {c.paper or '-'} | {c.expected} | {fmt(c.measured)} | "
                     f"{'PASS' if c.passed else 'FAIL'} |")
    lines += ["", f"**Overall: {'PASS' if result.passed else 'FAIL'}**", ""]
    lines += ["## Deviations from the paper at CPU scale", ""]
    lines += [f"- {d}" for d in result.deviations] or ["- none recorded"]
    lines += ["", "## Environment", ""]
    lines += [f"- {k}: {v}" for k, v in env.items()]
    write_text(out / "report.md", "\n".join(lines) + "\n")
    return out / "report.md"


def _metrics_problem(m: Any) -> str | None:
    """Why a parsed ``metrics.json`` cannot be shown (``None`` when it can)."""
    if not isinstance(m, dict):
        return f"expected a JSON object, got {type(m).__name__}"
    for key in ("experiment", "paper", "claim"):
        if not isinstance(m.get(key), str) or not m.get(key):
            return f"missing or non-text {key!r}"
    claims = m.get("claims")
    if not isinstance(claims, list):
        return "missing 'claims' list"
    for i, c in enumerate(claims):
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) \
                or "measured" not in c or not isinstance(c.get("passed"), bool):
            return f"claim {i} lacks name / measured / passed"
    for key in ("figures",):
        if key in m and not (isinstance(m[key], list) and all(isinstance(f, str) for f in m[key])):
            return f"{key!r} is not a list of file names"
    return None


def load_runs(root: str | Path) -> tuple[list[tuple[Path, dict[str, Any]]], list[tuple[Path, str]]]:
    """Read every ``root/*/metrics.json``: ``(good runs, [(folder, why skipped)])``.

    Hidden folders (``.name.partial-*`` of runs in progress) are ignored.
    """
    root = Path(root)
    runs, skipped = [], []
    for mfile in sorted(root.glob("*/metrics.json")):
        folder = mfile.parent
        if folder.name.startswith("."):
            continue
        try:
            m = json.loads(mfile.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            skipped.append((folder, f"metrics.json is unreadable ({type(exc).__name__}: {exc})"))
            continue
        why = _metrics_problem(m)
        if why is not None:
            skipped.append((folder, f"metrics.json is malformed ({why})"))
            continue
        runs.append((folder, m))
    for folder, why in skipped:
        log.warning("report: skipped run folder %s: %s", folder, why)
    return runs, skipped


def _md(x: Any) -> str:
    """Escape text for a Markdown table cell (no raw HTML, no link or table syntax)."""
    s = str(x).replace("\r", " ").replace("\n", " ")
    s = html.escape(s, quote=False)
    for ch in "\\|[]()`*_#!":
        s = s.replace(ch, "\\" + ch)
    return s


def _claims_text(m: dict[str, Any]) -> str:
    return "; ".join(f"{c['name']}: {fmt(c['measured'])} ({c.get('expected', '')})"
                     for c in m.get("claims", []))


def _headline(m: dict[str, Any]) -> tuple[str, str, str]:
    """(name, measured, paper) of a run's headline check: the claim named by
    ``metrics["headline"]`` if any, else the first claim with a number from the paper, else the
    first claim."""
    claims = m.get("claims") or []
    if not claims:
        return "-", "-", "-"
    named = (m.get("metrics") or {}).get("headline") if isinstance(m.get("metrics"), dict) \
        else None

    def has_paper(c: dict) -> bool:
        text = str(c.get("paper") or "").strip()
        return bool(text) and text != "-" and not text.startswith("(not")

    c = next((c for c in claims if c["name"] == named), None) \
        or next((c for c in claims if has_paper(c)), claims[0])
    return str(c["name"]), fmt(c["measured"]), str(c.get("paper") or "-")


def _short(text: str, n: int = 70) -> str:
    return text if len(text) <= n else text[: n - 1].rstrip() + "\u2026"


def _passed_count(m: dict[str, Any]) -> tuple[int, int]:
    claims = m.get("claims") or []
    return sum(bool(c["passed"]) for c in claims), len(claims)


def _figures(folder: Path, m: dict[str, Any]) -> list[tuple[str, bytes]]:
    """The run's PNG figures that are files inside its own folder."""
    out = []
    for fig in m.get("figures", []):
        p = _inside(folder, fig)
        if p is not None and p.is_file() and p.suffix.lower() == ".png":
            try:
                data = p.read_bytes()
            except OSError:
                continue
            if data.startswith(b"\x89PNG\r\n\x1a\n"):
                out.append((fig, data))
    return out


_CSS = (
    "body{font-family:sans-serif;max-width:1200px;margin:auto;padding:0 8px}"
    "table{border-collapse:collapse;margin:1em 0;width:100%;table-layout:fixed}"
    "td,th{border:1px solid #ccc;padding:4px 8px;font-size:90%;vertical-align:top;"
    "overflow-wrap:anywhere}th{background:#f4f4f4;text-align:left}"
    ".PASS{color:#070;font-weight:bold}.FAIL{color:#b00;font-weight:bold}"
    "img{max-width:100%;height:auto}.thumb img{max-height:72px;max-width:120px}"
    "figure{display:inline-block;max-width:48%;margin:4px;vertical-align:top}"
    "pre{white-space:pre-wrap}#summary td{font-size:85%}"
)


def write_index(root: str | Path) -> tuple[Path, Path]:
    """Write ``index.md`` and a self-contained ``index.html`` for every run folder in ``root``.

    Damaged run folders are skipped with a warning (see :func:`load_runs`); the index of the good
    ones is written regardless.
    """
    root = Path(root)
    runs, skipped = load_runs(root)
    md = ["# dnnkit reproductions", "",
          "| experiment | paper | claim | headline check | measured | paper's | checks | result |",
          "|---|---|---|---|---|---|---|---|"]
    for folder, m in runs:
        hname, hmeas, hpaper = _headline(m)
        npass, ntot = _passed_count(m)
        md.append(
            f"| [{_md(m['experiment'])}]({quote(folder.name)}/report.md) | {_md(m['paper'])} | "
            f"{_md(m['claim'])} | {_md(hname)} | {_md(hmeas)} | {_md(hpaper)} | "
            f"{npass}/{ntot} | {'PASS' if m.get('passed') is True else 'FAIL'} |")
    if skipped:
        md += ["", "Skipped (damaged) run folders:", ""]
        md += [f"- {_md(f.name)}: {_md(why)}" for f, why in skipped]
    write_text(root / "index.md", "\n".join(md) + "\n")

    e = html.escape
    rows, sections = [], []
    for i, (folder, m) in enumerate(runs):
        status = "PASS" if m.get("passed") is True else "FAIL"
        anchor = f"run-{i}"
        hname, hmeas, hpaper = _headline(m)
        npass, ntot = _passed_count(m)
        figs = _figures(folder, m)
        thumb = ""
        if figs:
            thumb = (f"<img src='data:image/png;base64,{base64.b64encode(figs[0][1]).decode()}'"
                     f" alt='{e(figs[0][0])}'>")
        rows.append(
            f"<tr><td><a href='#{anchor}'>{e(m['experiment'])}</a><br>"
            f"<small title='{e(m['paper'])}'>{e(_short(m['paper']))}</small></td>"
            f"<td>{e(m['claim'])}</td>"
            f"<td>{e(hname)}: <b>{e(hmeas)}</b><br><small>paper: {e(hpaper)}</small></td>"
            f"<td class='{status}'>{npass}/{ntot}</td><td class='thumb'>{thumb}</td></tr>")
        fig_html = "".join(
            f"<figure><img src='data:image/png;base64,{base64.b64encode(d).decode()}' "
            f"alt='{e(f)}'><figcaption>{e(f)}</figcaption></figure>" for f, d in figs)
        claims = "".join(
            f"<tr><td>{e(str(c['name']))}</td><td>{e(str(c.get('paper') or '-'))}</td>"
            f"<td>{e(str(c.get('expected', '')))}</td><td>{e(fmt(c['measured']))}</td>"
            f"<td class='{'PASS' if c['passed'] else 'FAIL'}'>{'PASS' if c['passed'] else 'FAIL'}"
            f"</td></tr>" for c in m.get("claims", []))
        sections.append(
            f"<section id='{anchor}'><h2>{e(m['experiment'])} "
            f"<span class='{status}'>{status}</span></h2>"
            f"<p><b>{e(m['paper'])}</b>. {e(m['claim'])}</p>"
            f"<p>{e(str(m.get('summary', '')))}</p>"
            f"<p>Oracle: {e(str(m.get('oracle') or '-'))} · "
            f"<a href='{e(quote(folder.name))}/report.md'>full report</a></p>"
            f"<table><tr><th>check</th><th>paper</th><th>expected</th><th>measured</th>"
            f"<th>pass</th></tr>{claims}</table>{fig_html}</section>")
    skipped_html = ""
    if skipped:
        skipped_html = "<p class='FAIL'>Skipped (damaged) run folders:</p><ul>" + "".join(
            f"<li>{e(f.name)}: {e(why)}</li>" for f, why in skipped) + "</ul>"
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width'><title>dnnkit reproductions</title>"
        f"<style>{_CSS}</style></head><body><h1>dnnkit reproductions</h1>"
        "<table id='summary'><colgroup><col style='width:17%'><col style='width:35%'>"
        "<col style='width:22%'><col style='width:8%'><col style='width:18%'></colgroup>"
        "<tr><th>paper</th><th>claim</th><th>headline: measured (paper)</th><th>checks</th>"
        f"<th>main figure</th></tr>{''.join(rows)}</table>{skipped_html}"
        f"<h1>Details</h1>{''.join(sections)}</body></html>")
    write_text(root / "index.html", page)
    return root / "index.md", root / "index.html"
