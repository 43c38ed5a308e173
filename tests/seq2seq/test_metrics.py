"""BLEU is sacrebleu's: our helper equals sacrebleu.corpus_bleu exactly (oracle)."""

from __future__ import annotations

import pytest

from dnnkit.seq2seq.data import toy_translation_corpus
from dnnkit.seq2seq.metrics import bleu, bleu_by_length, bleu_signature
from tests.conftest import need


def corrupted_pairs(n=120):
    """References from the toy grammar and hypotheses with deterministic word errors."""
    pairs = toy_translation_corpus(n, seed=11)
    refs = [" ".join(t) for _, t in pairs]
    hyps = []
    for i, (_, t) in enumerate(pairs):
        h = list(t)
        if i % 3 == 0:
            h = h[:-2]                                # too short: brevity penalty
        if i % 4 == 1 and len(h) > 3:
            h[1], h[2] = h[2], h[1]                   # local reordering
        if i % 5 == 2:
            h = h + ["UNK"]
        hyps.append(" ".join(h))
    return pairs, hyps, refs


@pytest.mark.oracle
@pytest.mark.parametrize("tokenize", ["none", "13a"])
def test_bleu_equals_sacrebleu_corpus_bleu(tokenize):
    sacrebleu = need("sacrebleu")
    _, hyps, refs = corrupted_pairs()
    ours = bleu(hyps, refs, tokenize=tokenize)
    theirs = sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize).score
    assert ours == theirs
    assert 20 < ours < 100
    # token lists are joined with spaces
    assert bleu([h.split() for h in hyps], [r.split() for r in refs], tokenize=tokenize) == ours
    # on detokenised real-looking text the tokeniser matters
    text_h, text_r = ["Hello, world!"], ["Hello , world !"]
    assert bleu(text_h, text_r, tokenize=tokenize) == sacrebleu.corpus_bleu(
        text_h, [text_r], tokenize=tokenize).score
    assert "tok:" + tokenize in bleu_signature(tokenize)


@pytest.mark.oracle
def test_bleu_by_length_equals_sacrebleu_on_each_bucket():
    sacrebleu = need("sacrebleu")
    pairs, hyps, refs = corrupted_pairs(200)
    lens = [len(s) for s, _ in pairs]
    out = bleu_by_length(hyps, refs, lens, buckets=((1, 10), (11, 20), (21, 30), (31, 40)))
    assert sum(v["n"] for v in out.values()) == len(hyps)
    assert "31-40" not in out                         # empty bucket omitted
    for key, v in out.items():
        lo, hi = map(int, key.split("-"))
        idx = [i for i, n in enumerate(lens) if lo <= n <= hi]
        ref = sacrebleu.corpus_bleu([hyps[i] for i in idx], [[refs[i] for i in idx]],
                                    tokenize="none").score
        assert v["bleu"] == ref and v["n"] == len(idx)


def test_bleu_bad_input():
    with pytest.raises(ValueError, match="one reference per hypothesis"):
        bleu(["a b"], ["a b", "c"])
    with pytest.raises(ValueError, match="non-empty"):
        bleu([], [])
    with pytest.raises(ValueError, match="tokenize"):
        bleu(["a"], ["a"], tokenize="moses")
    with pytest.raises(TypeError, match="strings or of token lists"):
        bleu([3], ["a"])
    with pytest.raises(ValueError, match="align"):
        bleu_by_length(["a"], ["a"], [1, 2])
    with pytest.raises(ValueError, match="low <= high"):
        bleu_by_length(["a"], ["a"], [1], buckets=((5, 1),))
