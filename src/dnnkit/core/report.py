"""Results and reports a reader can trust.

An experiment returns a :class:`Result` (claims checked, metrics, tables, figures, deviations).
:func:`write_run` turns it into ``report.md``, ``metrics.json``, ``config.json`` and ``env.json``
in the run folder; :func:`write_index` gathers every run folder under a root into ``index.md``
and a self-contained ``index.html`` (figures embedded), one row per experiment.

Report layout (after Flower's baseline READMEs): Paper · What is reproduced · Setup · Results
(tables + figures) · Claim check (expected vs observed, pass/fail) · Deviations · Environment.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Claim", "Table", "Result", "write_run", "write_index", "environment", "fmt"]


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
    """What an experiment returns. Figures are file names inside the run folder."""

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


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(_clean(json.loads(json.dumps(obj, default=_json_default))),
                               indent=2, sort_keys=True) + "\n")


def write_run(out_dir: str | Path, *, name: str, paper: str, claim: str, config: dict[str, Any],
              result: Result, seed: int, seconds: float) -> Path:
    """Write ``report.md``, ``metrics.json``, ``config.json`` and ``env.json`` for one run."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
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
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out / "report.md"


def _load_runs(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    runs = []
    for mfile in sorted(root.glob("*/metrics.json")):
        try:
            runs.append((mfile.parent, json.loads(mfile.read_text())))
        except (OSError, json.JSONDecodeError):
            continue
    return runs


def _claims_text(m: dict[str, Any]) -> str:
    return "; ".join(f"{c['name']}: {fmt(c['measured'])} ({c['expected']})"
                     for c in m.get("claims", []))


def write_index(root: str | Path) -> tuple[Path, Path]:
    """Write ``index.md`` and a self-contained ``index.html`` for every run folder in ``root``."""
    root = Path(root)
    runs = _load_runs(root)
    md = ["# dnnkit reproductions", "",
          "| experiment | paper | claim | measured | oracle | result |", "|---|---|---|---|---|---|"]
    for folder, m in runs:
        md.append(f"| [{m['experiment']}]({folder.name}/report.md) | {m['paper']} | {m['claim']} | "
                  f"{_claims_text(m)} | {m.get('oracle') or '-'} | "
                  f"{'PASS' if m.get('passed') else 'FAIL'} |")
    (root / "index.md").write_text("\n".join(md) + "\n")

    e = html.escape
    rows, sections = [], []
    for folder, m in runs:
        status = "PASS" if m.get("passed") else "FAIL"
        rows.append(
            f"<tr><td><a href='#{e(m['experiment'])}'>{e(m['experiment'])}</a></td>"
            f"<td>{e(m['paper'])}</td><td>{e(m['claim'])}</td><td>{e(_claims_text(m))}</td>"
            f"<td>{e(m.get('oracle') or '-')}</td><td class='{status}'>{status}</td></tr>")
        figs = []
        for fig in m.get("figures", []):
            p = folder / fig
            if p.is_file() and p.suffix.lower() == ".png":
                data = base64.b64encode(p.read_bytes()).decode()
                figs.append(f"<figure><img src='data:image/png;base64,{data}' alt='{e(fig)}'>"
                            f"<figcaption>{e(fig)}</figcaption></figure>")
        claims = "".join(
            f"<tr><td>{e(c['name'])}</td><td>{e(str(c.get('paper') or '-'))}</td>"
            f"<td>{e(c['expected'])}</td><td>{e(fmt(c['measured']))}</td>"
            f"<td class='{'PASS' if c['passed'] else 'FAIL'}'>{'PASS' if c['passed'] else 'FAIL'}"
            f"</td></tr>" for c in m.get("claims", []))
        sections.append(
            f"<section id='{e(m['experiment'])}'><h2>{e(m['experiment'])}</h2>"
            f"<p>{e(m.get('summary', ''))}</p><table><tr><th>check</th><th>paper</th>"
            f"<th>expected</th><th>measured</th><th>pass</th></tr>{claims}</table>"
            f"{''.join(figs)}</section>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>dnnkit reproductions</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:"
        "collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;font-size:90%}"
        ".PASS{color:#070;font-weight:bold}.FAIL{color:#b00;font-weight:bold}"
        "img{max-width:100%}</style></head><body><h1>dnnkit reproductions</h1>"
        "<table><tr><th>experiment</th><th>paper</th><th>claim</th><th>measured</th>"
        f"<th>oracle</th><th>result</th></tr>{''.join(rows)}</table>{''.join(sections)}"
        "</body></html>")
    (root / "index.html").write_text(page)
    return root / "index.md", root / "index.html"
