"""Reproduction: reversing the source helps a deep LSTM encoder-decoder (Sutskever et al. 2014).

Two models, identical except for ``reverse_source``, are trained with the same seed, data, batch
order and number of steps on the library's seeded toy-translation grammar (mostly monotone
alignment with local reordering and gender agreement, section 5 of the spec), each in its own
single-threaded process when ``parallel``. The run first checks that training converged, then
compares test perplexity, BLEU (sacrebleu, tokenize="none" like multi-bleu) at beam 1, 2 and 12,
and BLEU by source-length bucket (Fig. 3).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from dnnkit.core.checkpoint import save_tensors
from dnnkit.core.registry import RunContext, register
from dnnkit.core.report import Claim, Result, Table

__all__ = ["Config", "run"]


@dataclass(frozen=True)
class Config:
    # data: the recommended toy grammar of the spec
    n_train: int = 40_000
    n_test: int = 600
    max_len: int = 24
    n_nouns: int = 10
    n_adjs: int = 4
    n_verbs: int = 6
    p_conj: float = 0.35
    # model (paper: 4 x 1000, emb 1000)
    emb_dim: int = 64
    hidden: int = 128
    layers: int = 2
    # initialisation: "pytorch" (PyTorch's default distributions, seeded) or "uniform" (the
    # paper's U(-init_range, init_range), init_range 0.08). At this scale the paper's init
    # learns far slower: with 600 steps of a 2 x 128 model, forward / reversed BLEU 2.3 / 10.4
    # with it vs 33 / 66 with PyTorch's (seed 0, beam 12); see docs/seq2seq.md.
    init: str = "pytorch"
    init_range: float = 0.08
    # budget and recipe (paper: SGD 0.7, batch 128; Adam for a CPU-scale budget). The whole
    # default run (both models, data, decoding) takes about 2 CPU-minutes on one core.
    steps: int = 600
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 3e-3
    clip_norm: float = 5.0
    beams: tuple[int, ...] = (1, 2, 12)
    parallel: bool = True
    # claim thresholds
    converged_loss_ratio: float = 0.5      # final / initial training loss, both runs
    max_reversed_ppl: float = 3.0          # the reversed model must have learned the task
    min_bleu_gain: float = 10.0            # reversed - forward BLEU at the largest beam

    @classmethod
    def quick(cls) -> Config:
        # a smaller grammar (sentences up to 12 words) and model, one process after the other
        # (the paper's uniform init, as before: it passes its checks at this size)
        return cls(init="uniform", n_train=3000, n_test=100, max_len=12, n_nouns=6, n_adjs=2,
                   n_verbs=3,
                   hidden=64, emb_dim=32, steps=400, batch_size=32, lr=1e-2, beams=(1, 2),
                   parallel=False, max_reversed_ppl=2.6, min_bleu_gain=5.0)


BUCKETS = ((1, 10), (11, 20), (21, 30))


def _init_text(cfg: Config) -> str:
    if cfg.init == "uniform":
        return f"U(-{cfg.init_range}, {cfg.init_range}) (the paper's)"
    return ("PyTorch's default (embeddings N(0, 1), LSTM and softmax weights "
            f"U(+-1/sqrt({cfg.hidden})))")


def _run_one(cfg_dict: dict, reverse: bool, seed: int, out_dir: str) -> dict:
    """Train and evaluate one model (runs in a worker process when ``parallel``)."""
    from dnnkit.seq2seq.data import Vocab, pad_sequences, toy_translation_corpus
    from dnnkit.seq2seq.decode import beam_search
    from dnnkit.seq2seq.metrics import bleu, bleu_by_length
    from dnnkit.seq2seq.model import LSTMSeq2Seq, Seq2SeqConfig
    from dnnkit.seq2seq.recipe import TrainConfig, perplexity, train

    cfg = Config(**{**cfg_dict, "beams": tuple(cfg_dict["beams"])})
    torch.set_num_threads(1)
    t_start, c_start = time.perf_counter(), time.process_time()
    grammar = {"max_len": cfg.max_len, "n_nouns": cfg.n_nouns, "n_adjs": cfg.n_adjs,
                   "n_verbs": cfg.n_verbs, "p_conj": cfg.p_conj}
    train_txt = toy_translation_corpus(cfg.n_train, seed=seed * 1000 + 1, **grammar)
    test_txt = toy_translation_corpus(cfg.n_test, seed=seed * 1000 + 2, **grammar)
    sv = Vocab([w for s, _ in train_txt for w in s])
    tv = Vocab([w for _, t in train_txt for w in t])
    tr = [(sv.encode(s), tv.encode(t)) for s, t in train_txt]
    te = [(sv.encode(s), tv.encode(t)) for s, t in test_txt]
    model = LSTMSeq2Seq(Seq2SeqConfig(len(sv), len(tv), emb_dim=cfg.emb_dim, hidden=cfg.hidden,
                                      layers=cfg.layers, reverse_source=reverse,
                                      init=cfg.init, init_range=cfg.init_range), seed=seed)
    tcfg = TrainConfig(optimizer=cfg.optimizer, lr=cfg.lr, batch_size=cfg.batch_size,
                       clip_norm=cfg.clip_norm, max_steps=cfg.steps, halve_after_epochs=1e9,
                       seed=seed)
    c0 = time.process_time()
    hist = train(model, tr, cfg=tcfg, log_every=max(1, cfg.steps // 20))
    train_cpu = time.process_time() - c0
    ppl = perplexity(model, te)
    src, src_len = pad_sequences([s for s, _ in te])
    refs = [" ".join(t) for _, t in test_txt]
    lens = [len(s) for s, _ in te]
    decode = {}
    for beam in cfg.beams:
        d0 = time.process_time()
        out = beam_search(model, src, src_len, beam_size=beam)
        hyps = [" ".join(tv.decode(o[0].tokens)) for o in out]
        decode[str(beam)] = {
            "bleu": bleu(hyps, refs), "by_length": bleu_by_length(hyps, refs, lens, buckets=BUCKETS),
            "mean_logprob": sum(o[0].logprob for o in out) / len(out),
            "exact_match": sum(h == r for h, r in zip(hyps, refs)) / len(refs),
            "cpu_s": time.process_time() - d0, "example": hyps[0]}
    name = "reversed" if reverse else "forward"
    save_tensors(Path(out_dir) / f"model_{name}.safetensors", model.state_dict(),
                 {"config": asdict(model.cfg), "src_vocab": sv.itos, "tgt_vocab": tv.itos})
    token_loss = [x / n for x, n in zip(hist["loss"], hist["tgt_len"])]
    return {"name": name, "loss": token_loss, "steps": hist["steps"],
            "epochs": hist["epochs"], "tokens_per_s": hist["tokens_per_s"],
            "train_cpu_s": train_cpu, "tokens_per_cpu_s": hist["tokens"] / max(train_cpu, 1e-9),
            "test_ppl": ppl, "decode": decode,
            "wall_s": time.perf_counter() - t_start, "cpu_s": time.process_time() - c_start,
            "vocab": [len(sv), len(tv)], "example_src": " ".join(test_txt[0][0]),
            "example_ref": refs[0], "mean_src_len": sum(lens) / len(lens)}


def _window(xs: list[float], frac: float, last: bool) -> float:
    k = max(1, int(len(xs) * frac))
    part = xs[-k:] if last else xs[:k]
    return sum(part) / len(part)


def _figures(ctx: RunContext, runs: dict, cfg: Config) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, r in runs.items():
        loss = r["loss"]
        k = max(1, len(loss) // 40)
        smooth = [sum(loss[i: i + k]) / len(loss[i: i + k]) for i in range(0, len(loss), k)]
        ax.plot([min(i + k, len(loss)) for i in range(0, len(loss), k)], smooth, label=name)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss (nats / target token)")
    ax.set_yscale("log")
    ax.set_title("Equal budget and seed: forward vs reversed source")
    ax.legend()
    fig.tight_layout()
    fig.savefig(ctx.path("loss.png"), dpi=110)
    plt.close(fig)

    beam = str(max(cfg.beams))
    fig, ax = plt.subplots(figsize=(6, 3.6))
    labels = [f"{lo}-{hi}" for lo, hi in BUCKETS]
    width = 0.38
    for j, (name, r) in enumerate(runs.items()):
        by = r["decode"][beam]["by_length"]
        vals = [by.get(lab, {}).get("bleu", float("nan")) for lab in labels]
        ax.bar([i + (j - 0.5) * width for i in range(len(labels))], vals, width, label=name)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel("source sentence length (words)")
    ax.set_ylabel(f"BLEU (beam {beam})")
    ax.set_title("BLEU by source length (cf. Fig. 3, left)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(ctx.path("bleu_by_length.png"), dpi=110)
    plt.close(fig)
    return ["loss.png", "bleu_by_length.png"]


@register("seq2seq", paper="Sutskever, Vinyals & Le 2014, NeurIPS (arXiv:1409.3215)",
          claim="Reversing the source sentence lowers perplexity and clearly raises BLEU of a "
                "deep LSTM encoder-decoder at equal budget", config=Config)
def run(cfg: Config, ctx: RunContext) -> Result:
    cfg_dict = asdict(cfg)
    out_dir = str(ctx.out_dir)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if cfg.parallel:
        mp = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=2, mp_context=mp) as pool:
            futs = [pool.submit(_run_one, cfg_dict, rev, ctx.seed, out_dir) for rev in (False, True)]
            results = [f.result() for f in futs]
    else:
        results = [_run_one(cfg_dict, rev, ctx.seed, out_dir) for rev in (False, True)]
    wall = time.perf_counter() - t0
    runs = {r["name"]: r for r in results}
    fwd, rev = runs["forward"], runs["reversed"]
    (ctx.path("histories.json")).write_text(json.dumps(
        {k: {"loss": v["loss"]} for k, v in runs.items()}))
    beam = str(max(cfg.beams))

    # 1. convergence first: both runs trained (finite, loss well below its start) and the
    #    reversed model learned the task, otherwise the comparison means nothing
    ratios = {k: _window(v["loss"], 0.1, True) / _window(v["loss"], 0.02, False)
              for k, v in runs.items()}
    finite = all(math.isfinite(x) for v in runs.values() for x in v["loss"])
    plateau = {k: abs(_window(v["loss"], 0.1, True) / _window(v["loss"][:-max(1, len(v["loss"]) // 10)],
                                                               0.1, True) - 1)
               for k, v in runs.items()}
    converged = finite and max(ratios.values()) <= cfg.converged_loss_ratio
    claims = [
        Claim.holds("training converged (finite loss, final/initial loss of both runs)",
                    converged, measured=f"fwd {ratios['forward']:.3f}, rev {ratios['reversed']:.3f}",
                    expected=f"finite and <= {cfg.converged_loss_ratio}",
                    paper="both models trained to convergence"),
        Claim.at_most("reversed model learned the task: test perplexity", rev["test_ppl"],
                      cfg.max_reversed_ppl, paper="4.7"),
    ]
    bleu_f, bleu_r = fwd["decode"][beam]["bleu"], rev["decode"][beam]["bleu"]
    by_f, by_r = fwd["decode"][beam]["by_length"], rev["decode"][beam]["by_length"]
    longest = [f"{lo}-{hi}" for lo, hi in BUCKETS if f"{lo}-{hi}" in by_f and f"{lo}-{hi}" in by_r][-1]
    if converged:
        claims += [
            Claim.holds("reversed source lowers test perplexity", rev["test_ppl"] < fwd["test_ppl"],
                        measured=f"{fwd['test_ppl']:.3f} -> {rev['test_ppl']:.3f}",
                        expected="reversed < forward", paper="5.8 -> 4.7"),
            Claim.at_least(f"BLEU gain from reversal (beam {beam})", bleu_r - bleu_f,
                           cfg.min_bleu_gain, paper="+4.4 (26.17 -> 30.59, beam 12)"),
            Claim.holds(f"reversed ahead on the longest bucket ({longest} words)",
                        by_r[longest]["bleu"] > by_f[longest]["bleu"],
                        measured=f"{by_f[longest]['bleu']:.1f} -> {by_r[longest]['bleu']:.1f}",
                        expected="reversed > forward",
                        paper="reversed much better on long sentences (Fig. 3)"),
            Claim.holds(f"beam {beam} finds translations at least as probable as greedy "
                        "(reversed model)",
                        rev["decode"][beam]["mean_logprob"] >= rev["decode"]["1"]["mean_logprob"]
                        - 1e-6,
                        measured=f"{rev['decode']['1']['mean_logprob']:.3f} -> "
                                 f"{rev['decode'][beam]['mean_logprob']:.3f}",
                        expected="mean log p(beam) >= mean log p(greedy)",
                        paper="beam search approximates argmax_T p(T|S)"),
        ]
    else:
        claims.append(Claim.holds("comparison skipped: training did not converge", False))

    rows = []
    for b in cfg.beams:
        for name in ("forward", "reversed"):
            d = runs[name]["decode"][str(b)]
            rows.append([name, b, d["bleu"], d["exact_match"], d["mean_logprob"], d["cpu_s"]])
    t_main = Table("Test set: BLEU (sacrebleu, tokenize=none), exact-match rate, mean model "
                   "log-probability of the output, decoding CPU seconds",
                   ["source", "beam", "BLEU", "exact match", "mean log p", "decode CPU s"], rows)
    t_ppl = Table("Training and test perplexity",
                  ["source", "test perplexity", "final train loss / token", "steps", "epochs",
                   "train tokens / CPU-s", "train tokens / wall-s", "train CPU s"],
                  [[n, runs[n]["test_ppl"], _window(runs[n]["loss"], 0.1, True), runs[n]["steps"],
                    runs[n]["epochs"], runs[n]["tokens_per_cpu_s"], runs[n]["tokens_per_s"],
                    runs[n]["train_cpu_s"]]
                   for n in ("forward", "reversed")])
    labels = [f"{lo}-{hi}" for lo, hi in BUCKETS]
    t_len = Table(f"BLEU by source length (beam {beam})", ["source"] + [
        f"{lab} (n={by_r.get(lab, {}).get('n', 0)})" for lab in labels],
        [[n] + [runs[n]["decode"][beam]["by_length"].get(lab, {}).get("bleu", float("nan"))
                for lab in labels] for n in ("forward", "reversed")])
    figures = _figures(ctx, runs, cfg)
    rev_by = [by_r.get(lab, {}).get("bleu") for lab in labels if lab in by_r]
    beam_bleus = ", ".join(f"{b}: {rev['decode'][str(b)]['bleu']:.1f}" for b in cfg.beams)
    deviations = [
        (f"Toy-translation grammar made by the library ({cfg.n_nouns} nouns, {cfg.n_adjs} "
        f"adjectives, {cfg.n_verbs} verbs, p_conj {cfg.p_conj}, sentences up to {cfg.max_len} "
        "words) instead of WMT'14 en-fr (12M pairs); load_parallel_text reads WMT-style files, "
        "not used here."),
        (f"{cfg.layers} x {cfg.hidden} LSTM layers, embeddings {cfg.emb_dim} (paper: 4 x 1000, "
        f"1000); {cfg.steps} steps of {cfg.optimizer} lr {cfg.lr} with batch {cfg.batch_size} "
        f"(~{fwd['epochs']:.2f} epochs) instead of 7.5 epochs of SGD 0.7 with halving; clipping "
        f"at {cfg.clip_norm} as in the paper. The SGD recipe is implemented and unit-tested, "
        "not used at this budget."),
        "torch.nn.LSTM (no peephole connections) instead of the Graves LSTM the paper cites.",
        (f"Initialisation: {_init_text(cfg)}"
         + ("" if cfg.init == "uniform" else
            " instead of the paper's U(-0.08, 0.08) (section 3.4; --set init=uniform "
            "restores it). For a 2 x 128 model trained 600 steps the paper's init learns far "
            "slower (seed 0, beam 12: forward / reversed BLEU 2.3 / 10.4, perplexity 5.2 / 2.7, "
            "vs 33 / 66 and 2.2 / 1.5 with PyTorch's); reversal wins with either init.")),
        ("Single models only in this run (ensembles and n-best rescoring are implemented and "
        "tested, not reproduced: no SMT baseline to rescore); the sentence-vector PCA of Fig. 2 "
        "is not reproduced (LSTMSeq2Seq.sentence_vector returns the vectors)."),
        ("Beam size matters little on this deterministic grammar (reversed model, BLEU at beam "
        f"{beam_bleus}); the paper also found beam 1 already good and beam 2 giving most of the "
        "gain."),
        ("At this budget the reversed model still degrades with length (BLEU by bucket "
        f"{', '.join(f'{x:.1f}' for x in rev_by)}): the paper's 'no degradation for sentences "
        "under 35 words' is not reproduced and not claimed."),
        "Equal budget = equal number of optimiser steps with the same seed and batch order; "
        "each model trained single-threaded"
        + (" in its own process, both in parallel." if cfg.parallel else ", one after the other."),
    ]
    metrics = {
        "forward": {k: v for k, v in fwd.items() if k != "loss"},
        "reversed": {k: v for k, v in rev.items() if k != "loss"},
        "loss_ratio": ratios, "loss_plateau_rel_change": plateau, "converged": converged,
        "bleu_gain": bleu_r - bleu_f, "wall_s": wall,
    }
    return Result(
        summary="Source reversal (section 3.3): two deep LSTM encoder-decoders, identical except "
                "for the source order, trained with equal budget and seed; perplexity, BLEU at "
                f"beams {', '.join(map(str, cfg.beams))} and BLEU by source length.",
        setup=f"Toy grammar: {cfg.n_train} training pairs, {cfg.n_test} test pairs from another "
              f"seed, vocabularies {fwd['vocab'][0]}/{fwd['vocab'][1]} words, mean source length "
              f"{fwd['mean_src_len']:.1f}. Model {cfg.layers}x{cfg.hidden} LSTM encoder and "
              f"decoder, emb {cfg.emb_dim}, {_init_text(cfg)} init. {cfg.steps} steps, batch "
              f"{cfg.batch_size}, length bucketing, {cfg.optimizer} lr {cfg.lr}, global-norm "
              f"clipping {cfg.clip_norm}. Wall {wall:.0f} s; training CPU s: forward "
              f"{fwd['train_cpu_s']:.0f}, reversed {rev['train_cpu_s']:.0f}. Example (reversed, "
              f"beam {beam}): '{fwd['example_src']}' -> '{rev['decode'][beam]['example']}' "
              f"(reference '{fwd['example_ref']}').",
        claims=claims, metrics=metrics, tables=[t_ppl, t_main, t_len], figures=figures,
        deviations=deviations,
        oracle="BLEU is sacrebleu.corpus_bleu (tests assert equality); beam search equals "
               "exhaustive search and greedy decoding on tiny models (tests).")
