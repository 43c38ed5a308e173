"""The paper's model: separate multi-layer LSTM encoder and decoder, no attention.

Sutskever, Vinyals & Le (2014), section 2: p(y_1..y_T' | x_1..x_T) = prod_t p(y_t | v, y_<t)
(eq. 1), where v is the final (h, c) of every encoder layer. ``torch.nn.LSTM`` (no peephole
connections) stands in for the Graves LSTM the paper cites.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from dnnkit.core.seeding import SeedLike, make_generator
from dnnkit.core.validation import (
    Instance,
    Int,
    Options,
    Real,
    Seed,
    Sequence_,
    Tensor,
    check_choice,
    check_int,
    check_interval,
    check_memory,
    param_error,
    validate_params,
)

__all__ = ["LSTMSeq2Seq", "Seq2SeqConfig", "check_padded", "reverse_padded"]

State = tuple[torch.Tensor, torch.Tensor]


_SIZE = Int(1, 1_000_000)
_ID = Int(0, 10_000_000)


@validate_params({"src_vocab": Int(4, 10_000_000), "tgt_vocab": Int(4, 10_000_000),
                  "emb_dim": _SIZE, "hidden": _SIZE, "layers": Int(1, 1_000),
                  "dropout": Real(0.0, 1.0, closed="left"),
                  "init_range": Real(0.0, 100.0, closed="right"),
                  "init": Options("uniform", "pytorch"),
                  "reverse_source": Instance(bool), "tie_target_embeddings": Instance(bool),
                  "pad_id": _ID, "bos_id": _ID, "eos_id": _ID})
@dataclass(frozen=True)
class Seq2SeqConfig:
    """Size and options of :class:`LSTMSeq2Seq`; defaults are the paper's (section 3.4).

    With ``src_vocab=160_000`` and ``tgt_vocab=80_000`` the defaults give the paper's 384M
    parameters, 64M of them recurrent (32M encoder + 32M decoder).

    Parameters
    ----------
    src_vocab, tgt_vocab
        Vocabulary sizes (specials included).
    emb_dim, hidden, layers
        Word-embedding size, LSTM cells per layer, LSTM layers in encoder and in decoder.
    dropout
        Dropout between LSTM layers and before the softmax (the paper uses none).
    init_range
        With ``init="uniform"``, every parameter is drawn from U(-init_range, init_range)
        (paper: 0.08).
    init
        ``"uniform"`` (the paper's section 3.4 scheme, the default here) or ``"pytorch"``:
        PyTorch's own default distributions (embeddings N(0, 1), LSTM weights and biases
        U(-1/sqrt(hidden), 1/sqrt(hidden)), softmax layer U(-1/sqrt(hidden), 1/sqrt(hidden))),
        drawn from the seeded generator. At CPU scale (small models, a few hundred steps) the
        PyTorch init learns much faster; the paper's 1000-cell model makes both ranges similar
        (1/sqrt(1000) = 0.032).
    reverse_source
        Feed the source to the encoder in reversed order (section 3.3); done only in
        :meth:`LSTMSeq2Seq.encode`.
    tie_target_embeddings
        Share the decoder input embedding with the softmax weights (needs emb_dim == hidden).
    pad_id, bos_id, eos_id
        Special ids, equal in both vocabularies (:class:`~dnnkit.seq2seq.data.Vocab` uses 0, 1, 2).
    """

    src_vocab: int
    tgt_vocab: int
    emb_dim: int = 1000
    hidden: int = 1000
    layers: int = 4
    dropout: float = 0.0
    init_range: float = 0.08
    init: Literal["uniform", "pytorch"] = "uniform"
    reverse_source: bool = True
    tie_target_embeddings: bool = False
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    def __post_init__(self) -> None:
        w = "Seq2SeqConfig"
        check_int(self.src_vocab, "src_vocab", 4, where=w)
        check_int(self.tgt_vocab, "tgt_vocab", 4, where=w)
        check_int(self.emb_dim, "emb_dim", 1, where=w)
        check_int(self.hidden, "hidden", 1, where=w)
        check_int(self.layers, "layers", 1, where=w)
        check_interval(self.dropout, "dropout", 0.0, 1.0, closed="left", where=w)
        check_interval(self.init_range, "init_range", 0.0, None, closed="neither", where=w)
        check_choice(self.init, "init", ("uniform", "pytorch"), where=w)
        ids = (self.pad_id, self.bos_id, self.eos_id)
        for name, v in zip(("pad_id", "bos_id", "eos_id"), ids):
            check_int(v, name, 0, min(self.src_vocab, self.tgt_vocab) - 1, where=w)
        if len(set(ids)) != 3:
            raise ValueError(param_error("pad_id/bos_id/eos_id", w, "three distinct ids", ids))
        if self.tie_target_embeddings and self.emb_dim != self.hidden:
            raise ValueError(param_error("tie_target_embeddings", w,
                                         "False unless emb_dim == hidden",
                                         f"emb_dim={self.emb_dim}, hidden={self.hidden}"))


def check_padded(x: torch.Tensor, lengths: torch.Tensor, name: str, vocab: int, pad_id: int,
                 where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a right-padded ``(B, T)`` id batch and its ``(B,)`` lengths.

    Every row must have length >= 1, ids in ``[0, vocab)`` before its length, no padding id
    inside the sequence and only padding after it.
    """
    if not isinstance(x, torch.Tensor) or x.dtype not in (torch.int64, torch.int32, torch.int16,
                                                          torch.uint8, torch.int8):
        raise TypeError(param_error(name, where, "an integer torch.Tensor of ids",
                                    getattr(x, "dtype", type(x).__name__)))
    if not isinstance(lengths, torch.Tensor) or lengths.is_floating_point():
        raise TypeError(param_error(f"{name}_len", where, "an integer torch.Tensor",
                                    getattr(lengths, "dtype", type(lengths).__name__)))
    if x.ndim != 2:
        raise ValueError(param_error(name, where, "a (batch, time) tensor", f"shape {tuple(x.shape)}"))
    if lengths.shape != (x.shape[0],):
        raise ValueError(param_error(f"{name}_len", where, f"a tensor of shape ({x.shape[0]},)",
                                     f"shape {tuple(lengths.shape)}"))
    if x.shape[0] == 0:
        raise ValueError(param_error(name, where, "a non-empty batch", "0 sequences"))
    lengths = lengths.to(torch.long)
    lo, hi = int(lengths.min()), int(lengths.max())
    if lo < 1:
        raise ValueError(param_error(f"{name}_len", where,
                                     "lengths >= 1 (empty sequences cannot be encoded)", lo))
    if hi > x.shape[1]:
        raise ValueError(param_error(f"{name}_len", where, f"lengths <= {x.shape[1]} (the padded "
                                     "width)", hi))
    x = x.to(torch.long)
    inside = torch.arange(x.shape[1], device=x.device)[None, :] < lengths.to(x.device)[:, None]
    vals = x[inside]
    if int(vals.min()) < 0 or int(vals.max()) >= vocab:
        bad = int(vals.min()) if int(vals.min()) < 0 else int(vals.max())
        raise ValueError(param_error(name, where, f"ids in [0, {vocab})", bad))
    if bool((vals == pad_id).any()):
        row = int(((x == pad_id) & inside).any(1).nonzero()[0])
        raise ValueError(param_error(name, where, f"free of the padding id {pad_id} inside a "
                                     "sequence (is the length wrong?)", f"padding inside row {row}"))
    if bool((x[~inside] != pad_id).any()):
        row = int(((x != pad_id) & ~inside).any(1).nonzero()[0])
        raise ValueError(param_error(f"{name}_len", where, "consistent with the padding",
                                     f"tokens after the stated length in row {row}"))
    return x, lengths


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first ``lengths[b]`` entries of a right-padded ``(B, T)`` tensor; the
    padding stays on the right (x_1..x_T -> x_T..x_1, section 3.3)."""
    T = x.shape[1]
    pos = torch.arange(T, device=x.device)[None, :]
    lens = lengths.to(x.device)[:, None]
    idx = torch.where(pos < lens, lens - 1 - pos, pos)
    return x.gather(1, idx)


_SRC = {"src": Tensor(ndim=2, dtype="integer"), "src_len": Tensor(ndim=1, dtype="integer")}


def n_parameters(cfg: Seq2SeqConfig) -> int:
    """Parameter count of :class:`LSTMSeq2Seq` for ``cfg`` (computed, nothing allocated)."""
    lstm = sum(4 * cfg.hidden * ((cfg.emb_dim if i == 0 else cfg.hidden) + cfg.hidden + 2)
               for i in range(cfg.layers))
    proj = 0 if cfg.tie_target_embeddings else cfg.hidden * cfg.tgt_vocab
    return (cfg.src_vocab + cfg.tgt_vocab) * cfg.emb_dim + 2 * lstm + proj + cfg.tgt_vocab


@validate_params({"cfg": Instance(Seq2SeqConfig), "seed": Seed()})
class LSTMSeq2Seq(nn.Module):
    """Deep LSTM encoder-decoder of Sutskever et al. (2014), sections 2 and 3.4.

    Parameters
    ----------
    cfg
        Sizes and options (:class:`Seq2SeqConfig`).
    seed
        Seeds the uniform initialisation (no global RNG state is touched).

    Examples
    --------
    >>> cfg = Seq2SeqConfig(src_vocab=12, tgt_vocab=10, emb_dim=8, hidden=16, layers=2)
    >>> m = LSTMSeq2Seq(cfg, seed=0)
    >>> src, src_len = torch.tensor([[4, 5, 6], [7, 8, 0]]), torch.tensor([3, 2])
    >>> m(src, src_len, torch.tensor([[1, 4], [1, 5]])).shape
    torch.Size([2, 2, 10])
    >>> m.sentence_vector(src, src_len).shape          # 2 (h, c) x 2 layers x 16 cells
    torch.Size([2, 64])
    """

    def __init__(self, cfg: Seq2SeqConfig, *, seed: SeedLike = 0) -> None:
        if not isinstance(cfg, Seq2SeqConfig):
            raise TypeError(param_error("cfg", "LSTMSeq2Seq", "a Seq2SeqConfig", type(cfg).__name__))
        if torch.empty(0).device.type != "meta":
            check_memory(4.0 * n_parameters(cfg), "cfg", "LSTMSeq2Seq")
        super().__init__()
        self.cfg = cfg
        drop = cfg.dropout if cfg.layers > 1 else 0.0
        self.src_emb = nn.Embedding(cfg.src_vocab, cfg.emb_dim)
        self.tgt_emb = nn.Embedding(cfg.tgt_vocab, cfg.emb_dim)
        self.encoder = nn.LSTM(cfg.emb_dim, cfg.hidden, cfg.layers, batch_first=True, dropout=drop)
        self.decoder = nn.LSTM(cfg.emb_dim, cfg.hidden, cfg.layers, batch_first=True, dropout=drop)
        self.drop = nn.Dropout(cfg.dropout)
        self.proj = nn.Linear(cfg.hidden, cfg.tgt_vocab)
        if cfg.tie_target_embeddings:
            self.proj.weight = self.tgt_emb.weight
        if self.proj.weight.device.type != "meta":
            self._init_parameters(make_generator(seed))

    @torch.no_grad()
    def _init_parameters(self, gen: torch.Generator) -> None:
        """Seeded initialisation: the paper's U(-init_range, init_range) for every parameter,
        or PyTorch's default distributions (``cfg.init == "pytorch"``) from the same generator."""
        cfg = self.cfg
        for name, p in self.named_parameters():
            if cfg.init == "uniform":
                new = torch.empty(p.shape).uniform_(-cfg.init_range, cfg.init_range,
                                                    generator=gen)
            elif name.endswith("_emb.weight"):            # nn.Embedding: N(0, 1)
                new = torch.empty(p.shape).normal_(0.0, 1.0, generator=gen)
            else:   # nn.LSTM: U(+-1/sqrt(hidden)); nn.Linear (fan_in = hidden): the same bound
                bound = cfg.hidden ** -0.5
                new = torch.empty(p.shape).uniform_(-bound, bound, generator=gen)
            p.copy_(new)

    # --- the StepDecoder protocol -------------------------------------------------------
    @property
    def pad_id(self) -> int:
        return self.cfg.pad_id

    @property
    def bos_id(self) -> int:
        return self.cfg.bos_id

    @property
    def eos_id(self) -> int:
        return self.cfg.eos_id

    @property
    def tgt_vocab(self) -> int:
        return self.cfg.tgt_vocab

    @property
    def src_vocab(self) -> int:
        return self.cfg.src_vocab

    def _device(self) -> torch.device:
        return self.proj.weight.device

    @validate_params(_SRC)
    def check_source(self, src: torch.Tensor, src_len: torch.Tensor, where: str = "LSTMSeq2Seq.encode"
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate a padded source batch (see :func:`check_padded`)."""
        return check_padded(src, src_len, "src", self.cfg.src_vocab, self.cfg.pad_id, where)

    def _encode(self, src: torch.Tensor, src_len: torch.Tensor) -> State:
        dev = self._device()
        src = src.to(dev)
        if self.cfg.reverse_source:        # the one and only place the source is reversed
            src = reverse_padded(src, src_len)
        emb = self.drop(self.src_emb(src))
        if bool((src_len == src.shape[1]).all()):
            _, state = self.encoder(emb)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(emb, src_len.cpu(), batch_first=True,
                                                       enforce_sorted=False)
            _, state = self.encoder(packed)
        return state

    @validate_params(_SRC)
    def encode(self, src: torch.Tensor, src_len: torch.Tensor) -> State:
        """Final encoder state v = (h, c), each ``(layers, B, hidden)``.

        Parameters
        ----------
        src
            ``(B, S)`` right-padded source ids in natural order; reversed here when
            ``cfg.reverse_source`` (never elsewhere, so it cannot happen twice).
        src_len
            ``(B,)`` true lengths (>= 1).
        """
        src, src_len = self.check_source(src, src_len)
        return self._encode(src, src_len)

    @validate_params({"y_prev": Tensor(ndim=1, dtype="integer"),
                      "state": Sequence_(Instance(torch.Tensor), min_len=2, max_len=2)})
    def step(self, y_prev: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One decoder step: log p(y_t | v, y_<t) over the target vocabulary, ``(N, V)``."""
        if y_prev.numel() and (int(y_prev.min()) < 0 or int(y_prev.max()) >= self.cfg.tgt_vocab):
            raise ValueError(param_error("y_prev", "LSTMSeq2Seq.step",
                                         f"ids in [0, {self.cfg.tgt_vocab})",
                                         f"range [{int(y_prev.min())}, {int(y_prev.max())}]"))
        out, state = self.decoder(self.tgt_emb(y_prev.to(self._device()))[:, None, :], state)
        return torch.log_softmax(self.proj(out[:, 0]).float(), dim=-1), state

    @staticmethod
    def reorder_state(state: State, index: torch.Tensor) -> State:
        """Select/duplicate batch rows of a decoder state (beam search bookkeeping)."""
        return state[0].index_select(1, index), state[1].index_select(1, index)

    # --- training and scoring ------------------------------------------------------------
    def _logits(self, src: torch.Tensor, src_len: torch.Tensor, tgt_in: torch.Tensor
                ) -> torch.Tensor:
        state = self._encode(src, src_len)
        out, _ = self.decoder(self.drop(self.tgt_emb(tgt_in.to(self._device()))), state)
        return self.proj(self.drop(out))

    @validate_params({**_SRC, "tgt_in": Tensor(ndim=2, dtype="integer")})
    def forward(self, src: torch.Tensor, src_len: torch.Tensor, tgt_in: torch.Tensor
                ) -> torch.Tensor:
        """Teacher-forced logits ``(B, T', V)`` for decoder inputs ``tgt_in`` (``<s>`` first)."""
        src, src_len = self.check_source(src, src_len, "LSTMSeq2Seq.forward")
        if not isinstance(tgt_in, torch.Tensor) or tgt_in.ndim != 2 or tgt_in.shape[0] != src.shape[0]:
            raise ValueError(param_error("tgt_in", "LSTMSeq2Seq.forward",
                                         f"a ({src.shape[0]}, T) id tensor",
                                         getattr(tgt_in, "shape", type(tgt_in).__name__)))
        if int(tgt_in.min()) < 0 or int(tgt_in.max()) >= self.cfg.tgt_vocab:
            raise ValueError(param_error("tgt_in", "LSTMSeq2Seq.forward",
                                         f"ids in [0, {self.cfg.tgt_vocab})",
                                         f"range [{int(tgt_in.min())}, {int(tgt_in.max())}]"))
        return self._logits(src, src_len, tgt_in)

    @validate_params({**_SRC, "tgt": Tensor(ndim=2, dtype="integer"),
                      "tgt_len": Tensor(ndim=1, dtype="integer")})
    def token_log_probs(self, src: torch.Tensor, src_len: torch.Tensor, tgt: torch.Tensor,
                        tgt_len: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` log p(y_t | v, y_<t) of every target token (0 on padding)."""
        src, src_len = self.check_source(src, src_len, "LSTMSeq2Seq.log_prob")
        tgt, tgt_len = check_padded(tgt, tgt_len, "tgt", self.cfg.tgt_vocab, self.cfg.pad_id,
                                    "LSTMSeq2Seq.log_prob")
        if tgt.shape[0] != src.shape[0]:
            raise ValueError(param_error("tgt", "LSTMSeq2Seq.log_prob",
                                         f"{src.shape[0]} rows like src", tgt.shape[0]))
        dev = self._device()
        tgt = tgt.to(dev)
        bos = torch.full((tgt.shape[0], 1), self.cfg.bos_id, dtype=torch.long, device=dev)
        logits = self._logits(src, src_len, torch.cat([bos, tgt[:, :-1]], 1))
        lp = torch.log_softmax(logits.float(), -1).gather(2, tgt[:, :, None])[:, :, 0]
        mask = torch.arange(tgt.shape[1], device=dev)[None, :] < tgt_len.to(dev)[:, None]
        return lp * mask

    @validate_params({**_SRC, "tgt": Tensor(ndim=2, dtype="integer"),
                      "tgt_len": Tensor(ndim=1, dtype="integer")})
    def log_prob(self, src: torch.Tensor, src_len: torch.Tensor, tgt: torch.Tensor,
                 tgt_len: torch.Tensor) -> torch.Tensor:
        """``(B,)`` sum_t log p(y_t | v, y_<t) (eq. 1) of right-padded targets ``tgt``.

        Include ``</s>`` at the end of each target to score complete sentences (as beam search
        and n-best rescoring do). The sum is accumulated and returned in float64, like beam
        search's scores, so both agree on long hypotheses."""
        return self.token_log_probs(src, src_len, tgt, tgt_len).double().sum(1)

    @validate_params({**_SRC, "include_cell": Instance(bool)})
    def sentence_vector(self, src: torch.Tensor, src_len: torch.Tensor, *,
                        include_cell: bool = True) -> torch.Tensor:
        """The fixed-size representation v (section 3.8, Fig. 2): ``[h_1..h_L, c_1..c_L]``,
        shape ``(B, 2 * layers * hidden)`` (``(B, layers * hidden)`` without the cells)."""
        h, c = self.encode(src, src_len)
        parts = [h] + ([c] if include_cell else [])
        return torch.cat([p.transpose(0, 1).reshape(src.shape[0], -1) for p in parts], 1)
