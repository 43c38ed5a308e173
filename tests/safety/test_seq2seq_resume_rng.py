"""Issue 12: seq2seq.train with dropout resumes bit for bit (the global RNG state is saved)."""

from __future__ import annotations

import torch

from dnnkit.seq2seq.model import LSTMSeq2Seq, Seq2SeqConfig
from dnnkit.seq2seq.recipe import TrainConfig, train

PAIRS = [(s, s[::-1]) for s in ([4, 5, 6], [7], [8, 3, 4], [6, 6], [5, 7], [3, 8, 5, 4])] * 4


def _model(seed=0):
    return LSTMSeq2Seq(Seq2SeqConfig(src_vocab=9, tgt_vocab=9, emb_dim=8, hidden=16, layers=2,
                                     dropout=0.3), seed=seed)


def test_resume_with_dropout_equals_uninterrupted(tmp_path):
    cfg = TrainConfig(optimizer="adam", lr=0.02, batch_size=5, halve_after_epochs=1e6,
                      max_steps=10)
    torch.manual_seed(0)
    ref = _model()
    train(ref, PAIRS, cfg=cfg)
    ck = tmp_path / "run.safetensors"
    torch.manual_seed(0)
    train(_model(), PAIRS, cfg=cfg, checkpoint=ck, checkpoint_every=3, stop_after=6)
    torch.manual_seed(777)                       # a new process starts from another RNG state
    fresh = _model(seed=9)
    h = train(fresh, PAIRS, cfg=cfg, checkpoint=ck, checkpoint_every=3)
    assert h["resumed_from"] == 6
    for (n, p), q in zip(ref.named_parameters(), fresh.parameters()):
        assert torch.equal(p, q), n
