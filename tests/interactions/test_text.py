"""Text helpers: SST-2 reader on a file the test writes, word positions, token players."""

import pytest
import torch

from dnnkit.interactions import masked_outputs
from dnnkit.interactions.text import read_sst2_tsv, token_players, word_positions


def test_read_sst2_tsv(tmp_path):
    p = tmp_path / "dev.tsv"
    p.write_text("sentence\tlabel\nit 's a charming journey .\t1\nunfunny and dull\t0\n\n")
    s, y = read_sst2_tsv(p)
    assert s == ["it 's a charming journey .", "unfunny and dull"] and y == [1, 0]
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence\tlabel\nno label here\n")
    with pytest.raises(ValueError, match="line 2"):
        read_sst2_tsv(bad)
    (tmp_path / "nohead.tsv").write_text("a\t1\n")
    with pytest.raises(ValueError, match="header"):
        read_sst2_tsv(tmp_path / "nohead.tsv")


def test_word_positions_skip_stop_words_and_are_seeded():
    toks = ["[CLS]", "the", "movie", "is", "a", "truly", "wonderful", ",", "moving", "story", "of", "2", "friends"]
    pos = word_positions(toks, 4, seed=0)
    assert pos == word_positions(toks, 4, seed=0)
    assert all(toks[i] in {"movie", "truly", "wonderful", "moving", "story", "friends"}
               for i in pos)
    with pytest.raises(ValueError, match="non-stop"):
        word_positions(toks, 7, seed=0)


def test_token_players_mask_whole_embeddings():
    emb = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    groups = token_players([1, 3], 5, 3)

    def model(batch):  # sum of token 1 and token 3 embeddings, two "classes"
        s = batch[:, 1].sum(1) * batch[:, 3].sum(1)
        return torch.stack([s, -s], 1)

    v = masked_outputs(model, emb, players=groups, output="logit", target=0,
                       subtract_empty=False)
    assert v.tolist()[:3] == [0.0, 0.0, 0.0]
    assert float(v[3]) == pytest.approx(float(emb[1].sum() * emb[3].sum()))
