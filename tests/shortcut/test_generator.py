"""The coloured / level-restricted extension of the dSprites generator in core.data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dnnkit.core.data import DSPRITES_COLORS, DSPRITES_GRID, render_dsprites, sample_dsprites
from dnnkit.shortcut.sources import DSpritesSource


def _factors(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(3, (n,), generator=g), 0.5 + 0.5 * torch.rand(n, generator=g),
            6.28 * torch.rand(n, generator=g), torch.rand(n, generator=g),
            torch.rand(n, generator=g))


def test_colour_is_the_mask_times_rgb():
    f = _factors(40)
    mask = render_dsprites(*f, size=24)
    col = torch.arange(40) % 4
    rgb = render_dsprites(*f, size=24, color=col)
    assert mask.shape == (40, 1, 24, 24) and rgb.shape == (40, 3, 24, 24)
    table = torch.tensor(list(DSPRITES_COLORS.values()))
    assert torch.equal(rgb, mask * table[col].view(40, 3, 1, 1))
    assert torch.equal(render_dsprites(*f, size=24, color=table[col]), rgb)
    assert set(torch.unique(mask).tolist()) <= {0.0, 1.0} and float(mask.sum()) > 0


def test_default_call_is_unchanged_by_the_extension():
    a, fa = sample_dsprites(50, seed=4, size=32)
    assert a.shape == (50, 1, 32, 32) and set(fa) == set(DSPRITES_GRID)
    b, fb = sample_dsprites(50, seed=4, size=32, color=True)
    assert all(torch.equal(fa[k], fb[k]) for k in fa)  # colour is drawn after the others
    assert torch.equal(b.amax(1, keepdim=True), a)


def test_allowed_levels_and_geometry():
    imgs, f = sample_dsprites(200, seed=0, size=32, color=True,
                              allowed={"shape": [2], "color": [0, 2], "scale": [5]})
    assert set(f["shape"].tolist()) == {2} and set(f["color"].tolist()) == {0, 2}
    assert float(imgs[:, 1].sum()) == 0.0  # no green
    small, _ = sample_dsprites(20, seed=1, size=32, sprite_extent=0.1)
    big, _ = sample_dsprites(20, seed=1, size=32, sprite_extent=0.4)
    assert float(big.sum()) > 4 * float(small.sum())


def test_generator_bad_inputs():
    f = _factors(3)
    with pytest.raises(ValueError, match="'color'"):
        render_dsprites(*f, color=torch.tensor([0, 1, 4]))
    with pytest.raises(TypeError, match="'color'"):
        render_dsprites(*f, color=torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="RGB values"):
        render_dsprites(*f, color=torch.full((3, 3), 1.5))
    with pytest.raises(ValueError, match="pos_range"):
        render_dsprites(*f, pos_range=(0.8, 0.2))
    with pytest.raises(KeyError, match="Did you mean 'scale'"):
        sample_dsprites(3, allowed={"scal": [0]})
    with pytest.raises(ValueError, match="allowed"):
        sample_dsprites(3, allowed={"scale": [6]})
    with pytest.raises(ValueError, match="colors"):
        DSpritesSource(colors=("red", "purple"))


def test_source_renders_its_factors():
    src = DSpritesSource(size=32)
    rng = np.random.default_rng(0)
    ids = src.draw([None] * 6, 64, rng)
    f = src.factors_of(ids)
    assert np.array_equal(src.lookup(f), ids)
    x = src.take(ids)
    chan = x.sum((2, 3)).numpy()
    for i, c in enumerate(f[:, 0]):
        want = np.array(DSPRITES_COLORS[src.colors[c]]) > 0
        assert np.array_equal(chan[i] > 0, want)
    # a bigger scale index never draws fewer pixels at the same other factors
    rows = np.repeat(f[:1], 6, 0)
    rows[:, 2] = np.arange(6)
    rows[:, 4:] = 16
    area = src.take(src.lookup(rows)).amax(1).sum((1, 2)).numpy()
    assert np.all(np.diff(area) >= 0) and area[-1] > area[0]


def _reference_render(shape, scale, orientation, pos_x, pos_y, size, extent, pos_range):
    """Brute force: evaluate every pixel of the full canvas for every image (no windows)."""
    grid = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    gy, gx = torch.meshgrid(grid, grid, indexing="ij")
    lo, span = pos_range[0], pos_range[1] - pos_range[0]
    out = torch.zeros(len(shape), 1, size, size)
    for i in range(len(shape)):
        cx, cy = lo + span * float(pos_x[i]), lo + span * float(pos_y[i])
        th = orientation[i].float()
        r = extent / 2 * float(scale[i])
        dx, dy = gx - torch.tensor(cx, dtype=torch.float32), gy - torch.tensor(cy,
                                                                             dtype=torch.float32)
        u = (torch.cos(th) * dx + torch.sin(th) * dy) / r
        v = (-torch.sin(th) * dx + torch.cos(th) * dy) / r
        k = int(shape[i])
        if k == 0:
            m = (u.abs() <= 1) & (v.abs() <= 1)
        elif k == 1:
            m = u * u + 4.0 * (v * v) <= 1
        else:
            hx, hy = u * 1.25, -v * 1.25 + 0.15
            m = (hx * hx + hy * hy - 1) ** 3 - hx * hx * hy**3 <= 0
        out[i, 0] = m.float()
    return out


@pytest.mark.parametrize("size,extent,pos_range", [(32, 0.2, (0.2, 0.8)), (20, 0.45, (0.25, 0.75)),
                                                   (16, 0.9, (0.0, 1.0))])
def test_windowed_renderer_matches_full_canvas(size, extent, pos_range):
    g = torch.Generator().manual_seed(size)
    n = 60
    f = (torch.randint(3, (n,), generator=g), 0.5 + 0.5 * torch.rand(n, generator=g),
         6.3 * torch.rand(n, generator=g), 1.4 * torch.rand(n, generator=g) - 0.2,
         1.4 * torch.rand(n, generator=g) - 0.2)
    got = render_dsprites(*f, size=size, sprite_extent=extent, pos_range=pos_range, batch_size=7)
    want = _reference_render(*f, size, extent, pos_range)
    assert torch.equal(got, want)
