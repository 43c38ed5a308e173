"""Vocabulary, toy grammar, loaders and batching."""

from __future__ import annotations

import pytest
import torch

from dnnkit.seq2seq.data import (
    Vocab,
    gettext_parallel_corpus,
    load_parallel_text,
    make_batches,
    read_po_pairs,
    toy_translation_corpus,
)
from dnnkit.seq2seq.recipe import steps_per_epoch


def test_vocab_frequency_order_specials_and_unk():
    v = Vocab(["b", "a", "b", "c", "b", "a"])
    assert v.itos[:4] == ["<pad>", "<s>", "</s>", "<unk>"]
    assert v.itos[4:] == ["b", "a", "c"]              # by frequency, ties alphabetical
    assert (v.pad_id, v.bos_id, v.eos_id, v.unk_id) == (0, 1, 2, 3)
    assert v.encode(["a", "zzz"], add_eos=True) == [5, 3, 2]
    assert v.decode([1, 5, 3, 2, 4, 4]) == ["a", "<unk>"]          # stops at </s>
    assert v.decode([1, 5, 2], strip_special=False) == ["<s>", "a", "</s>"]
    small = Vocab(["b", "a", "b", "c", "b", "a"], max_size=1)
    assert len(small) == 5 and small.encode(["a"]) == [small.unk_id]
    assert len(Vocab(["b", "a", "b", "c", "b", "a"], min_freq=2)) == 6


def test_vocab_bad_input():
    with pytest.raises(TypeError, match="tokens"):
        Vocab([1, 2])
    with pytest.raises(ValueError, match="specials"):
        Vocab(["a"], specials=("<pad>", "<pad>", "</s>", "<unk>"))
    with pytest.raises(ValueError, match="ids"):
        Vocab(["a"]).decode([99])


def test_toy_grammar_is_seeded_and_translates_with_agreement():
    a = toy_translation_corpus(300, seed=3)
    assert a == toy_translation_corpus(300, seed=3)
    assert a != toy_translation_corpus(300, seed=4)
    genders = {}
    for src, tgt in a:
        assert 1 <= len(src) <= 24
        assert len(src) == len(tgt)                   # word-by-word dictionary translation
        for i, w in enumerate(tgt):
            if w in ("le", "la", "un", "une"):
                noun = tgt[i + 1]                     # the noun follows its determiner
                assert noun.startswith("N")
                g = "m" if w in ("le", "un") else "f"
                assert genders.setdefault(noun, g) == g   # one gender per noun, always agreed
                j = i + 2
                while j < len(tgt) and tgt[j].startswith("ADJ"):
                    assert tgt[j].endswith("-e") == (g == "f")   # adjective agreement
                    j += 1
        # adjectives precede the noun in the source and follow it in the target (reordering)
        for i, w in enumerate(src):
            if w.startswith("adj"):
                assert src[i + 1].startswith(("adj", "n"))
    assert len(set(genders.values())) == 2
    lens = [len(s) for s, _ in a]
    assert max(lens) > 16 and min(lens) < 10          # long and short sentences


def test_toy_grammar_bad_input():
    with pytest.raises(ValueError, match="max_len"):
        toy_translation_corpus(5, max_len=3)
    with pytest.raises(ValueError, match="p_conj"):
        toy_translation_corpus(5, p_conj=1.0)


def test_make_batches_covers_every_pair_once_with_specials():
    pairs = [([4] * (1 + i % 7), [5] * (1 + i % 5)) for i in range(103)]
    seen = []
    for b in make_batches(pairs, 10, seed=1):
        B = b["src"].shape[0]
        assert b["tgt_in"][:, 0].eq(1).all()
        for r in range(B):
            i = int(b["idx"][r])
            seen.append(i)
            s, t = pairs[i]
            assert b["src"][r, : b["src_len"][r]].tolist() == s
            assert b["src"][r, b["src_len"][r]:].eq(0).all()          # natural order, right pad
            n = int(b["tgt_len"][r])
            assert b["tgt_out"][r, :n].tolist() == t + [2]
            assert b["tgt_in"][r, :n].tolist() == [1] + t
    assert sorted(seen) == list(range(103))
    assert len(list(make_batches(pairs, 10))) == steps_per_epoch(103, 10)
    assert len(list(make_batches(pairs, 10, length_bucketing=False))) == steps_per_epoch(
        103, 10, False)


def test_length_bucketing_reduces_padding():
    pairs = toy_translation_corpus(600, seed=0)
    ids = [([4] * len(s), [4] * len(t)) for s, t in pairs]

    def padding(bucket):
        return sum(int(b["src"].numel() - b["src_len"].sum())
                   for b in make_batches(ids, 32, length_bucketing=bucket, seed=0))

    assert padding(True) < 0.2 * padding(False)


def test_make_batches_bad_input():
    with pytest.raises(ValueError, match="pairs"):
        list(make_batches([], 4))
    with pytest.raises(ValueError, match="batch_size"):
        list(make_batches([([4], [4])], 0))


def test_load_parallel_text(tmp_path):
    (tmp_path / "a.en").write_text("the cat\n\nA dog runs .\nvery long line here x y\n")
    (tmp_path / "a.fr").write_text("le chat\nvide\nUn chien court .\nx\n")
    pairs = load_parallel_text(tmp_path / "a.en", tmp_path / "a.fr", max_len=4)
    assert pairs == [(["the", "cat"], ["le", "chat"]), (["A", "dog", "runs", "."],
                                                          ["Un", "chien", "court", "."])]
    (tmp_path / "b.fr").write_text("one\n")
    with pytest.raises(ValueError, match="line-aligned"):
        load_parallel_text(tmp_path / "a.en", tmp_path / "b.fr")
    with pytest.raises(ValueError, match="existing file"):
        load_parallel_text(tmp_path / "missing", tmp_path / "b.fr")


def test_read_po_pairs(tmp_path):
    po = tmp_path / "django.po"
    po.write_text('''# header
msgid ""
msgstr ""
"Language: fr\\n"

#: a.py:1
msgid "Save"
msgstr "Enregistrer"

msgid ""
"Enter a valid "
"value."
msgstr "Saisissez une valeur "
"valide."

#, fuzzy
msgid "Fuzzy"
msgstr "Flou"

msgid "one item"
msgid_plural "%d items"
msgstr[0] "un"
msgstr[1] "%d"

msgid "Untranslated"
msgstr ""

msgid "Say \\"hi\\""
msgstr "Dis \\"salut\\""
''', encoding="utf-8")
    assert read_po_pairs(po) == [("Save", "Enregistrer"),
                                 ("Enter a valid value.", "Saisissez une valeur valide."),
                                 ('Say "hi"', 'Dis "salut"')]


def test_gettext_real_text_pipeline_when_django_is_installed():
    """Smoke test on real text shipped inside an installed package (Django's catalogues)."""
    pytest.importorskip("django")
    from dnnkit.seq2seq import LSTMSeq2Seq, Seq2SeqConfig, beam_search, bleu, train
    from dnnkit.seq2seq.data import pad_sequences
    from dnnkit.seq2seq.recipe import TrainConfig

    pairs = gettext_parallel_corpus("fr")
    assert len(pairs) > 100 and all(a and b for a, b in pairs)
    toks = [(a.split(), b.split()) for a, b in pairs if 0 < len(a.split()) <= 8][:200]
    sv, tv = Vocab(w for s, _ in toks for w in s), Vocab(w for _, t in toks for w in t)
    ids = [(sv.encode(s), tv.encode(t)) for s, t in toks]
    m = LSTMSeq2Seq(Seq2SeqConfig(len(sv), len(tv), emb_dim=16, hidden=32, layers=1))
    hist = train(m, ids, cfg=TrainConfig(optimizer="adam", lr=1e-2, batch_size=32, max_steps=20,
                                         halve_after_epochs=1e6))
    assert hist["loss"][-1] < hist["loss"][0]
    src, sl = pad_sequences([s for s, _ in ids[:20]])
    hyps = [" ".join(tv.decode(o[0].tokens)) for o in beam_search(m, src, sl, beam_size=2)]
    assert 0 <= bleu(hyps, [" ".join(t) for _, t in toks[:20]], tokenize="13a") <= 100


def test_tensor_sequences_accepted_by_batching():
    pairs = [(torch.tensor([4, 5]).tolist(), [6])]
    b = next(make_batches(pairs, 1))
    assert b["src"].tolist() == [[4, 5]]
