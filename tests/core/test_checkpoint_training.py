import pytest
import torch

from dnnkit.core.checkpoint import (
    CheckpointError,
    load_tensors,
    load_training_state,
    save_tensors,
    save_training_state,
)
from dnnkit.core.data import load_digits_split
from dnnkit.core.models import mlp
from dnnkit.core.training import accuracy, fit


def test_roundtrip_and_metadata(tmp_path):
    p = save_tensors(tmp_path / "a.safetensors", {"w": torch.arange(6.0).view(2, 3)},
                     {"box": [0, 1], "name": "x"})
    t, meta = load_tensors(p)
    assert torch.equal(t["w"], torch.arange(6.0).view(2, 3))
    assert meta == {"box": [0, 1], "name": "x"}
    assert [q.name for q in tmp_path.iterdir()] == ["a.safetensors"]  # no temp file left


def test_truncated_checkpoint_is_refused(tmp_path):
    p = save_tensors(tmp_path / "a.safetensors", {"w": torch.randn(100, 100)})
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_tensors(p)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_tensors(tmp_path / "missing.safetensors")


def test_mismatched_model_is_refused(tmp_path):
    p = save_training_state(tmp_path / "c.safetensors", mlp(4, [3], 2))
    with pytest.raises(CheckpointError, match="does not match"):
        load_training_state(p, mlp(4, [5], 2))


def _data():
    s = load_digits_split(seed=0)
    return s.x_train[:400], s.y_train[:400]


def test_interrupted_then_resumed_run_equals_uninterrupted(tmp_path):
    x, y = _data()
    torch.manual_seed(0)
    ref = mlp(64, [32], 10)
    init = {k: v.clone() for k, v in ref.state_dict().items()}
    fit(ref, x, y, epochs=4, batch_size=32, seed=5)

    model = mlp(64, [32], 10)
    model.load_state_dict(init)
    ck = tmp_path / "ck.safetensors"
    fit(model, x, y, epochs=4, batch_size=32, seed=5, checkpoint=ck, stop_after=2)
    # a fresh process would rebuild the model from scratch: different weights until resumed
    fresh = mlp(64, [32], 10)
    hist = fit(fresh, x, y, epochs=4, batch_size=32, seed=5, checkpoint=ck)
    assert hist.resumed_from == 2
    for k, v in ref.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k]), k


def test_fit_learns_and_rejects_bad_input():
    x, y = _data()
    torch.manual_seed(0)
    m = mlp(64, [32], 10)
    before = accuracy(m, x, y)
    fit(m, x, y, epochs=15, batch_size=32, lr=3e-3)
    assert accuracy(m, x, y) > max(0.9, before + 0.5)
    with pytest.raises(ValueError, match="samples"):
        fit(m, x, y[:10])
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        fit(m, bad, y)


def test_non_finite_loss_names_step_and_keeps_checkpoint(tmp_path):
    x, y = _data()
    m = mlp(64, [8], 10)
    ck = tmp_path / "ck.safetensors"
    fit(m, x, y, epochs=1, checkpoint=ck)
    before = ck.read_bytes()

    def nan_loss(out, target):
        return out.sum() * float("nan")

    with pytest.raises(ValueError, match=r"non-finite loss .* epoch 1, step 0"):
        fit(m, x, y, epochs=2, checkpoint=ck, loss_fn=nan_loss)
    assert ck.read_bytes() == before
