"""End-to-end: the reproduction's claims pass; the benchmark runs (slow)."""

from __future__ import annotations

import json
import math

import pytest

from dnnkit.core.runner import run_experiment


@pytest.mark.slow
def test_quick_reproduction_passes(tmp_path):
    out = run_experiment("adapt", out=tmp_path, quick=True, index=False)
    failed = [(c.name, c.measured) for c in out.result.claims if not c.passed]
    assert not failed, failed
    for f in ("report.md", "metrics.json", "adapt_wordlengths.png", "adapt_accuracy.png"):
        assert (out.out_dir / f).is_file()


@pytest.mark.slow
def test_default_reproduction_passes(tmp_path):
    out = run_experiment("adapt", out=tmp_path, index=False)
    failed = [(c.name, c.measured) for c in out.result.claims if not c.passed]
    assert not failed, failed
    m = json.loads((out.out_dir / "metrics.json").read_text())["metrics"]
    for kind in ("mlp", "cnn"):
        assert m[kind]["training_speedup"] > 1 and m[kind]["inference_speedup"] > 1
    assert m["l1_ablation"]["sparsity_l1"] > m["l1_ablation"]["sparsity_no_l1"]


@pytest.mark.slow
def test_bench_quick_rows():
    from dnnkit.adapt.bench import bench

    rows = bench(quick=True)
    assert rows[0].ours_s > 0 and rows[0].anchor_s > 0
    assert len(rows) == 2
    assert "skipped" in rows[1].note or math.isfinite(rows[1].anchor_s)


def test_experiment_config_is_checked(tmp_path):
    from dnnkit.core.registry import RunContext, get

    exp = get("adapt")
    with pytest.raises(ValueError, match="'models'"):
        exp.run(exp.config(models=("resnet",)), RunContext(out_dir=tmp_path))
    with pytest.raises(ValueError, match="'divergence'"):
        exp.run(exp.config(divergence="js"), RunContext(out_dir=tmp_path))


def _fake_cifar(root, n, classes_fine):
    import numpy as np

    rng = np.random.default_rng(0)
    d10 = root / "cifar-10-batches-bin"
    d10.mkdir()
    for name in ("data_batch_1.bin", "test_batch.bin"):
        rec = np.concatenate([rng.integers(0, 10, (n, 1)), rng.integers(0, 256, (n, 3072))], 1)
        rec.astype(np.uint8).tofile(d10 / name)
    d100 = root / "cifar-100-binary"
    d100.mkdir()
    for name in ("train.bin", "test.bin"):
        rec = np.concatenate([rng.integers(0, 20, (n, 1)), rng.integers(0, classes_fine, (n, 1)),
                              rng.integers(0, 256, (n, 3072))], 1)
        rec.astype(np.uint8).tofile(d100 / name)


def test_cifar_readers_and_experiment_on_tiny_files(tmp_path):
    import numpy as np

    from dnnkit.adapt.data import load_cifar_split, read_cifar100_binary
    from dnnkit.core.registry import RunContext, get

    _fake_cifar(tmp_path, 12, 100)
    x, y = read_cifar100_binary(tmp_path / "cifar-100-binary" / "train.bin")
    raw = np.fromfile(tmp_path / "cifar-100-binary" / "train.bin", dtype=np.uint8).reshape(-1, 3074)
    assert x.shape == (12, 3, 32, 32) and np.array_equal(y, raw[:, 1])
    assert np.array_equal(x[3].reshape(-1), raw[3, 2:])
    _, yc = read_cifar100_binary(tmp_path / "cifar-100-binary" / "train.bin", label="coarse")
    assert np.array_equal(yc, raw[:, 0])
    split = load_cifar_split(tmp_path, "cifar10", n_train=8, n_test=4)
    assert split.x_train.shape == (8, 3, 32, 32) and float(split.x_train.max()) <= 1.0
    (tmp_path / "bad.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="not a CIFAR-100"):
        read_cifar100_binary(tmp_path / "bad.bin")
    exp = get("adapt")
    cfg = exp.config(dataset="cifar100", data_dir=str(tmp_path), models=("cnn",), epochs=1,
                     batch_size=4, compare_kl=False, ablation_l1=False)
    res = exp.run(cfg, RunContext(out_dir=tmp_path / "out"))
    assert "cnn" in res.metrics and 0.0 <= res.metrics["cnn"]["adapt_accuracy"] <= 1.0
    with pytest.raises(ValueError, match="'data_dir'"):
        exp.run(exp.config(dataset="cifar10"), RunContext(out_dir=tmp_path / "o2"))
