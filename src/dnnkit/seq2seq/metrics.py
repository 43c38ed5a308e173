"""BLEU through sacrebleu (never home-made) and BLEU by source-length bucket (Fig. 3)."""

from __future__ import annotations

from collections.abc import Sequence

from dnnkit.core.validation import Options, Sequence_, check_choice, param_error, validate_params

__all__ = ["bleu", "bleu_by_length", "bleu_signature"]

_TOKENIZERS = ("none", "13a", "intl", "char", "zh", "ja-mecab", "ko-mecab", "flores101",
               "flores200", "spm")


def _sacrebleu():
    try:
        import sacrebleu
    except ImportError as exc:
        raise ImportError("dnnkit.seq2seq.bleu needs sacrebleu: pip install 'dnnkit[nlp]'") from exc
    return sacrebleu


def _as_lines(xs: Sequence, name: str, where: str) -> list[str]:
    out = []
    for i, x in enumerate(xs):
        if isinstance(x, str):
            out.append(x)
        elif isinstance(x, (list, tuple)) and all(isinstance(t, str) for t in x):
            out.append(" ".join(x))
        else:
            raise TypeError(param_error(name, where, "a list of strings or of token lists",
                                        f"{type(x).__name__} at index {i}"))
    return out


@validate_params({"hyps": Sequence_(min_len=0), "refs": Sequence_(min_len=0),
                  "tokenize": Options(*_TOKENIZERS)})
def bleu(hyps: Sequence[str] | Sequence[Sequence[str]], refs: Sequence[str] | Sequence[Sequence[str]],
         *, tokenize: str = "none") -> float:
    """Corpus BLEU (0-100) of ``hyps`` against one reference each: exactly
    ``sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize).score``.

    Parameters
    ----------
    hyps, refs
        Sentences as strings or token lists (joined with spaces), aligned one to one.
    tokenize
        ``"none"`` (default) scores pre-tokenised text like ``multi-bleu.pl``, as the paper did
        (section 3.6); use ``"13a"`` for detokenised text and report :func:`bleu_signature`.

    Raises
    ------
    TypeError
        When ``hyps`` or ``refs`` is a single string: it would be read as a list of one-character
        sentences, so it is refused; wrap one sentence in a list (``bleu([h], [r])``).
    ValueError
        When the lists are empty or differ in length.

    Examples
    --------
    >>> round(bleu(["the cat sat on the mat"], ["the cat sat on the mat"]), 6)
    100.0
    """
    where = "bleu"
    check_choice(tokenize, "tokenize", _TOKENIZERS, where=where)
    h = _as_lines(hyps, "hyps", where)
    r = _as_lines(refs, "refs", where)
    if len(h) != len(r):
        raise ValueError(f"The 'refs' parameter of {where} must have one reference per hypothesis "
                         f"({len(h)}). Got {len(r)} references instead.")
    if not h:
        raise ValueError(param_error("hyps", where, "a non-empty list", h))
    return float(_sacrebleu().corpus_bleu(h, [r], tokenize=tokenize).score)


def bleu_signature(tokenize: str = "none") -> str:
    """sacrebleu's signature string for the BLEU settings :func:`bleu` uses."""
    check_choice(tokenize, "tokenize", _TOKENIZERS, where="bleu_signature")
    metric = _sacrebleu().BLEU(tokenize=tokenize)
    metric.corpus_score(["x"], [["x"]])       # sacrebleu fills the signature on first use
    return str(metric.get_signature())


def bleu_by_length(hyps: Sequence, refs: Sequence, src_lengths: Sequence[int], *,
                   buckets: Sequence[tuple[int, int]] = ((1, 10), (11, 20), (21, 30), (31, 40),
                                                         (41, 80)),
                   tokenize: str = "none") -> dict[str, dict[str, float]]:
    """BLEU of the sentences whose source length falls in each inclusive bucket (Fig. 3, left).

    Returns
    -------
    dict
        ``{"1-10": {"bleu": ..., "n": ...}, ...}``; empty buckets are omitted.
    """
    where = "bleu_by_length"
    h = _as_lines(hyps, "hyps", where)
    r = _as_lines(refs, "refs", where)
    lens = [int(x) for x in src_lengths]
    if not (len(h) == len(r) == len(lens)):
        raise ValueError(f"The 'src_lengths' parameter of {where} must align with hyps and refs. "
                         f"Got {len(h)} hyps, {len(r)} refs and {len(lens)} lengths instead.")
    out: dict[str, dict[str, float]] = {}
    for lo, hi in buckets:
        if lo > hi:
            raise ValueError(param_error("buckets", where, "(low, high) pairs with low <= high",
                                         (lo, hi)))
        idx = [i for i, n in enumerate(lens) if lo <= n <= hi]
        if idx:
            out[f"{lo}-{hi}"] = {"bleu": bleu([h[i] for i in idx], [r[i] for i in idx],
                                              tokenize=tokenize), "n": len(idx)}
    return out
