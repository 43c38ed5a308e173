"""seq2seq's bad-input table for tests/test_conformance.py (issue 13)."""

from __future__ import annotations

import torch

from dnnkit.core.validation import Example
from dnnkit.seq2seq import (
    LSTMSeq2Seq,
    Seq2SeqConfig,
    beam_search,
    bleu,
    toy_translation_corpus,
    train,
)
from dnnkit.seq2seq.data import gettext_parallel_corpus
from dnnkit.seq2seq.recipe import TrainConfig


def examples() -> list[Example]:
    cfg = Seq2SeqConfig(src_vocab=9, tgt_vocab=9, emb_dim=4, hidden=8, layers=1)
    m = LSTMSeq2Seq(cfg, seed=0).eval()
    src = torch.tensor([[4, 5, 6], [7, 8, 0]])
    src_len = torch.tensor([3, 2])
    tgt = torch.tensor([[5, 2], [6, 2]])
    tgt_len = torch.tensor([2, 2])
    state = m.encode(src, src_len)
    pairs = [([4, 5], [5, 4, 2]), ([6], [6, 2])]
    one_step = TrainConfig(max_steps=1, batch_size=2)
    return [
        Example(Seq2SeqConfig, kwargs={"src_vocab": 9, "tgt_vocab": 9, "emb_dim": 4, "hidden": 8,
                                       "layers": 1, "dropout": 0.0, "init_range": 0.08,
                                       "init": "pytorch",
                                       "reverse_source": True, "tie_target_embeddings": False,
                                       "pad_id": 0, "bos_id": 1, "eos_id": 2}),
        Example(LSTMSeq2Seq, args=(cfg,), kwargs={"seed": 0}),
        Example(m.check_source, args=(src, src_len)),
        Example(m.encode, args=(src, src_len)),
        Example(m.step, args=(torch.tensor([1, 1]), state)),
        Example(m.forward, args=(src, src_len, tgt)),
        Example(m.token_log_probs, args=(src, src_len, tgt, tgt_len)),
        Example(m.log_prob, args=(src, src_len, tgt, tgt_len)),
        Example(m.sentence_vector, args=(src, src_len), kwargs={"include_cell": True}),
        Example(beam_search, args=(m, src, src_len),
                kwargs={"beam_size": 2, "max_len": 3, "length_penalty": 0.0,
                        "ensemble": "mean_prob", "return_n_best": 2}),
        Example(bleu, args=(["the cat sat"], ["the cat sat"]), kwargs={"tokenize": "none"}),
        Example(toy_translation_corpus, args=(2, 0, 12),
                kwargs={"n_nouns": 3, "n_adjs": 2, "n_verbs": 2, "p_conj": 0.1, "p_pp": 0.1,
                        "grammar_seed": 1}),
        Example(train, args=(m, pairs, None, one_step),
                kwargs={"checkpoint_every": 5, "resume": False, "stop_after": 1,
                        "log_every": 1, "on_log": None}),
        # the examples
        Example(bleu, args=("the cat sat", "the cat sat"), raises=TypeError, param="hyps"),
        Example(bleu, args=(["the cat sat"], "the cat sat"), raises=TypeError, param="refs"),
        Example(beam_search, args=(m, src, src_len), kwargs={"beam_size": 2, "return_n_best": 5},
                raises=ValueError, param="return_n_best"),
        Example(toy_translation_corpus, args=(2**40,), raises=ValueError, param="n"),
        Example(gettext_parallel_corpus, args=("../../../etc",), raises=ValueError,
                param="lang"),
        Example(gettext_parallel_corpus, args=("/etc/passwd",), raises=ValueError, param="lang"),
        Example(train, args=("model", pairs), raises=TypeError, param="model"),
        Example(LSTMSeq2Seq, args=(Seq2SeqConfig(src_vocab=10_000_000, tgt_vocab=10_000_000,
                                                 emb_dim=1000),),
                raises=ValueError, param="cfg"),
        Example(m.step, args=(torch.tensor([1, 99]), state), raises=ValueError, param="y_prev"),
    ]
