"""End-to-end reproduction (slow) and the experiment's Config."""

from __future__ import annotations

import json

import pytest

from dnnkit.core.runner import run_experiment


@pytest.mark.slow
def test_quick_reproduction_passes(tmp_path):
    out = run_experiment("slimsplit", out=tmp_path, quick=True, index=False)
    failed = [(c.name, c.measured) for c in out.result.claims if not c.passed]
    assert not failed, failed
    for f in ("report.md", "metrics.json", "slimsplit_modes.png", "slimsplit_stream.png"):
        assert (out.out_dir / f).is_file()
    m = json.loads((out.out_dir / "metrics.json").read_text())["metrics"]
    assert m["payload_bytes"]["11"] < m["payload_bytes"]["14"]


@pytest.mark.slow
def test_default_reproduction_passes(tmp_path):
    out = run_experiment("slimsplit", out=tmp_path, index=False)
    assert out.result.passed, [(c.name, c.measured) for c in out.result.claims if not c.passed]
    m = out.result.metrics
    assert m["bits_gain"] >= 0.03 and m["hit_rate"] >= 0.9 and m["switch_ratio"] >= 100


def test_config_quick_is_smaller():
    from dnnkit.slimsplit.experiment import Config

    q, d = Config.quick(), Config()
    assert q.epochs < d.epochs and q.frames <= d.frames
