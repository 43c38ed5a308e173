"""Text inputs as players (the paper's SST-2 / SQuAD setting), without any tokenizer dependency.

- :func:`read_sst2_tsv`: the GLUE SST-2 ``train.tsv`` / ``dev.tsv`` files (``sentence<TAB>label``
  with a header line), read as plain text.
- :func:`word_positions`: ``n`` random positions of non-stop-word tokens (the paper's sampling,
  with the official code's index mix-up fixed: positions index the full token sequence).
- :func:`token_players`: player groups over an embedding matrix ``(L, d)`` so that
  :func:`~dnnkit.interactions.masking.masked_outputs` masks whole token embeddings (the paper
  masks in embedding space with a baseline embedding).
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from pathlib import Path

from dnnkit.core.seeding import make_rng
from dnnkit.core.validation import check_int, param_error

__all__ = ["STOP_WORDS", "read_sst2_tsv", "token_players", "word_positions"]

#: A compact English stop-word list (articles, pronouns, auxiliaries, prepositions, conjunctions).
STOP_WORDS = frozenset(["a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most", "my", "myself", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "yourself", "yourselves", "'s", "'re", "'ve", "'d", "'ll", "n't"])


def read_sst2_tsv(path: str | Path) -> tuple[list[str], list[int]]:
    """Sentences and 0/1 labels of a GLUE SST-2 TSV file (header ``sentence\\tlabel``)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].strip().split("\t") != ["sentence", "label"]:
        raise ValueError(f"read_sst2_tsv: {path} does not start with the header "
                         f"'sentence<TAB>label'.")
    sentences, labels = [], []
    for no, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        parts = line.rsplit("\t", 1)
        if len(parts) != 2 or parts[1].strip() not in ("0", "1"):
            raise ValueError(f"read_sst2_tsv: line {no} of {path} is not 'sentence<TAB>0|1': "
                             f"{line[:60]!r}")
        sentences.append(parts[0].strip())
        labels.append(int(parts[1]))
    return sentences, labels


def _is_stop(tok: str, stop: Iterable[str]) -> bool:
    t = tok.lower().lstrip("#")
    return (t in stop or len(t) <= 1 or all(c in string.punctuation for c in t)
            or t.isdigit())


def word_positions(tokens: Sequence[str], n: int, *, seed: int | None = None,
                   stop_words: Iterable[str] = STOP_WORDS, first: int = 1, max_len: int = 50
                   ) -> list[int]:
    """``n`` sorted random positions in ``[first, max_len)`` whose tokens are not stop words,
    punctuation, single characters or digits (position 0 is e.g. ``[CLS]``)."""
    check_int(n, "n", 1, where="word_positions")
    stop = frozenset(stop_words)
    cand = [i for i in range(first, min(len(tokens), max_len)) if not _is_stop(tokens[i], stop)]
    if len(cand) < n:
        raise ValueError(param_error("n", "word_positions", f"at most the {len(cand)} non-stop "
                                     "word positions of this sentence", n))
    rng = make_rng(seed)
    return sorted(int(i) for i in rng.choice(cand, size=n, replace=False))


def token_players(positions: Sequence[int], length: int, dim: int) -> list[list[int]]:
    """Player groups over a flattened ``(length, dim)`` embedding: one whole row per position."""
    groups = []
    for p in positions:
        p = check_int(p, "positions", 0, length - 1, where="token_players")
        groups.append(list(range(p * dim, (p + 1) * dim)))
    return groups
