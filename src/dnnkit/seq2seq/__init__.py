"""Sequence to sequence learning with deep LSTMs (encoder-decoder, reversed source, beam search).

Sutskever, Vinyals & Le, "Sequence to Sequence Learning with Neural Networks", NeurIPS 2014,
arXiv:1409.3215. A multi-layer LSTM reads the (reversed) source sentence; its final (h, c) start
a second multi-layer LSTM that generates the target until ``</s>`` (eq. 1); decoding is batched
left-to-right beam search; ensembles average per-step probabilities; n-best lists of another
system can be rescored; BLEU is sacrebleu's.

Public API (``__all__``): :class:`Seq2SeqConfig`, :class:`LSTMSeq2Seq`, :func:`train`,
:func:`beam_search`, :func:`bleu`, :func:`toy_translation_corpus`. More in the sub-modules:
``data`` (``Vocab``, ``make_batches``, ``load_parallel_text``, ``gettext_parallel_corpus``),
``recipe`` (``TrainConfig``, ``perplexity``, ``lr_at``), ``decode`` (``StepDecoder``,
``Hypothesis``, ``rescore_nbest``, ``score_hypotheses``), ``metrics`` (``bleu_by_length``).

Examples
--------
>>> import torch
>>> from dnnkit.seq2seq import LSTMSeq2Seq, Seq2SeqConfig, beam_search, train
>>> from dnnkit.seq2seq.recipe import TrainConfig
>>> pairs = [([4, 5, 6], [6, 5, 4]), ([7, 4], [4, 7])] * 8
>>> model = LSTMSeq2Seq(Seq2SeqConfig(src_vocab=8, tgt_vocab=8, emb_dim=8, hidden=16, layers=1))
>>> hist = train(model, pairs, cfg=TrainConfig(optimizer="adam", lr=0.02, batch_size=4,
...                                            max_steps=100, halve_after_epochs=100))
>>> hist["loss"][-1] < hist["loss"][0]
True
>>> best = beam_search(model, torch.tensor([[4, 5, 6]]), torch.tensor([3]), beam_size=2)[0][0]
>>> best.tokens
[6, 5, 4]
"""

from dnnkit.seq2seq.data import toy_translation_corpus
from dnnkit.seq2seq.decode import beam_search
from dnnkit.seq2seq.metrics import bleu
from dnnkit.seq2seq.model import LSTMSeq2Seq, Seq2SeqConfig
from dnnkit.seq2seq.recipe import train

__all__ = ["LSTMSeq2Seq", "Seq2SeqConfig", "beam_search", "bleu", "toy_translation_corpus",
           "train"]
