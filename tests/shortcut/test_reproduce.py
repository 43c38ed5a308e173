"""The reproduction end to end (slow): the quick config's claims pass and the report is written."""

from __future__ import annotations

import json

import pytest

from dnnkit.core.registry import RunContext, get
from dnnkit.core.report import write_run


@pytest.mark.slow
def test_quick_reproduction_passes(tmp_path):
    exp = get("shortcut")
    cfg = exp.config.quick()
    res = exp.run(cfg, RunContext(out_dir=tmp_path, seed=0))
    failed = [c.name for c in res.claims if not c.passed]
    assert not failed, failed
    for fig in res.figures:
        assert (tmp_path / fig).stat().st_size > 1000
    write_run(tmp_path, name="shortcut", paper=exp.paper, claim=exp.claim, config={},
              result=res, seed=0, seconds=1.0)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["passed"] and m["metrics"]["ranking"][0] == "color"


@pytest.mark.slow
def test_default_reproduction_passes(tmp_path):
    exp = get("shortcut")
    res = exp.run(exp.config(), RunContext(out_dir=tmp_path, seed=0))
    assert res.passed, [c.name for c in res.claims if not c.passed]
