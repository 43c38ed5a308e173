"""The reproduction: `dnnkit reproduce seq2seq` (default config) passes its claim checks."""

from __future__ import annotations

import json

import pytest

from dnnkit.core.runner import run_experiment


@pytest.mark.slow
def test_default_reproduction_passes(tmp_path):
    out = run_experiment("seq2seq", out=tmp_path, device="cpu")
    res = out.result
    failed = [(c.name, c.measured, c.expected) for c in res.claims if not c.passed]
    assert res.passed, failed
    m = json.loads((out.out_dir / "metrics.json").read_text())["metrics"]
    assert m["converged"]
    assert m["reversed"]["test_ppl"] < m["forward"]["test_ppl"]
    for f in ("loss.png", "bleu_by_length.png", "model_forward.safetensors",
              "model_reversed.safetensors", "report.md"):
        assert (out.out_dir / f).is_file(), f


@pytest.mark.slow
def test_quick_reproduction_passes(tmp_path):
    out = run_experiment("seq2seq", out=tmp_path, quick=True, device="cpu")
    names = [c.name for c in out.result.claims]
    assert names[0].startswith("training converged")
    assert set(out.result.metrics["forward"]["decode"]) == {"1", "2"}
    assert out.result.passed, [(c.name, c.measured) for c in out.result.claims if not c.passed]
