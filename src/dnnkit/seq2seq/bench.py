"""``dnnkit bench seq2seq``: our training loop vs a bare nn.LSTM loop of the same size, and
batched beam-12 decoding vs one sentence at a time (same process, same data)."""

from __future__ import annotations

import time

import torch
from torch import nn

from dnnkit.core.benchmark import Timing
from dnnkit.core.registry import register_bench
from dnnkit.seq2seq.data import Vocab, make_batches, pad_sequences, toy_translation_corpus
from dnnkit.seq2seq.decode import beam_search
from dnnkit.seq2seq.model import LSTMSeq2Seq, Seq2SeqConfig, reverse_padded
from dnnkit.seq2seq.recipe import TrainConfig, train


def _bare_train(sv: int, tv: int, emb: int, hidden: int, layers: int, pairs: list, batch: int,
                lr: float) -> None:
    """The anchor: a plain PyTorch seq2seq loop (reversed source, packed encoder, teacher-forced
    decoder, summed NLL / batch, global-norm clipping at 5, Adam), no dnnkit code."""
    with torch.random.fork_rng():       # the default init draws from the global RNG
        torch.manual_seed(0)
        src_emb, tgt_emb = nn.Embedding(sv, emb), nn.Embedding(tv, emb)
        enc = nn.LSTM(emb, hidden, layers, batch_first=True)
        dec = nn.LSTM(emb, hidden, layers, batch_first=True)
        proj = nn.Linear(hidden, tv)
    mods = nn.ModuleList([src_emb, tgt_emb, enc, dec, proj])
    params = list(mods.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    for b in make_batches(pairs, batch, seed=0):       # the same batches as ours
        src = reverse_padded(b["src"], b["src_len"])
        opt.zero_grad(set_to_none=True)
        packed = nn.utils.rnn.pack_padded_sequence(src_emb(src), b["src_len"], batch_first=True,
                                                   enforce_sorted=False)
        _, state = enc(packed)
        out, _ = dec(tgt_emb(b["tgt_in"]), state)
        logits = proj(out)
        loss = nn.functional.cross_entropy(logits.reshape(-1, tv), b["tgt_out"].reshape(-1),
                                           ignore_index=0, reduction="sum") / src.shape[0]
        loss.backward()
        nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()


@register_bench("seq2seq")
def bench(quick: bool = False) -> list[Timing]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _bench(quick)
    finally:
        torch.set_num_threads(threads)


def _bench(quick: bool) -> list[Timing]:
    emb, hidden, layers, batch = (32, 96, 2, 32) if quick else (64, 256, 2, 64)
    steps = 10 if quick else 40
    repeats = 1 if quick else 3
    text = toy_translation_corpus(batch * steps, seed=5)
    sv = Vocab([w for s, _ in text for w in s])
    tv = Vocab([w for _, t in text for w in t])
    pairs = [(sv.encode(s), tv.encode(t)) for s, t in text]
    cfg = TrainConfig(optimizer="adam", lr=3e-3, batch_size=batch, max_steps=steps,
                      halve_after_epochs=1e9, seed=0)
    batches = list(make_batches(pairs, batch, seed=0))
    tokens = sum(int(b["src_len"].sum() + b["tgt_len"].sum()) for b in batches)

    def ours() -> None:
        m = LSTMSeq2Seq(Seq2SeqConfig(len(sv), len(tv), emb_dim=emb, hidden=hidden,
                                      layers=layers), seed=0)
        train(m, pairs, cfg=cfg, log_every=10 ** 9)

    def anchor() -> None:
        _bare_train(len(sv), len(tv), emb, hidden, layers, pairs, batch, 3e-3)

    ours_s, anchor_s, ours_w, anchor_w = _interleaved(ours, anchor, repeats)
    out = [Timing(f"train {steps} steps ({tokens} src+tgt tokens), {layers}x{hidden} LSTM, "
                  f"emb {emb}, batch {batch}, 1 thread (CPU s)", ours_s, "bare nn.LSTM loop",
                  anchor_s,
                  note=f"ours {tokens / ours_s:.0f} vs bare {tokens / anchor_s:.0f} tok per "
                       f"CPU-s; overhead {100 * (ours_s / anchor_s - 1):+.1f}% (goal < 10%); "
                       f"wall {ours_w:.2f} vs {anchor_w:.2f} s; ours skips packing when a "
                       "length bucket has equal source lengths")]

    # decoding: batched beam search vs the same search one sentence at a time
    m = LSTMSeq2Seq(Seq2SeqConfig(len(sv), len(tv), emb_dim=emb, hidden=hidden, layers=layers),
                    seed=0)
    n = 12 if quick else 100
    test = toy_translation_corpus(n, seed=6)
    seqs = [sv.encode(s) for s, _ in test]
    src, src_len = pad_sequences(seqs)
    max_len = 30            # an untrained model rarely ends: fix the work per sentence
    for beam in ((1, 12) if quick else (1, 2, 12)):
        def batched(beam: int = beam) -> None:
            beam_search(m, src, src_len, beam_size=beam, max_len=max_len)

        def one_by_one(beam: int = beam) -> None:
            for s in seqs:
                beam_search(m, torch.tensor([s]), torch.tensor([len(s)]), beam_size=beam,
                            max_len=max_len)

        b_cpu, o_cpu, b_w, o_w = _interleaved(batched, one_by_one, 1, warmup=False)
        out.append(Timing(f"beam {beam}: decode {n} sentences (max_len {max_len}), batched, "
                          "1 thread (CPU s)", b_cpu, "one sentence at a time", o_cpu,
                          note=f"{n / b_cpu:.1f} vs {n / o_cpu:.1f} sentences per CPU-s; "
                               f"wall {b_w:.2f} vs {o_w:.2f} s"))
    return out


def _interleaved(ours, anchor, repeats: int, warmup: bool = True
                 ) -> tuple[float, float, float, float]:
    """Median CPU and wall seconds of ``ours`` and ``anchor``, run alternately (background
    load on a shared machine then hits both; CPU time is the fairer figure there)."""
    if warmup:
        ours()
        anchor()
    res: dict[int, list[tuple[float, float]]] = {0: [], 1: []}
    for _ in range(repeats):
        for i, fn in enumerate((ours, anchor)):
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            res[i].append((time.process_time() - c0, time.perf_counter() - w0))
    med = [sorted(res[i])[len(res[i]) // 2] for i in (0, 1)]
    return med[0][0], med[1][0], med[0][1], med[1][1]
