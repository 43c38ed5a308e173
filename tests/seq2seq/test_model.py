"""The encoder-decoder: size, initialisation, reversal in one place, scoring, bad input."""

from __future__ import annotations

import pytest
import torch

from dnnkit.seq2seq.data import pad_sequences
from dnnkit.seq2seq.model import LSTMSeq2Seq, Seq2SeqConfig, reverse_padded


def tiny(reverse=True, seed=0, **kw):
    cfg = Seq2SeqConfig(src_vocab=11, tgt_vocab=9, emb_dim=6, hidden=8, layers=2,
                        reverse_source=reverse, **kw)
    return LSTMSeq2Seq(cfg, seed=seed)


def batch(seqs):
    return pad_sequences(seqs)


def test_paper_size_has_384m_parameters_64m_recurrent():
    cfg = Seq2SeqConfig(src_vocab=160_000, tgt_vocab=80_000)
    with torch.device("meta"):
        m = LSTMSeq2Seq(cfg)
    total = sum(p.numel() for p in m.parameters())
    recurrent = sum(p.numel() for n, p in m.named_parameters()
                    if n.startswith(("encoder.weight", "decoder.weight")))
    assert abs(total / 384e6 - 1) < 0.005, total
    assert abs(recurrent / 64e6 - 1) < 0.005, recurrent
    enc = sum(p.numel() for n, p in m.named_parameters() if n.startswith("encoder.weight"))
    assert enc == recurrent // 2                      # 32M encoder, 32M decoder
    # the sentence vector has 8000 numbers: 4 layers x (h, c) x 1000
    assert 2 * cfg.layers * cfg.hidden == 8000


def test_uniform_init_is_seeded_and_in_range():
    a, b, c = tiny(seed=1), tiny(seed=1), tiny(seed=2)
    for (n, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert p.abs().max() <= 0.08, n
        assert torch.equal(p, q)
        assert not torch.equal(p, r)
    allp = torch.cat([p.flatten() for p in a.parameters()])
    assert allp.min() < -0.07 and allp.max() > 0.07   # spans the range, not the default init


def test_pytorch_init_is_seeded_and_follows_pytorch_defaults():
    cfg = Seq2SeqConfig(src_vocab=300, tgt_vocab=200, emb_dim=16, hidden=64, layers=2,
                        init="pytorch")
    a, b, c = (LSTMSeq2Seq(cfg, seed=s) for s in (1, 1, 2))
    assert Seq2SeqConfig(src_vocab=9, tgt_vocab=9).init == "uniform"   # the paper's by default
    bound = 64 ** -0.5
    for (n, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(p, q) and not torch.equal(p, r), n
        if n.endswith("_emb.weight"):           # nn.Embedding: N(0, 1)
            assert abs(float(p.std()) - 1.0) < 0.05 and float(p.abs().max()) > 2.5, n
        else:                                   # nn.LSTM / nn.Linear(hidden, V): U(+-1/sqrt(H))
            assert float(p.abs().max()) <= bound and float(p.abs().max()) > 0.9 * bound, n
    # the same distributions as PyTorch's own constructors (compared by spread)
    ref = torch.nn.LSTM(16, 64, 2)
    assert abs(float(a.encoder.weight_hh_l1.std()) - float(ref.weight_hh_l1.std())) < 0.01
    with pytest.raises(ValueError, match="init"):
        Seq2SeqConfig(src_vocab=9, tgt_vocab=9, init="xavier")


def test_reverse_padded():
    x, n = batch([[4, 5, 6], [7, 8], [9]])
    assert reverse_padded(x, n).tolist() == [[6, 5, 4], [8, 7, 0], [9, 0, 0]]


def test_source_reversed_exactly_once():
    fwd, rev = tiny(reverse=False), tiny(reverse=True)
    rev.load_state_dict(fwd.state_dict())
    seqs = [[4, 5, 6, 7], [8, 9], [10, 4, 5]]
    x, n = batch(seqs)
    xr, _ = batch([s[::-1] for s in seqs])
    h1, c1 = rev.encode(x, n)
    h2, c2 = fwd.encode(xr, n)
    torch.testing.assert_close(h1, h2, rtol=0, atol=1e-6)
    torch.testing.assert_close(c1, c2, rtol=0, atol=1e-6)
    h3, _ = fwd.encode(x, n)
    assert not torch.allclose(h1, h3)                 # reversal matters


def test_batched_encoding_equals_one_sentence_at_a_time():
    m = tiny()
    seqs = [[4, 5, 6, 7, 8], [9], [10, 4], [5, 6, 7]]
    x, n = batch(seqs)
    h, c = m.encode(x, n)
    for i, s in enumerate(seqs):
        hi, ci = m.encode(torch.tensor([s]), torch.tensor([len(s)]))
        torch.testing.assert_close(h[:, i], hi[:, 0], rtol=0, atol=1e-6)
        torch.testing.assert_close(c[:, i], ci[:, 0], rtol=0, atol=1e-6)


@torch.no_grad()
def test_log_prob_equals_sum_of_decoder_steps():
    m = tiny()
    src, sl = batch([[4, 5, 6], [7, 8]])
    tgt, tl = batch([[4, 5, 2], [6, 7, 8, 2]])
    lp = m.log_prob(src, sl, tgt, tl)
    for i in range(2):
        state = m.encode(src[i: i + 1, : sl[i]], sl[i: i + 1])
        y, total = torch.tensor([m.bos_id]), 0.0
        for t in range(int(tl[i])):
            logp, state = m.step(y, state)
            y = tgt[i, t: t + 1]
            total += float(logp[0, y])
        assert abs(total - float(lp[i])) < 1e-5
    logits = m(src, sl, torch.tensor([[1, 4, 5, 0], [1, 6, 7, 8]]))
    assert logits.shape == (2, 4, 9)


def test_float64_model_follows_dtype():
    m = tiny().double()
    src, sl = batch([[4, 5, 6]])
    tgt, _tl = batch([[4, 2]])
    assert m.encode(src, sl)[0].dtype == torch.float64
    assert m(src, sl, tgt).dtype == torch.float64


def test_sentence_vector_shape_and_word_order_sensitivity():
    m = tiny()
    x, n = batch([[4, 5, 6, 7], [7, 5, 6, 4], [4, 5, 6, 7]])
    v = m.sentence_vector(x, n)
    assert v.shape == (3, 2 * 2 * 8)
    assert m.sentence_vector(x, n, include_cell=False).shape == (3, 16)
    torch.testing.assert_close(v[0], v[2])
    assert not torch.allclose(v[0], v[1])             # a bag of words would not tell them apart


@pytest.mark.parametrize("src,lens,match", [
    (torch.tensor([[4, 5, 0]]), torch.tensor([0]), "empty"),
    (torch.tensor([[4, 50, 0]]), torch.tensor([2]), r"ids in \[0, 11\)"),
    (torch.tensor([[4, -1, 0]]), torch.tensor([2]), r"ids in \[0, 11\)"),
    (torch.tensor([[4, 0, 5]]), torch.tensor([3]), "padding id 0"),
    (torch.tensor([[4, 5, 6]]), torch.tensor([2]), "consistent with the padding"),
    (torch.tensor([[4, 5, 6]]), torch.tensor([4]), "padded width"),
    (torch.tensor([[4, 5, 6]]), torch.tensor([3, 3]), "shape"),
    (torch.tensor([4, 5, 6]), torch.tensor([3]), r"batch, time|ndim in \[2\]"),
])
def test_bad_source_is_refused(src, lens, match):
    with pytest.raises(ValueError, match=match):
        tiny().encode(src, lens)


def test_bad_types_and_config():
    m = tiny()
    with pytest.raises(TypeError, match="integer"):
        m.encode(torch.tensor([[0.5]]), torch.tensor([1]))
    with pytest.raises(TypeError, match="Seq2SeqConfig"):
        LSTMSeq2Seq({"src_vocab": 5})
    with pytest.raises(ValueError, match="emb_dim == hidden"):
        Seq2SeqConfig(src_vocab=9, tgt_vocab=9, emb_dim=4, hidden=8, tie_target_embeddings=True)
    with pytest.raises(ValueError, match="distinct"):
        Seq2SeqConfig(src_vocab=9, tgt_vocab=9, bos_id=0)
    with pytest.raises(ValueError, match="tgt"):
        src, sl = batch([[4]])
        m.log_prob(src, sl, torch.tensor([[4, 0, 2]]), torch.tensor([3]))


def test_tied_embeddings_share_the_softmax_weights():
    m = LSTMSeq2Seq(Seq2SeqConfig(src_vocab=9, tgt_vocab=9, emb_dim=8, hidden=8, layers=1,
                                  tie_target_embeddings=True))
    assert m.proj.weight is m.tgt_emb.weight
