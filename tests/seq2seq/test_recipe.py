"""The training recipe: schedule, clipping, loss, checkpoints with mid-training resume, errors."""

from __future__ import annotations

import math
import re

import pytest
import torch

from dnnkit.seq2seq.data import make_batches
from dnnkit.seq2seq.model import LSTMSeq2Seq, Seq2SeqConfig
from dnnkit.seq2seq.recipe import TrainConfig, lr_at, perplexity, steps_per_epoch, train

PAIRS = [(s, s[::-1]) for s in ([4, 5, 6], [7], [8, 3, 4], [6, 6], [5, 7], [3, 8, 5, 4])] * 4


def model(seed=0, hidden=16, **kw):
    return LSTMSeq2Seq(Seq2SeqConfig(src_vocab=9, tgt_vocab=9, emb_dim=8, hidden=hidden,
                                     layers=2, **kw), seed=seed)


def adam(**kw):
    base = {"optimizer": "adam", "lr": 0.02, "batch_size": 5, "halve_after_epochs": 1e6}
    base.update(kw)
    return TrainConfig(**base)


def test_paper_schedule():
    cfg = TrainConfig()
    assert (cfg.lr, cfg.momentum, cfg.batch_size, cfg.clip_norm, cfg.epochs) == (0.7, 0.0, 128,
                                                                                  5.0, 7.5)
    assert [lr_at(e, cfg) for e in (0, 4.99, 5.0, 5.49, 5.5, 6.0, 7.49)] == [
        0.7, 0.7, 0.35, 0.35, 0.175, 0.0875, 0.7 / 2 ** 5]


def test_loss_is_sentence_sum_averaged_over_batch():
    m = model()
    b = next(make_batches(PAIRS, 4, shuffle=False))
    from dnnkit.seq2seq.recipe import _batch_loss
    loss = float(_batch_loss(m, b, 0).detach())
    tl = m.token_log_probs(b["src"], b["src_len"], b["tgt_out"], b["tgt_len"])
    assert abs(loss - float(-tl.sum() / 4)) < 1e-5


def test_adam_training_learns_and_perplexity_drops():
    m = model()
    before = perplexity(m, PAIRS)
    hist = train(m, PAIRS, PAIRS, adam(max_steps=80))
    assert hist["valid_ppl"] < 0.3 * before
    assert hist["steps"] == 80 and len(hist["loss"]) == 80
    mean_len = sum(len(t) + 1 for _, t in PAIRS) / len(PAIRS)
    assert min(hist["tgt_len"]) <= mean_len <= max(hist["tgt_len"])
    assert hist["tokens"] > 0 and hist["tokens_per_s"] > 0
    assert m.training                                    # mode restored as found


def test_paper_sgd_recipe_smoke_and_clipping():
    """SGD at 0.7 with global-norm clipping at 5 trains without diverging."""
    m = model(seed=1)
    cfg = TrainConfig(batch_size=6, epochs=25, halve_after_epochs=20)   # lr 0.7, clip 5
    hist = train(m, PAIRS, cfg=cfg)
    assert hist["steps"] == 25 * steps_per_epoch(len(PAIRS), 6)
    assert all(math.isfinite(x) for x in hist["loss"])
    assert sum(hist["loss"][-10:]) < 0.6 * sum(hist["loss"][:10])
    assert hist["log"][-1]["lr"] == 0.7 / 2 ** 10        # the halving schedule ran
    # clipping: the update of an SGD step never exceeds lr * clip_norm in global norm
    m2 = model(seed=1)
    before = [p.detach().clone() for p in m2.parameters()]
    h2 = train(m2, PAIRS, cfg=TrainConfig(batch_size=24, max_steps=1, clip_norm=1e-3))
    delta = math.sqrt(sum(float((p - q).pow(2).sum()) for p, q in zip(m2.parameters(), before)))
    assert h2["grad_norm"][0] > 1e-3 and abs(delta - 0.7 * 1e-3) < 1e-6


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    cfg = adam(max_steps=14)
    ref = model()
    train(ref, PAIRS, cfg=cfg)
    ck = tmp_path / "run.safetensors"
    m = model()
    h1 = train(m, PAIRS, cfg=cfg, checkpoint=ck, checkpoint_every=3, stop_after=7)
    assert h1["steps"] == 7 and ck.is_file()
    fresh = model(seed=9)                                # a new process would build a new model
    h2 = train(fresh, PAIRS, cfg=cfg, checkpoint=ck, checkpoint_every=3)
    assert h2["resumed_from"] == 7 and h2["steps"] == 14
    assert len(h2["loss"]) == len(h2["tgt_len"]) == len(h2["grad_norm"]) == 14
    for (n, p), q in zip(ref.named_parameters(), fresh.parameters()):
        assert torch.equal(p, q), n


def test_a_checkpoint_of_another_job_is_refused_not_resumed(tmp_path):
    """Issue 12: train() used to resume any checkpoint at the path, whatever the job."""
    from dnnkit.core.checkpoint import CheckpointError

    ck = tmp_path / "run.safetensors"
    train(model(), PAIRS, cfg=adam(max_steps=4), checkpoint=ck)
    other = [(t, s) for s, t in PAIRS[:-1]]                     # other data, same shapes
    with pytest.raises(CheckpointError, match="different job.*data"):
        train(model(), other, cfg=adam(max_steps=8), checkpoint=ck)
    with pytest.raises(CheckpointError, match="different job.*recipe"):
        train(model(), PAIRS, cfg=adam(max_steps=8, lr=0.5), checkpoint=ck)
    h = train(model(), PAIRS, cfg=adam(max_steps=8), checkpoint=ck)   # same job, longer: resumes
    assert h["resumed_from"] == 4
    h = train(model(), other, cfg=adam(max_steps=3), checkpoint=ck, resume=False)
    assert h["resumed_from"] == 0 and h["steps"] == 3          # fresh start, file overwritten
    h = train(model(), PAIRS, cfg=adam(max_steps=5), checkpoint=tmp_path / "named.safetensors",
              run_id="exp-1", stop_after=2)
    h = train(model(), PAIRS[:-1], cfg=adam(max_steps=5), checkpoint=tmp_path / "named.safetensors",
              run_id="exp-1")                                  # run_id names the job, not the data
    assert h["resumed_from"] == 2


def test_non_finite_loss_stops_with_step_and_gradient_norm(tmp_path):
    ck = tmp_path / "ck.safetensors"
    m = model()
    train(m, PAIRS, cfg=adam(max_steps=2), checkpoint=ck)
    saved = ck.read_bytes()
    with torch.no_grad():
        m.decoder.weight_hh_l0[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite loss nan at step 1 .*gradient norm"):
        train(m, PAIRS, cfg=adam(max_steps=4), checkpoint=ck, resume=False)
    assert ck.read_bytes() == saved                      # the checkpoint is intact
    # a NaN that only one sentence reaches: the error names a later step and a finite norm
    m = model(seed=3)
    with torch.no_grad():
        m.src_emb.weight[7] = float("nan")
    pairs = [([4, 5], [5, 4])] * 20 + [([7], [7])]
    with pytest.raises(ValueError) as err:
        train(m, pairs, cfg=adam(batch_size=1, max_steps=21))
    msg = str(err.value)
    step = int(re.search(r"at step (\d+)", msg).group(1))
    norm = float(re.search(r"last gradient norm ([0-9][0-9.e+-]*[0-9])", msg).group(1))
    assert step > 1 and math.isfinite(norm) and norm > 0


def test_bad_training_input():
    m = model()
    with pytest.raises(ValueError, match="non-empty"):
        train(m, [])
    with pytest.raises(ValueError, match="empty sequence"):
        train(m, [([4], [])])
    with pytest.raises(ValueError, match=r"ids in \[0, 9\)"):
        train(m, [([4, 12], [5])])
    with pytest.raises(ValueError, match="padding id"):
        train(m, [([4, 0, 5], [5])])
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="clip_norm"):
        TrainConfig(clip_norm=0)
    with pytest.raises(TypeError, match="LSTMSeq2Seq"):
        train(torch.nn.Linear(2, 2), PAIRS)
