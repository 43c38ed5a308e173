"""Batched left-to-right beam search, ensembles and n-best rescoring (sections 3.2, 3.5-3.6).

Any decoder that follows the :class:`StepDecoder` protocol (``encode``, ``step``,
``reorder_state`` and four id attributes) can use the same search, e.g. a user's Transformer
whose state carries the encoder memory and the prefix.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import torch

from dnnkit.core.hooks import eval_mode
from dnnkit.core.validation import (
    Int,
    Optional_,
    Options,
    Real,
    Tensor,
    check_choice,
    check_int,
    check_interval,
    param_error,
    validate_params,
)
from dnnkit.seq2seq.data import check_id_sequences, pad_sequences
from dnnkit.seq2seq.model import check_padded

__all__ = [
    "Hypothesis",
    "StepDecoder",
    "beam_search",
    "check_ensemble",
    "rescore_nbest",
    "score_hypotheses",
]

log = logging.getLogger("dnnkit")


@runtime_checkable
class StepDecoder(Protocol):
    """What :func:`beam_search` needs from a model.

    ``encode(src, src_len)`` returns an opaque state for ``B`` sentences; ``step(y_prev, state)``
    returns ``(log_probs (N, V), new_state)`` for ``N`` rows; ``reorder_state(state, index)``
    selects/duplicates rows. ``pad_id``, ``bos_id``, ``eos_id`` and ``tgt_vocab`` describe the
    target vocabulary (``src_vocab`` too, if the model has one).
    """

    pad_id: int
    bos_id: int
    eos_id: int
    tgt_vocab: int

    def encode(self, src: torch.Tensor, src_len: torch.Tensor) -> Any: ...

    def step(self, y_prev: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]: ...

    def reorder_state(self, state: Any, index: torch.Tensor) -> Any: ...


@dataclass
class Hypothesis:
    """One decoded sentence: ids without ``<s>``/``</s>``, its ranking ``score`` (the
    log-probability divided by the length penalty), its ``logprob`` (including ``</s>`` when
    finished) and whether it ended with ``</s>`` (``False``: cut at ``max_len``)."""

    tokens: list[int]
    score: float
    logprob: float
    finished: bool


def check_ensemble(models: StepDecoder | Sequence[StepDecoder], where: str) -> list[StepDecoder]:
    """A list of step decoders with identical vocabularies and special ids, else ValueError."""
    ms = [models] if isinstance(models, StepDecoder) else list(models)
    if not ms:
        raise ValueError(param_error("models", where, "a model or a non-empty list of models", ms))
    for i, m in enumerate(ms):
        if not isinstance(m, StepDecoder):
            raise TypeError(param_error("models", where, "StepDecoder objects (encode, step, "
                                        "reorder_state, pad_id, bos_id, eos_id, tgt_vocab)",
                                        f"{type(m).__name__} at index {i}"))
    keys = ("tgt_vocab", "src_vocab", "pad_id", "bos_id", "eos_id")
    ref = {k: getattr(ms[0], k, None) for k in keys}
    for i, m in enumerate(ms[1:], 1):
        got = {k: getattr(m, k, None) for k in keys}
        diff = [f"{k}: {ref[k]} vs {got[k]}" for k in keys if got[k] != ref[k]]
        if diff:
            raise ValueError(f"The 'models' parameter of {where} must share one vocabulary and "
                             f"the same special ids. Got model {i} differing from model 0 in "
                             f"{', '.join(diff)} instead.")
    return ms


def _combine(logps: list[torch.Tensor], ensemble: str) -> torch.Tensor:
    if len(logps) == 1:
        return logps[0]
    stacked = torch.stack(logps)
    if ensemble == "mean_prob":     # log of the mean of the members' probabilities
        return torch.logsumexp(stacked, 0) - math.log(len(logps))
    return stacked.mean(0)          # mean of log-probabilities (a renormalised product)


def _validate_source(ms: list[StepDecoder], src: torch.Tensor, src_len: torch.Tensor,
                     where: str) -> tuple[torch.Tensor, torch.Tensor]:
    vocab = getattr(ms[0], "src_vocab", None)
    if vocab is None:   # a user decoder without src_vocab: check the layout, not the id range
        vocab = int(src.max()) + 1 if isinstance(src, torch.Tensor) and src.numel() else 1
    return check_padded(src, src_len, "src", vocab, ms[0].pad_id, where)


@torch.no_grad()
@validate_params({"src": Tensor(ndim=2, dtype="integer"),
                  "src_len": Tensor(ndim=1, dtype="integer"),
                  "beam_size": Int(1, 10_000), "max_len": Optional_(Int(1, 100_000)),
                  "length_penalty": Real(0.0, 100.0),
                  "ensemble": Options("mean_prob", "mean_logprob"),
                  "return_n_best": Int(1, 10_000)})
def beam_search(models: StepDecoder | Sequence[StepDecoder], src: torch.Tensor,
                src_len: torch.Tensor, *, beam_size: int = 12, max_len: int | None = None,
                length_penalty: float = 0.0,
                ensemble: Literal["mean_prob", "mean_logprob"] = "mean_prob",
                return_n_best: int = 1) -> list[list[Hypothesis]]:
    """Left-to-right beam search over a batch of sentences (section 3.2), optionally with an
    ensemble (section 3.6).

    ``B`` partial hypotheses are kept per sentence; each step extends every one by every word
    and keeps the highest total log-probabilities. A hypothesis that emits ``</s>`` leaves the
    beam for the finished set and the beam shrinks by one; the search stops when the beam is
    empty or ``max_len`` tokens were produced. ``<pad>`` and ``<s>`` are never produced. With
    ``beam_size=1`` this is greedy decoding; with a beam at least as large as the number of
    possible sequences it is exact search.

    Parameters
    ----------
    models
        One :class:`StepDecoder` (e.g. :class:`~dnnkit.seq2seq.model.LSTMSeq2Seq`) or a list
        of them sharing one vocabulary (an ensemble).
    src, src_len
        ``(N, S)`` right-padded source ids in natural order and ``(N,)`` lengths.
    beam_size
        ``B`` >= 1 (paper: 12). A beam larger than the target vocabulary is allowed with a
        warning (it is not clamped: a beam that holds every sequence makes the search exact).
    max_len
        Most output tokens per sentence, ``</s>`` included; default ``2 * len + 10`` per source.
    length_penalty
        GNMT alpha: finished hypotheses are ranked by ``logprob / ((5 + |y|) / 6) ** alpha``
        (``|y|`` counts ``</s>``). 0 (default, the paper's pure log-probability) disables it.
    ensemble
        ``"mean_prob"`` (default): log of the members' mean per-step probability;
        ``"mean_logprob"``: mean of their per-step log-probabilities.
    return_n_best
        Hypotheses returned per sentence, best first (finished ones before unfinished ones).

    Returns
    -------
    list of list of Hypothesis
        ``result[i][0]`` is the best translation of sentence ``i``.

    Raises
    ------
    ValueError
        On an empty source, ids out of range, padding inside a sentence, lengths that do not
        match the padding, ``beam_size``/``max_len`` < 1, or ensemble members whose
        vocabularies differ.
    """
    where = "beam_search"
    ms = check_ensemble(models, where)
    check_int(beam_size, "beam_size", 1, where=where)
    check_int(return_n_best, "return_n_best", 1, where=where)
    check_interval(length_penalty, "length_penalty", 0.0, None, where=where)
    check_choice(ensemble, "ensemble", ("mean_prob", "mean_logprob"), where=where)
    if max_len is not None:
        check_int(max_len, "max_len", 1, where=where)
    if return_n_best > beam_size:
        raise ValueError(param_error("return_n_best", where,
                                     f"<= beam_size ({beam_size}): the search keeps only "
                                     "beam_size hypotheses", return_n_best))
    src, src_len = _validate_source(ms, src, src_len, where)
    V = int(ms[0].tgt_vocab)
    K = beam_size
    if K > V:
        log.warning("beam_search: beam_size %d is larger than the target vocabulary (%d); "
                    "the first step keeps at most %d hypotheses, later steps fill the beam",
                    K, V, V - 2)
    N = src.shape[0]
    limits = (2 * src_len + 10) if max_len is None else torch.full_like(src_len, max_len)
    limits = limits.tolist()
    T = max(limits)
    pad, bos, eos = ms[0].pad_id, ms[0].bos_id, ms[0].eos_id
    device = None
    with ExitStack() as stack:
        states = _encode_all(stack, ms, src, src_len, torch.arange(N).repeat_interleave(K))
        # scores accumulate token log-probabilities in float64 (float32 sums drift by ~1e-5
        # over 30 tokens, enough to reorder close hypotheses)
        scores = torch.full((N, K), -math.inf, dtype=torch.float64)
        scores[:, 0] = 0.0
        tokens = torch.empty((N, K, 0), dtype=torch.long)
        budget = [K] * N
        finished: list[list[Hypothesis]] = [[] for _ in range(N)]
        partial: list[list[Hypothesis]] = [[] for _ in range(N)]
        active = [True] * N
        y_prev = torch.full((N * K,), bos, dtype=torch.long)

        def lp(n_tok: int) -> float:
            return ((5.0 + n_tok) / 6.0) ** length_penalty if length_penalty else 1.0

        for t in range(1, T + 1):
            logps = []
            new_states = []
            for m, st in zip(ms, states):
                logp, st = m.step(y_prev, st)
                device = logp.device
                logps.append(logp.double().cpu())
                new_states.append(st)
            logp = _combine(logps, ensemble).view(N, K, V).clone()
            logp[:, :, pad] = -math.inf
            logp[:, :, bos] = -math.inf
            cand = (scores[:, :, None] + logp).view(N, K * V)
            top_s, top_i = cand.topk(min(K, K * V), dim=1)
            beam_of, word = top_i // V, top_i % V
            rank = torch.arange(top_s.shape[1])[None, :]
            budget_t = torch.tensor(budget)[:, None]
            act = torch.tensor(active)[:, None]
            chosen = (rank < budget_t) & torch.isfinite(top_s) & act
            ended = chosen & (word == eos)
            alive = chosen & (word != eos)
            new_tokens = torch.cat([tokens.gather(1, beam_of[:, :, None].expand(-1, -1, tokens.shape[2])),
                                    word[:, :, None]], 2)
            for n, k in ended.nonzero().tolist():
                s = float(top_s[n, k])
                finished[n].append(Hypothesis(new_tokens[n, k, :-1].tolist(), s / lp(t), s, True))
                budget[n] -= 1
            scores = torch.where(alive, top_s, torch.full_like(top_s, -math.inf))
            tokens = new_tokens
            for n in range(N):
                if not active[n]:
                    continue
                n_alive = int(alive[n].sum())
                if budget[n] <= 0 or n_alive == 0:
                    active[n] = False
                elif t >= limits[n]:
                    for k in alive[n].nonzero()[:, 0].tolist():
                        s = float(scores[n, k])
                        partial[n].append(Hypothesis(tokens[n, k].tolist(), s / lp(t), s, False))
                    active[n] = False
                if not active[n]:
                    scores[n] = -math.inf
            if not any(active):
                break
            src_rows = (torch.arange(N)[:, None] * K + beam_of).view(-1)
            states = [m.reorder_state(st, src_rows.to(device) if device is not None else src_rows)
                      for m, st in zip(ms, new_states)]
            y_prev = word.reshape(-1).clamp_min(0)
            if device is not None:
                y_prev = y_prev.to(device)
    out = []
    for n in range(N):
        fin = sorted(finished[n], key=lambda h: -h.score)
        par = sorted(partial[n], key=lambda h: -h.score)
        out.append((fin + par)[:return_n_best])
    return out


@torch.no_grad()
def score_hypotheses(models: StepDecoder | Sequence[StepDecoder], src: Sequence[int],
                     hyps: Sequence[Sequence[int]], *,
                     ensemble: Literal["mean_prob", "mean_logprob"] = "mean_prob",
                     add_eos: bool = True) -> torch.Tensor:
    """log p(hyp | src) of each hypothesis by stepping the decoder(s) (the quantity beam search
    maximises), ``(H,)`` float64 (token log-probabilities summed in float64). ``</s>`` is
    appended unless ``add_eos`` is false."""
    where = "score_hypotheses"
    ms = check_ensemble(models, where)
    check_choice(ensemble, "ensemble", ("mean_prob", "mean_logprob"), where=where)
    if not hyps:
        return torch.zeros(0, dtype=torch.float64)
    V = int(ms[0].tgt_vocab)
    hyps = check_id_sequences(hyps, "hyps", V, pad_id=ms[0].pad_id, where=where)
    if add_eos:
        hyps = [h + [ms[0].eos_id] for h in hyps]
    src_t = torch.as_tensor([list(src)], dtype=torch.long)
    src_l = torch.tensor([len(src)])
    src_t, src_l = _validate_source(ms, src_t, src_l, where)
    H = len(hyps)
    tgt, tgt_len = pad_sequences(hyps, ms[0].pad_id)
    with ExitStack() as stack:
        states = _encode_all(stack, ms, src_t, src_l, torch.zeros(H, dtype=torch.long))
        total = torch.zeros(H, dtype=torch.float64)
        y_prev = torch.full((H,), ms[0].bos_id, dtype=torch.long)
        for t in range(tgt.shape[1]):
            logps = []
            for i, m in enumerate(ms):
                logp, states[i] = m.step(y_prev.to(_dev(m)), states[i])
                logps.append(logp.double().cpu())
            logp = _combine(logps, ensemble)
            mask = t < tgt_len
            total += torch.where(mask, logp.gather(1, tgt[:, t: t + 1])[:, 0],
                                 torch.zeros(H, dtype=torch.float64))
            y_prev = tgt[:, t]
    return total


def _encode_all(stack: ExitStack, ms: Sequence[Any], src: torch.Tensor, src_len: torch.Tensor,
                rows: torch.Tensor) -> list[Any]:
    """Put every ensemble member in eval mode for the ``stack``'s lifetime, encode the source
    and expand each encoder state to the decoding rows (``rows[i]`` = source sentence of row i)."""
    for m in ms:
        if isinstance(m, torch.nn.Module):
            stack.enter_context(eval_mode(m))
    return [m.reorder_state(m.encode(src, src_len), rows.to(_dev(m))) for m in ms]


def _dev(m: Any) -> torch.device:
    if isinstance(m, torch.nn.Module):
        p = next(m.parameters(), None)
        if p is not None:
            return p.device
    return torch.device("cpu")


def rescore_nbest(models: StepDecoder | Sequence[StepDecoder], src: Sequence[int],
                  hyps: Sequence[Sequence[int]], ext_scores: Sequence[float], *,
                  weight: float = 0.5,
                  ensemble: Literal["mean_prob", "mean_logprob"] = "mean_prob") -> list[float]:
    """Rescore another system's n-best list (section 3.6, Table 2):
    ``weight * log p_LSTM(hyp | src) + (1 - weight) * ext_score`` (paper: an even average).

    Raises
    ------
    ValueError
        When ``hyps`` and ``ext_scores`` differ in length, a score is not finite, or a
        hypothesis is empty or holds ids outside the target vocabulary.
    """
    where = "rescore_nbest"
    check_interval(weight, "weight", 0.0, 1.0, where=where)
    ext = [float(s) for s in ext_scores]
    if len(ext) != len(hyps):
        raise ValueError(f"The 'ext_scores' parameter of {where} must have one score per "
                         f"hypothesis ({len(hyps)}). Got {len(ext)} scores instead.")
    if any(not math.isfinite(s) for s in ext):
        raise ValueError(param_error("ext_scores", where, "finite", ext))
    lstm = score_hypotheses(models, src, hyps, ensemble=ensemble).tolist()
    return [weight * a + (1.0 - weight) * b for a, b in zip(lstm, ext)]
