"""Beam search exactness (exhaustive search, greedy, batching, scores), ensembles, rescoring."""

from __future__ import annotations

import itertools
import logging
import math

import pytest
import torch

from dnnkit.seq2seq.data import pad_sequences
from dnnkit.seq2seq.decode import (
    StepDecoder,
    beam_search,
    check_ensemble,
    rescore_nbest,
    score_hypotheses,
)
from dnnkit.seq2seq.model import LSTMSeq2Seq, Seq2SeqConfig
from dnnkit.seq2seq.recipe import TrainConfig, train

WORDS = (3, 4, 5, 6, 7, 8)          # <unk> + 5 words; <pad>=0 and <s>=1 are never produced


def peaky(seed=0, vocab=9, reverse=True):
    """A tiny random model with sharp distributions (init range 1) so the argmax is not trivial."""
    cfg = Seq2SeqConfig(src_vocab=vocab, tgt_vocab=vocab, emb_dim=4, hidden=8, layers=2,
                        init_range=1.0, reverse_source=reverse)
    return LSTMSeq2Seq(cfg, seed=seed).eval()


@pytest.fixture(scope="module")
def trained():
    """A tiny model trained to reverse short sequences: its argmax outputs are real sentences."""
    cfg = Seq2SeqConfig(src_vocab=9, tgt_vocab=9, emb_dim=8, hidden=16, layers=1)
    m = LSTMSeq2Seq(cfg, seed=0)
    pairs = [(s, s[::-1]) for s in ([4, 5, 6], [7], [8, 3, 4], [6, 6], [5, 7], [3, 8, 5])]
    train(m, pairs * 4, cfg=TrainConfig(optimizer="adam", lr=0.03, batch_size=6, max_steps=60,
                                        halve_after_epochs=1e6))
    return m.eval()


def all_finished(max_len):
    """Every sequence of at most max_len tokens that ends with </s> (ids without </s>)."""
    for n in range(max_len):
        yield from (list(t) for t in itertools.product(WORDS, repeat=n))


@torch.no_grad()
def enumerate_scores(m, src, max_len):
    hyps = list(all_finished(max_len))
    tgt, tl = pad_sequences([h + [2] for h in hyps])
    s = torch.tensor([src] * len(hyps))
    lp = m.log_prob(s, torch.full((len(hyps),), len(src)), tgt, tl)
    return hyps, lp


def greedy(m, src, max_len):
    """A separately written greedy decoder."""
    with torch.no_grad():
        state = m.encode(torch.tensor([src]), torch.tensor([len(src)]))
        y, out, total = torch.tensor([m.bos_id]), [], 0.0
        for _ in range(max_len):
            logp, state = m.step(y, state)
            logp[0, m.pad_id] = logp[0, m.bos_id] = -math.inf
            k = int(logp[0].argmax())
            total += float(logp[0, k])
            if k == m.eos_id:
                return out, total, True
            out.append(k)
            y = torch.tensor([k])
        return out, total, False


SOURCES = [[4, 5, 6], [7], [8, 3, 4, 5, 6], [6, 6]]


@pytest.mark.parametrize("seed", [0, 1, None])
def test_full_beam_equals_exhaustive_argmax(seed, trained):
    m = trained if seed is None else peaky(seed)
    max_len = 4
    n_all = sum(len(WORDS) ** n for n in range(max_len + 1))   # every sequence, finished or not
    nonempty = 0
    for src in SOURCES:
        hyps, lp = enumerate_scores(m, src, max_len)
        order = torch.argsort(lp, descending=True)
        res = beam_search(m, torch.tensor([src]), torch.tensor([len(src)]), beam_size=n_all,
                          max_len=max_len, return_n_best=5)[0]
        assert [h.tokens for h in res] == [hyps[int(i)] for i in order[:5]]
        for h, i in zip(res, order[:5]):
            assert h.finished and abs(h.score - float(lp[i])) < 1e-4
        nonempty += len(res[0].tokens) > 0
    if seed is None:
        assert nonempty >= 3                          # the argmax is a real sentence


@pytest.mark.parametrize("seed", [0, 3])
def test_beam_one_equals_greedy(seed):
    m = peaky(seed)
    for src in SOURCES:
        toks, total, fin = greedy(m, src, 12)
        h = beam_search(m, torch.tensor([src]), torch.tensor([len(src)]), beam_size=1,
                        max_len=12)[0][0]
        assert h.tokens == toks and h.finished == fin
        assert abs(h.logprob - total) < 1e-4


@pytest.mark.parametrize("beam", [1, 3, 12])
def test_batched_equals_one_at_a_time_and_score_is_log_prob(beam):
    m = LSTMSeq2Seq(Seq2SeqConfig(src_vocab=9, tgt_vocab=12, emb_dim=6, hidden=10, layers=2,
                                  init_range=0.6), seed=5)
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(3, 9, (int(n),), generator=g).tolist()
            for n in torch.randint(1, 9, (10,), generator=g)]
    src, sl = pad_sequences(seqs)
    batched = beam_search(m, src, sl, beam_size=beam, return_n_best=min(2, beam))
    for i, s in enumerate(seqs):
        single = beam_search(m, torch.tensor([s]), torch.tensor([len(s)]), beam_size=beam,
                             return_n_best=min(2, beam))[0]
        assert [h.tokens for h in single] == [h.tokens for h in batched[i]]
        for a, b in zip(single, batched[i]):
            assert abs(a.score - b.score) < 1e-4
        best = batched[i][0]
        if best.finished:                             # score = model log-probability (teacher forcing)
            tgt = torch.tensor([best.tokens + [m.eos_id]])
            lp = m.log_prob(torch.tensor([s]), torch.tensor([len(s)]), tgt,
                            torch.tensor([tgt.shape[1]]))
            assert abs(float(lp) - best.logprob) < 1e-4
        assert len(best.tokens) <= 2 * len(s) + 10


def test_larger_beam_never_finds_a_worse_best_hypothesis_than_greedy():
    m = peaky(4)
    for src in SOURCES:
        g = beam_search(m, torch.tensor([src]), torch.tensor([len(src)]), beam_size=1,
                        max_len=6)[0][0]
        b = beam_search(m, torch.tensor([src]), torch.tensor([len(src)]), beam_size=200,
                        max_len=6)[0][0]
        if g.finished:
            assert b.score >= g.score - 1e-6


def test_length_penalty_ranks_by_normalised_score():
    m = peaky(1)
    res = beam_search(m, torch.tensor([[4, 5]]), torch.tensor([2]), beam_size=8, max_len=6,
                      length_penalty=1.0, return_n_best=8)[0]
    for h in res:
        assert abs(h.score - h.logprob / ((5 + len(h.tokens) + h.finished) / 6)) < 1e-5
    scores = [h.score for h in res if h.finished]
    assert scores == sorted(scores, reverse=True)


class NeverEnds:
    """A user decoder (not an nn.Module) following the StepDecoder protocol: a bigram table
    that forbids </s>, so every hypothesis is cut at max_len."""

    pad_id, bos_id, eos_id, tgt_vocab = 0, 1, 2, 6

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.table = torch.log_softmax(torch.randn(6, 6, generator=g), 1)
        self.table[:, 2] = -math.inf

    def encode(self, src, src_len):
        return torch.zeros(src.shape[0], dtype=torch.long)

    def step(self, y_prev, state):
        return self.table[y_prev], y_prev

    def reorder_state(self, state, index):
        return state[index]


def test_user_step_decoder_and_unfinished_hypotheses():
    d = NeverEnds()
    assert isinstance(d, StepDecoder)
    res = beam_search(d, torch.tensor([[3, 4], [5, 0]]), torch.tensor([2, 1]), beam_size=3,
                      max_len=5, return_n_best=3)
    for r in res:
        assert len(r) == 3
        for h in r:
            assert not h.finished and len(h.tokens) == 5
            expect = sum(float(d.table[a, b]) for a, b in zip([1] + h.tokens[:-1], h.tokens))
            assert abs(h.logprob - expect) < 1e-5
    # the default max_len is 2 * source length + 10
    res = beam_search(d, torch.tensor([[3, 4], [5, 0]]), torch.tensor([2, 1]), beam_size=2)
    assert [len(r[0].tokens) for r in res] == [14, 12]


def test_ensemble_combines_per_step_probabilities():
    a, b = peaky(0), peaky(7)
    src = [4, 5, 6]
    x, n = torch.tensor([src]), torch.tensor([3])
    for how in ("mean_prob", "mean_logprob"):
        res = beam_search([a, b], x, n, beam_size=4, max_len=8, ensemble=how, return_n_best=3)[0]
        for h in res:
            if h.finished:
                s = float(score_hypotheses([a, b], src, [h.tokens], ensemble=how)[0])
                assert abs(s - h.logprob) < 1e-4
    # an ensemble of identical models is the model itself
    single = beam_search(a, x, n, beam_size=4, max_len=8)[0][0]
    twin = beam_search([a, peaky(0)], x, n, beam_size=4, max_len=8)[0][0]
    assert single.tokens == twin.tokens and abs(single.score - twin.score) < 1e-5
    # mean of probabilities >= mean of log-probabilities (Jensen), token by token
    hyp = [[4, 5, 6, 7]]
    assert float(score_hypotheses([a, b], src, hyp, ensemble="mean_prob")) >= float(
        score_hypotheses([a, b], src, hyp, ensemble="mean_logprob")) - 1e-6


def test_rescore_nbest_is_an_even_average():
    m = peaky(2)
    src, hyps, ext = [4, 5], [[4], [5, 6], [7, 7, 7]], [-1.0, -2.5, -0.5]
    lstm = score_hypotheses(m, src, hyps).tolist()
    tgt, tl = pad_sequences([h + [2] for h in hyps])
    ref = m.log_prob(torch.tensor([src] * 3), torch.tensor([2] * 3), tgt, tl).tolist()
    assert all(abs(x - y) < 1e-4 for x, y in zip(lstm, ref))
    out = rescore_nbest(m, src, hyps, ext)
    assert all(abs(o - (0.5 * x + 0.5 * e)) < 1e-9 for o, x, e in zip(out, lstm, ext))
    assert rescore_nbest(m, src, hyps, ext, weight=0.0) == ext
    with pytest.raises(ValueError, match="one score per hypothesis"):
        rescore_nbest(m, src, hyps, ext[:2])
    with pytest.raises(ValueError, match="non-empty"):
        rescore_nbest(m, src, [[]], [0.0])
    with pytest.raises(ValueError, match=r"ids in \[0, 9\)"):
        rescore_nbest(m, src, [[42]], [0.0])


def test_bad_decoding_input():
    m = peaky(0)
    x, n = torch.tensor([[4, 5]]), torch.tensor([2])
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(m, x, n, beam_size=0)
    with pytest.raises(ValueError, match="max_len"):
        beam_search(m, x, n, max_len=0)
    with pytest.raises(ValueError, match="empty"):
        beam_search(m, torch.tensor([[0, 0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="padding id"):
        beam_search(m, torch.tensor([[4, 0, 5]]), torch.tensor([3]))
    with pytest.raises(ValueError, match="consistent with the padding"):
        beam_search(m, torch.tensor([[4, 5, 6]]), torch.tensor([2]))
    with pytest.raises(ValueError, match=r"ids in \[0, 9\)"):
        beam_search(m, torch.tensor([[4, 99]]), torch.tensor([2]))
    with pytest.raises(ValueError, match="ensemble"):
        beam_search(m, x, n, ensemble="vote")
    other = peaky(0, vocab=10)
    with pytest.raises(ValueError, match="tgt_vocab: 9 vs 10"):
        beam_search([m, other], x, n)
    with pytest.raises(ValueError, match="non-empty list"):
        check_ensemble([], "beam_search")
    with pytest.raises(TypeError, match="StepDecoder"):
        beam_search([m, "model"], x, n)


def test_beam_larger_than_vocab_is_clamped_with_a_warning(caplog):
    m = peaky(0)
    with caplog.at_level(logging.WARNING, logger="dnnkit"):
        res = beam_search(m, torch.tensor([[4]]), torch.tensor([1]), beam_size=50, max_len=2)
    assert "larger than the target vocabulary" in caplog.text
    assert res[0][0].tokens is not None


def test_decoding_leaves_the_model_as_found():
    m = peaky(0).train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    beam_search(m, torch.tensor([[4, 5]]), torch.tensor([2]), beam_size=3, max_len=4)
    assert m.training and all(mod.training for mod in m.modules())
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_long_hypotheses_score_the_same_by_stepping_and_by_log_prob():
    """Regression: float32 accumulation made the two differ by ~1e-5 on 30-token hypotheses."""
    cfg = Seq2SeqConfig(src_vocab=50, tgt_vocab=50, emb_dim=8, hidden=16, layers=2,
                        init_range=0.3)
    m = LSTMSeq2Seq(cfg, seed=0).eval()
    g = torch.Generator().manual_seed(0)
    src = torch.randint(3, 50, (1, 20), generator=g)
    hyps = [torch.randint(3, 50, (30,), generator=g).tolist() for _ in range(6)]
    stepped = score_hypotheses(m, src[0].tolist(), hyps)
    tgt = torch.tensor([h + [cfg.eos_id] for h in hyps])
    full = m.log_prob(src.expand(6, -1), torch.full((6,), 20), tgt, torch.full((6,), 31))
    assert stepped.dtype == full.dtype == torch.float64
    # the per-token float32 log-probs of the two paths differ by ~1e-8; their float64 sums agree
    assert float((stepped - full).abs().max()) < 2e-6
    out = beam_search(m, src, torch.tensor([20]), beam_size=3, max_len=30, return_n_best=3)
    for h in out[0]:
        if h.tokens:
            again = score_hypotheses(m, src[0].tolist(), [h.tokens], add_eos=h.finished)
            assert abs(float(again[0]) - h.logprob) < 2e-6   # batched vs single-row float32
