"""Conformance: every registered experiment has a paper, a claim and a quick config that runs."""

import dataclasses

import pytest

from dnnkit.core import registry
from dnnkit.core.report import Result
from dnnkit.core.runner import run_experiment

NAMES = registry.names()


def test_registry_finds_modules_and_suggests():
    assert "deep_taylor" in NAMES
    with pytest.raises(KeyError, match="Did you mean 'deep_taylor'"):
        registry.get("deep_tailor")


@pytest.mark.parametrize("name", NAMES)
def test_experiment_metadata(name):
    exp = registry.get(name)
    assert exp.paper.strip() and exp.claim.strip()
    assert exp.module.startswith(f"dnnkit.{exp.module.split('.')[1]}.experiment")
    cfg, quick = exp.default_config(), exp.default_config(quick=True)
    assert dataclasses.is_dataclass(cfg) and type(quick) is type(cfg)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cfg, dataclasses.fields(cfg)[0].name, None)


@pytest.mark.parametrize("name", NAMES)
def test_quick_config_runs_and_writes_a_report(name, tmp_path):
    out = run_experiment(name, out=tmp_path, quick=True, device="cpu")
    assert isinstance(out.result, Result) and out.result.claims
    for f in ("report.md", "metrics.json", "config.json", "env.json"):
        assert (out.out_dir / f).is_file()
    for fig in out.result.figures:
        assert (out.out_dir / fig).is_file(), fig
    assert (tmp_path / "index.html").is_file()


@pytest.mark.parametrize("name", registry.bench_names())
def test_every_bench_belongs_to_an_experiment(name):
    assert name in NAMES


def test_runner_pins_declared_threads_and_restores_them(tmp_path, monkeypatch):
    import torch

    from dnnkit.core.report import Claim

    seen = {}

    @dataclasses.dataclass(frozen=True)
    class Cfg:
        x: int = 0

        @classmethod
        def quick(cls):
            return cls()

    def fake_run(cfg, ctx):
        seen["threads"] = torch.get_num_threads()
        return Result(summary="s", claims=[Claim.holds("ok", True)])

    registry.discover()
    monkeypatch.setitem(registry._EXPERIMENTS, "pinned", registry.Experiment(
        "pinned", "P", "C", Cfg, fake_run, "tests", num_threads=1))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run_experiment("pinned", out=tmp_path, device="cpu")
        assert seen["threads"] == 1 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
