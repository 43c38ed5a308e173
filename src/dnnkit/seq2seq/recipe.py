"""The paper's training recipe (section 3.4) with mid-training checkpoints and resume.

Loss per batch: the sum of the token negative log-likelihoods of each sentence, averaged over
the sentences ("the gradient divided by the batch size"); global-norm clipping at 5; plain SGD
at 0.7 halved every half epoch after epoch 5, 7.5 epochs. Adam is offered for small CPU runs.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from dnnkit.core.checkpoint import (
    fingerprint_json,
    fingerprint_structure,
    load_training_state,
    save_training_state,
)
from dnnkit.core.hooks import eval_mode
from dnnkit.core.validation import (
    Callable_,
    Instance,
    Int,
    Optional_,
    PathArg,
    Sequence_,
    Str,
    check_choice,
    check_int,
    check_interval,
    check_positive,
    validate_params,
)
from dnnkit.seq2seq.data import check_id_sequences, make_batches
from dnnkit.seq2seq.model import LSTMSeq2Seq

__all__ = ["TrainConfig", "lr_at", "perplexity", "steps_per_epoch", "train"]

log = logging.getLogger("dnnkit")

Pairs = Sequence[tuple[Sequence[int], Sequence[int]]]


@dataclass(frozen=True)
class TrainConfig:
    """Training recipe; defaults are the paper's (section 3.4).

    Parameters
    ----------
    lr, momentum, optimizer
        Learning rate and optimiser: ``"sgd"`` (paper: 0.7, no momentum) or ``"adam"``.
    halve_after_epochs, halve_every_epochs, epochs
        After ``halve_after_epochs`` epochs the learning rate is halved every
        ``halve_every_epochs`` (paper: 5, 0.5, 7.5 epochs in total).
    batch_size
        Sentences per batch (paper: 128), length-bucketed when ``length_bucketing``.
    clip_norm
        Global gradient-norm threshold: if ``||g|| > clip_norm``, ``g <- clip_norm g / ||g||``.
    max_steps
        Stop after this many optimiser steps (an equal-budget knob; overrides ``epochs``).
    time_budget_s
        Stop after this many seconds of training (``None``: no limit).
    seed
        Seeds the batch order (each epoch's order depends only on ``seed`` and the epoch).
    """

    lr: float = 0.7
    momentum: float = 0.0
    halve_after_epochs: float = 5.0
    halve_every_epochs: float = 0.5
    epochs: float = 7.5
    batch_size: int = 128
    clip_norm: float = 5.0
    optimizer: Literal["sgd", "adam"] = "sgd"
    length_bucketing: bool = True
    max_steps: int | None = None
    time_budget_s: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        w = "TrainConfig"
        check_positive(self.lr, "lr", where=w)
        check_interval(self.momentum, "momentum", 0.0, 1.0, closed="left", where=w)
        check_interval(self.halve_after_epochs, "halve_after_epochs", 0.0, None, where=w)
        check_positive(self.halve_every_epochs, "halve_every_epochs", where=w)
        check_positive(self.epochs, "epochs", where=w)
        check_int(self.batch_size, "batch_size", 1, where=w)
        check_positive(self.clip_norm, "clip_norm", where=w)
        check_choice(self.optimizer, "optimizer", ("sgd", "adam"), where=w)
        if self.max_steps is not None:
            check_int(self.max_steps, "max_steps", 1, where=w)
        if self.time_budget_s is not None:
            check_positive(self.time_budget_s, "time_budget_s", where=w)


def lr_at(epoch: float, cfg: TrainConfig) -> float:
    """Learning rate after ``epoch`` (fractional) epochs: ``lr`` until ``halve_after_epochs``,
    then halved at that point and again every ``halve_every_epochs`` (section 3.4)."""
    if epoch < cfg.halve_after_epochs:
        return cfg.lr
    n = math.floor((epoch - cfg.halve_after_epochs) / cfg.halve_every_epochs + 1e-9) + 1
    return cfg.lr * 0.5 ** n


def steps_per_epoch(n_pairs: int, batch_size: int, length_bucketing: bool = True) -> int:
    """Number of batches :func:`~dnnkit.seq2seq.data.make_batches` yields per epoch."""
    if not length_bucketing:
        return math.ceil(n_pairs / batch_size)
    chunk = 50 * batch_size
    full, rest = divmod(n_pairs, chunk)
    return full * math.ceil(chunk / batch_size) + math.ceil(rest / batch_size)


def _batch_loss(model: nn.Module, b: dict[str, torch.Tensor], pad_id: int) -> torch.Tensor:
    if isinstance(model, LSTMSeq2Seq):
        logits = model._logits(b["src"], b["src_len"], b["tgt_in"])   # inputs validated once
    else:
        logits = model(b["src"], b["src_len"], b["tgt_in"])
    tgt = b["tgt_out"].to(logits.device)
    nll = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                      tgt.reshape(-1), ignore_index=pad_id, reduction="sum")
    return nll / tgt.shape[0]


def _check_pairs(model: nn.Module, pairs: Pairs, name: str) -> list[tuple[list[int], list[int]]]:
    if len(pairs) == 0:
        raise ValueError(f"The '{name}' parameter of train must be non-empty. Got 0 pairs instead.")
    cfg = model.cfg
    src = check_id_sequences([p[0] for p in pairs], f"{name} (sources)", cfg.src_vocab,
                             pad_id=cfg.pad_id, where="train")
    tgt = check_id_sequences([p[1] for p in pairs], f"{name} (targets)", cfg.tgt_vocab,
                             pad_id=cfg.pad_id, where="train")
    return list(zip(src, tgt))


@torch.no_grad()
def perplexity(model: LSTMSeq2Seq, pairs: Pairs, *, batch_size: int = 256) -> float:
    """exp(mean token negative log-likelihood) of the targets (``</s>`` counted), section 3.3."""
    pairs = _check_pairs(model, pairs, "pairs")
    total, count = 0.0, 0
    with eval_mode(model):
        for b in make_batches(pairs, batch_size, pad_id=model.pad_id, bos_id=model.bos_id,
                              eos_id=model.eos_id, shuffle=False):
            total += float(_batch_loss(model, b, model.pad_id)) * b["src"].shape[0]
            count += int(b["tgt_len"].sum())
    return math.exp(total / count)


@validate_params({"model": Instance(LSTMSeq2Seq), "train_pairs": Sequence_(min_len=0),
                  "valid_pairs": Optional_(Sequence_()), "cfg": Instance(TrainConfig),
                  "checkpoint": Optional_(PathArg()), "checkpoint_every": Int(1, 10**9),
                  "resume": Instance(bool), "stop_after": Optional_(Int(1, 10**9)),
                  "log_every": Int(1, 10**9), "on_log": Optional_(Callable_()),
                  "run_id": Optional_(Str(max_len=1000))})
def train(model: LSTMSeq2Seq, train_pairs: Pairs, valid_pairs: Pairs | None = None,
          cfg: TrainConfig = TrainConfig(), *, checkpoint: str | Path | None = None,
          checkpoint_every: int = 200, resume: bool = True, stop_after: int | None = None,
          log_every: int = 100, on_log: Callable[[dict], None] | None = None,
          run_id: str | None = None) -> dict:
    """Train ``model`` by maximum likelihood with teacher forcing (section 3.4).

    Parameters
    ----------
    model
        An :class:`~dnnkit.seq2seq.model.LSTMSeq2Seq`; it stays on its device.
    train_pairs, valid_pairs
        Lists of (source ids, target ids) without specials; ``</s>`` is appended to targets.
    cfg
        The recipe (:class:`TrainConfig`).
    checkpoint, checkpoint_every, resume
        Save model, optimiser and step atomically (safetensors) every ``checkpoint_every``
        steps and at the end; if the file exists and ``resume``, continue from its step with
        the same batch order, so an interrupted and resumed run ends with the weights of an
        uninterrupted one.
    stop_after
        Stop after this many steps in this call (as if interrupted; for testing resume).
    log_every, on_log
        Every ``log_every`` steps a log record (step, loss, lr, gradient norm, tokens/s) is
        appended to the history and handed to ``on_log``.

    Returns
    -------
    dict
        ``loss`` (per step, nats per sentence), ``grad_norm`` (per step, before clipping),
        ``tgt_len`` (per step, mean target tokens per sentence, ``</s>`` included; so
        ``loss / tgt_len`` is the per-token loss), ``log`` records,
        ``valid_ppl``, ``steps``, ``epochs``, ``tokens`` (source + target words, as the paper
        counts them), ``seconds``, ``tokens_per_s``, ``resumed_from``.

    Raises
    ------
    ValueError
        On bad pairs, or when the loss or the gradient norm becomes non-finite: the message
        names the step and the gradient norm; the checkpoint on disk is left as it was.
    """
    if not isinstance(model, LSTMSeq2Seq):
        raise TypeError(f"The 'model' parameter of train must be an LSTMSeq2Seq. Got "
                        f"{type(model).__name__} instead.")
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"The 'cfg' parameter of train must be a TrainConfig. Got "
                        f"{type(cfg).__name__} instead.")
    check_int(checkpoint_every, "checkpoint_every", 1, where="train")
    check_int(log_every, "log_every", 1, where="train")
    if stop_after is not None:
        check_int(stop_after, "stop_after", 1, where="train")
    pairs = _check_pairs(model, train_pairs, "train_pairs")
    valid = _check_pairs(model, valid_pairs, "valid_pairs") if valid_pairs is not None else None
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr)
    else:
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)
    spe = steps_per_epoch(len(pairs), cfg.batch_size, cfg.length_bucketing)
    total = cfg.max_steps if cfg.max_steps is not None else max(1, round(cfg.epochs * spe))
    hist: dict = {"loss": [], "grad_norm": [], "tgt_len": [], "log": [], "valid_ppl": None,
                  "steps": 0,
                  "tokens": 0, "seconds": 0.0, "resumed_from": 0, "steps_per_epoch": spe,
                  "config": asdict(cfg)}
    step = 0
    fingerprint = _fingerprint(model, cfg, pairs, run_id) if checkpoint is not None else None
    if checkpoint is not None and resume and Path(checkpoint).is_file():
        meta = load_training_state(checkpoint, model, opt, fingerprint=fingerprint)
        step = int(meta["step"])
        saved = meta["extra"].get("history", {})
        for k in ("loss", "grad_norm", "tgt_len", "log", "tokens", "seconds"):
            if k in saved:
                hist[k] = saved[k]
        hist["resumed_from"] = step
        log.info("train: resumed from %s at step %d", checkpoint, step)

    def save(at: int) -> None:
        if checkpoint is not None:
            keep = {k: hist[k] for k in ("loss", "grad_norm", "tgt_len", "log", "tokens",
                                         "seconds")}
            save_training_state(checkpoint, model, opt, step=at, extra={"history": keep},
                                fingerprint=fingerprint)

    device = model.proj.weight.device
    was_training = [(m, m.training) for m in model.modules()]
    model.train()
    t0 = time.perf_counter()
    base_seconds = float(hist["seconds"])
    done = 0
    last_gn = float("nan")
    epoch_batches: list[dict] = []
    epoch_of = -1
    window_tokens, window_t = 0, time.perf_counter()
    try:
        while step < total:
            epoch, within = divmod(step, spe)
            if epoch != epoch_of:
                epoch_batches = list(make_batches(
                    pairs, cfg.batch_size, pad_id=model.pad_id, bos_id=model.bos_id,
                    eos_id=model.eos_id, length_bucketing=cfg.length_bucketing, shuffle=True,
                    seed=cfg.seed * 100_003 + epoch))
                epoch_of = epoch
            b = {k: v.to(device) for k, v in epoch_batches[within].items()}
            b["src_len"] = b["src_len"].cpu()
            lr = lr_at(step / spe, cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad(set_to_none=True)
            loss = _batch_loss(model, b, model.pad_id)
            if not bool(torch.isfinite(loss.detach())):
                raise ValueError(
                    f"train: non-finite loss {float(loss)} at step {step + 1} (epoch "
                    f"{step / spe:.2f}); last gradient norm {last_gn:.4g}. The checkpoint "
                    f"{str(checkpoint)!r} was left intact. Lower the learning rate or clip_norm.")
            loss.backward()
            gn = float(nn.utils.clip_grad_norm_(params, cfg.clip_norm))
            if not math.isfinite(gn):
                raise ValueError(
                    f"train: non-finite gradient norm {gn} at step {step + 1} (epoch "
                    f"{step / spe:.2f}, loss {float(loss):.4g}). The checkpoint "
                    f"{str(checkpoint)!r} was left intact.")
            opt.step()
            last_gn = gn
            step += 1
            done += 1
            ntok = int(b["src_len"].sum()) + int(b["tgt_len"].sum())
            hist["tokens"] += ntok
            window_tokens += ntok
            hist["loss"].append(float(loss.detach()))
            hist["grad_norm"].append(gn)
            hist["tgt_len"].append(float(b["tgt_len"].sum()) / b["tgt_len"].shape[0])
            if step % log_every == 0 or step == total:
                now = time.perf_counter()
                rec = {"step": step, "epoch": step / spe, "lr": lr,
                       "loss": sum(hist["loss"][-log_every:]) / len(hist["loss"][-log_every:]),
                       "grad_norm": gn, "tokens_per_s": window_tokens / max(now - window_t, 1e-9)}
                hist["log"].append(rec)
                window_tokens, window_t = 0, now
                if on_log is not None:
                    on_log(rec)
            hist["seconds"] = base_seconds + time.perf_counter() - t0
            if step % checkpoint_every == 0 and step < total:
                save(step)
            if stop_after is not None and done >= stop_after:
                break
            if cfg.time_budget_s is not None and time.perf_counter() - t0 >= cfg.time_budget_s:
                break
    finally:
        for m, flag in was_training:
            m.training = flag
    hist["seconds"] = base_seconds + time.perf_counter() - t0
    hist["steps"] = step
    hist["epochs"] = step / spe
    hist["tokens_per_s"] = hist["tokens"] / max(hist["seconds"], 1e-9)
    save(step)
    if valid is not None:
        hist["valid_ppl"] = perplexity(model, valid)
    return hist


def _fingerprint(model: LSTMSeq2Seq, cfg: TrainConfig, pairs, run_id: str | None) -> dict:
    """What defines a ``train`` job: a checkpoint is resumed only by a job with the same one."""
    # the run's length (max_steps / epochs) is not part of the job: a finished run can be extended
    recipe = {k: v for k, v in asdict(cfg).items() if k not in ("max_steps", "epochs")}
    fp = {"model": fingerprint_json(asdict(model.cfg)), "structure": fingerprint_structure(model),
          "recipe": recipe}
    if run_id is not None:
        fp["run_id"] = str(run_id)
    else:
        fp["data"] = fingerprint_json([[list(a), list(b)] for a, b in pairs])
    return fp
