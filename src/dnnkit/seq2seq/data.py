"""Vocabularies, the seeded toy-translation grammar, parallel-text loaders and batching.

Source reversal does *not* happen here: batches keep the source in its natural order and the
model reverses it in exactly one place (:meth:`dnnkit.seq2seq.model.LSTMSeq2Seq.encode`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from dnnkit.core.seeding import make_rng
from dnnkit.core.validation import (
    Int,
    Real,
    Str,
    check_int,
    check_interval,
    param_error,
    validate_params,
)

__all__ = [
    "Vocab",
    "check_id_sequences",
    "gettext_parallel_corpus",
    "load_parallel_text",
    "make_batches",
    "pad_sequences",
    "read_po_pairs",
    "toy_translation_corpus",
]

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


class Vocab:
    """A token <-> id map with ``<pad>``, ``<s>``, ``</s>`` and ``<unk>`` specials.

    Words are ranked by frequency (ties broken alphabetically, so the map is deterministic);
    like the paper (section 3.1), only the ``max_size`` most frequent words are kept and every
    other word maps to ``<unk>``.

    Parameters
    ----------
    tokens
        Any iterable of tokens (strings), e.g. every word of a training corpus.
    max_size
        Keep at most this many non-special words (``None``: all).
    min_freq
        Drop words seen fewer than ``min_freq`` times.
    specials
        The four special tokens, in the order pad, begin, end, unknown.

    Examples
    --------
    >>> v = Vocab("the cat sat on the mat".split())
    >>> v.encode(["the", "dog"], add_eos=True) == [v.stoi["the"], v.unk_id, v.eos_id]
    True
    >>> v.decode(v.encode(["the", "cat"], add_eos=True))
    ['the', 'cat']
    """

    def __init__(self, tokens: Iterable[str], max_size: int | None = None, min_freq: int = 1,
                 specials: Sequence[str] = SPECIALS) -> None:
        if max_size is not None:
            check_int(max_size, "max_size", 0, where="Vocab")
        check_int(min_freq, "min_freq", 1, where="Vocab")
        specials = tuple(specials)
        if len(specials) != 4 or len(set(specials)) != 4:
            raise ValueError(param_error("specials", "Vocab",
                                         "four distinct tokens (pad, bos, eos, unk)", specials))
        counts = Counter()
        for tok in tokens:
            if not isinstance(tok, str):
                raise TypeError(param_error("tokens", "Vocab", "an iterable of str",
                                            type(tok).__name__))
            counts[tok] += 1
        words = sorted((w for w, c in counts.items() if c >= min_freq and w not in specials),
                       key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[:max_size]
        self.itos: list[str] = list(specials) + words
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = 0, 1, 2, 3

    def __len__(self) -> int:
        return len(self.itos)

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)})"

    def encode(self, toks: Sequence[str], add_eos: bool = False) -> list[int]:
        """Ids of ``toks``; unknown words become ``<unk>``; optionally append ``</s>``."""
        ids = [self.stoi.get(t, self.unk_id) for t in toks]
        return ids + [self.eos_id] if add_eos else ids

    def decode(self, ids: Sequence[int], strip_special: bool = True) -> list[str]:
        """Tokens of ``ids``; stops at the first ``</s>`` and drops ``<pad>``/``<s>`` when
        ``strip_special`` (``<unk>`` is kept: the paper scores UNK against the reference)."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.itos):
                raise ValueError(param_error("ids", "Vocab.decode",
                                             f"ids in [0, {len(self.itos)})", i))
            if strip_special:
                if i == self.eos_id:
                    break
                if i in (self.pad_id, self.bos_id):
                    continue
            out.append(self.itos[i])
        return out


# ----------------------------------------------------------------------------- toy grammar
_PREPS = {"in": "dans", "on": "sur", "with": "avec", "for": "pour", "from": "depuis",
          "to": "vers", "of": "de", "at": "chez"}
_CONJ = {"and": "et", "but": "mais"}
_DET = {("the", "m"): "le", ("the", "f"): "la", ("a", "m"): "un", ("a", "f"): "une"}


@validate_params({"n": Int(0, 10_000_000), "seed": Int(0, 2**63 - 1), "max_len": Int(8, 10_000),
                  "n_nouns": Int(1, 100_000), "n_adjs": Int(1, 100_000),
                  "n_verbs": Int(1, 100_000), "p_conj": Real(0.0, 1.0, closed="left"),
                  "p_pp": Real(0.0, 1.0), "grammar_seed": Int(0, 2**63 - 1)})
def toy_translation_corpus(n: int, seed: int = 0, max_len: int = 24, *, n_nouns: int = 10,
                           n_adjs: int = 4, n_verbs: int = 6, p_conj: float = 0.35,
                           p_pp: float = 0.3, grammar_seed: int = 1234,
                           ) -> list[tuple[list[str], list[str]]]:
    """Sample ``n`` (source, target) sentence pairs from a seeded toy-translation grammar.

    Source ("English-like"): ``S -> Clause (Conj Clause)*``, ``Clause -> NP Verb NP``,
    ``NP -> Det Adj{0..2} Noun (Prep NP)?`` (adjective count drawn from {0, 0, 1, 1, 2}, a
    prepositional phrase attached with probability ``p_pp``, one level deep). Another clause is
    appended with probability ``p_conj`` while the sentence stays within ``max_len`` tokens.
    Target ("French-like"): word-by-word translation, determiners agree with the noun's gender,
    adjectives move after their noun and take a gender suffix. The alignment is mostly monotone
    with local reordering, the property the paper's source-reversal argument relies on
    (section 3.3).

    Parameters
    ----------
    n
        Number of pairs.
    seed
        Seeds the sentence sampler (use different seeds for train and test sets).
    max_len
        Maximum source length in tokens (>= 8 so that one clause always fits).
    n_nouns, n_adjs, n_verbs
        Lexicon sizes; ``grammar_seed`` fixes the nouns' genders (keep it equal across splits).
    p_conj, p_pp
        Probabilities of appending a clause and of attaching a prepositional phrase.

    Returns
    -------
    list of (source tokens, target tokens)

    Examples
    --------
    >>> pairs = toy_translation_corpus(2, seed=0)
    >>> all(len(s) <= 24 and len(t) > 0 for s, t in pairs)
    True
    """
    check_int(n, "n", 0, where="toy_translation_corpus")
    check_int(max_len, "max_len", 8, where="toy_translation_corpus")
    for name, val in (("n_nouns", n_nouns), ("n_adjs", n_adjs), ("n_verbs", n_verbs)):
        check_int(val, name, 1, where="toy_translation_corpus")
    check_interval(p_conj, "p_conj", 0.0, 1.0, closed="left", where="toy_translation_corpus")
    check_interval(p_pp, "p_pp", 0.0, 1.0, where="toy_translation_corpus")
    genders = np.where(make_rng(grammar_seed).random(n_nouns) < 0.5, "m", "f")
    rng = make_rng(seed)
    preps = list(_PREPS)
    conjs = list(_CONJ)

    def noun_phrase(depth: int) -> tuple[list[str], list[str]]:
        det = ("the", "a")[int(rng.integers(2))]
        k = int(rng.integers(n_nouns))
        g = str(genders[k])
        n_adj = (0, 0, 1, 1, 2)[int(rng.integers(5))]
        adjs = [int(a) for a in rng.integers(n_adjs, size=n_adj)]
        src = [det] + [f"adj{a}" for a in adjs] + [f"n{k}"]
        tgt = [_DET[(det, g)], f"N{k}"] + [f"ADJ{a}" + ("-e" if g == "f" else "") for a in adjs]
        if depth == 0 and rng.random() < p_pp:
            p = preps[int(rng.integers(len(preps)))]
            s2, t2 = noun_phrase(1)
            src += [p] + s2
            tgt += [_PREPS[p]] + t2
        return src, tgt

    def clause() -> tuple[list[str], list[str]]:
        s1, t1 = noun_phrase(0)
        v = int(rng.integers(n_verbs))
        s2, t2 = noun_phrase(0)
        return s1 + [f"v{v}"] + s2, t1 + [f"V{v}"] + t2

    pairs = []
    while len(pairs) < n:
        src, tgt = clause()
        if len(src) > max_len:
            continue
        while rng.random() < p_conj:
            c = conjs[int(rng.integers(len(conjs)))]
            s2, t2 = clause()
            if len(src) + 1 + len(s2) > max_len:
                break
            src += [c] + s2
            tgt += [_CONJ[c]] + t2
        pairs.append((src, tgt))
    return pairs


# ----------------------------------------------------------------------------- file loaders
def load_parallel_text(src_path: str | Path, tgt_path: str | Path, max_len: int | None = None,
                       ) -> list[tuple[list[str], list[str]]]:
    """Read line-aligned, whitespace-tokenised parallel files (e.g. WMT'14 en-fr after the
    Moses tokenizer). Pairs with an empty side, or a side longer than ``max_len``, are skipped.

    Raises
    ------
    ValueError
        When a file is missing or the files have different numbers of lines.
    """
    paths = [Path(src_path), Path(tgt_path)]
    for name, p in zip(("src_path", "tgt_path"), paths):
        if not p.is_file():
            raise ValueError(param_error(name, "load_parallel_text", "an existing file", str(p)))
    if max_len is not None:
        check_int(max_len, "max_len", 1, where="load_parallel_text")
    src_lines = paths[0].read_text(encoding="utf-8").splitlines()
    tgt_lines = paths[1].read_text(encoding="utf-8").splitlines()
    if len(src_lines) != len(tgt_lines):
        raise ValueError(f"load_parallel_text: {paths[0]} has {len(src_lines)} lines but "
                         f"{paths[1]} has {len(tgt_lines)}; the files must be line-aligned.")
    pairs = []
    for s, t in zip(src_lines, tgt_lines):
        s_tok, t_tok = s.split(), t.split()
        if not s_tok or not t_tok:
            continue
        if max_len is not None and (len(s_tok) > max_len or len(t_tok) > max_len):
            continue
        pairs.append((s_tok, t_tok))
    return pairs


_PO_STR = re.compile(r'^(msgid|msgstr|msgctxt|msgid_plural|msgstr\[\d+\])?\s*"(.*)"\s*$')


def _po_unescape(s: str) -> str:
    out, i = [], 0
    table = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "r": "\r"}
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            out.append(table.get(s[i + 1], s[i + 1]))
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def read_po_pairs(path: str | Path) -> list[tuple[str, str]]:
    """(msgid, msgstr) pairs of a gettext ``.po`` catalogue: singular, non-fuzzy, translated
    entries only (the header entry with an empty msgid is skipped)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(param_error("path", "read_po_pairs", "an existing .po file", str(path)))
    pairs: list[tuple[str, str]] = []
    entry: dict[str, str] = {}
    key: str | None = None
    fuzzy = False

    def flush() -> None:
        nonlocal entry, key, fuzzy
        mid, mstr = entry.get("msgid", ""), entry.get("msgstr", "")
        if mid and mstr and not fuzzy and "msgid_plural" not in entry:
            pairs.append((mid, mstr))
        entry, key, fuzzy = {}, None, False

    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            flush()
            continue
        if line.startswith("#"):
            if line.startswith("#,") and "fuzzy" in line:
                fuzzy = True
            continue
        m = _PO_STR.match(line)
        if m is None:
            continue
        if m.group(1):
            if m.group(1) == "msgid" and "msgid" in entry and key != "msgid":
                flush()
            key = m.group(1)
            entry[key] = entry.get(key, "") + _po_unescape(m.group(2))
        elif key is not None:
            entry[key] += _po_unescape(m.group(2))
    flush()
    return pairs


@validate_params({"lang": Str()})
def gettext_parallel_corpus(lang: str = "fr") -> list[tuple[str, str]]:
    """English -> ``lang`` (msgid, msgstr) pairs from the gettext catalogues shipped inside an
    installed Django (``django/conf/locale/<lang>/LC_MESSAGES/django.po``): a small piece of
    real text for smoke-testing the real-text pipeline (tokenise, train, decode, BLEU).

    Raises
    ------
    ImportError
        When Django is not installed (``pip install django``).
    ValueError
        When the installed Django has no catalogue for ``lang``, or ``lang`` is not a locale
        name (``fr``, ``pt_BR``, ``sr_Latn``): paths (absolute, ``..``) are refused.
    """
    if not re.fullmatch(r"[A-Za-z]{2,3}(_[A-Za-z0-9]{2,8})?", lang):
        raise ValueError(param_error("lang", "gettext_parallel_corpus",
                                     "a locale name such as 'fr' or 'pt_BR' (not a path)", lang))
    try:
        import django
    except ImportError as exc:
        raise ImportError("gettext_parallel_corpus needs Django's shipped catalogues: "
                          "pip install django") from exc
    root = Path(django.__file__).parent / "conf" / "locale"
    po = root / lang / "LC_MESSAGES" / "django.po"
    if not po.is_file():
        langs = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise ValueError(param_error("lang", "gettext_parallel_corpus",
                                     f"one of the {len(langs)} shipped languages", lang))
    return read_po_pairs(po)


# ----------------------------------------------------------------------------- batching
def check_id_sequences(seqs: Sequence[Sequence[int]], name: str, vocab_size: int, *,
                       pad_id: int | None = None, where: str) -> list[list[int]]:
    """Validate a list of id sequences: non-empty, ints in ``[0, vocab_size)``, no padding."""
    out = []
    for i, s in enumerate(seqs):
        s = [int(t) for t in (s.tolist() if isinstance(s, torch.Tensor) else s)]
        if len(s) == 0:
            raise ValueError(f"The '{name}' parameter of {where} must hold non-empty sequences. "
                             f"Got an empty sequence at index {i} instead.")
        lo, hi = min(s), max(s)
        if lo < 0 or hi >= vocab_size:
            raise ValueError(f"The '{name}' parameter of {where} must hold ids in "
                             f"[0, {vocab_size}). Got id {lo if lo < 0 else hi} in sequence {i} "
                             f"instead.")
        if pad_id is not None and pad_id in s:
            raise ValueError(f"The '{name}' parameter of {where} must not contain the padding id "
                             f"{pad_id}. Got it inside sequence {i} instead.")
        out.append(s)
    return out


def pad_sequences(seqs: Sequence[Sequence[int]], pad_id: int = 0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists into a ``(B, T)`` long tensor; returns it and the ``(B,)`` lengths."""
    lens = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), int(lens.max()) if len(seqs) else 0), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return out, lens


def make_batches(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], batch_size: int = 128, *,
                 pad_id: int = 0, bos_id: int = 1, eos_id: int = 2,
                 length_bucketing: bool = True, shuffle: bool = True, seed: int = 0,
                 ) -> Iterator[dict[str, torch.Tensor]]:
    """Yield padded mini-batches of (source, target) id pairs.

    With ``length_bucketing`` (the paper's 2x speed-up, section 3.4) pairs are sorted by source
    then target length inside chunks of ``50 * batch_size`` shuffled pairs, cut into batches of
    roughly equal length, and the batches are shuffled. Sources stay in natural order (the model
    reverses them); targets get ``<s>`` prepended for the decoder input and ``</s>`` appended for
    the output.

    Yields
    ------
    dict
        ``src`` (B, S) and ``src_len`` (B,), ``tgt_in`` and ``tgt_out`` (B, T+1), ``tgt_len``
        (B,) counting the ``</s>``, ``idx`` (B,) the pairs' positions in ``pairs``.
    """
    check_int(batch_size, "batch_size", 1, where="make_batches")
    n = len(pairs)
    if n == 0:
        raise ValueError("The 'pairs' parameter of make_batches must be non-empty. Got 0 pairs "
                         "instead.")
    rng = make_rng(seed)
    order = rng.permutation(n) if shuffle else np.arange(n)
    if length_bucketing:
        chunk = 50 * batch_size
        batches = []
        for c in range(0, n, chunk):
            part = order[c: c + chunk]
            part = sorted(part.tolist(), key=lambda i: (len(pairs[i][0]), len(pairs[i][1]), i))
            batches += [part[i: i + batch_size] for i in range(0, len(part), batch_size)]
        if shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
    else:
        order = order.tolist()
        batches = [order[i: i + batch_size] for i in range(0, n, batch_size)]
    for b in batches:
        src, src_len = pad_sequences([pairs[i][0] for i in b], pad_id)
        tgt_in, _ = pad_sequences([[bos_id, *pairs[i][1]] for i in b], pad_id)
        tgt_out, tgt_len = pad_sequences([[*pairs[i][1], eos_id] for i in b], pad_id)
        yield {"src": src, "src_len": src_len, "tgt_in": tgt_in, "tgt_out": tgt_out,
               "tgt_len": tgt_len, "idx": torch.as_tensor(b, dtype=torch.long)}
