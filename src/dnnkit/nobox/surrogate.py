"""The no-box surrogate: a small auto-encoder trained on a few images (Li, Guo & Chen 2020, Sec. 3).

Architecture (official ``model_autoencoder.py``, generalised): a ResNet-generator encoder
``h = E(x)`` and either

- ONE reconstruction decoder (modes ``"naive"``, ``"rotation"``, ``"jigsaw"``), output at the input
  resolution, or
- K prototype decoders (mode ``"prototypical"``), output at the encoder resolution. The K decoders
  are one convolution stack: a first ``Conv2d(C_h, K*C_mid)`` shared by all decoders, then
  ``BatchNorm2d(K*C_mid)`` and a grouped ``Conv2d(K*C_mid, K*C, groups=K)``. Channel block k of
  that stack is exactly decoder k (see :func:`fused_from_separate`), with K times fewer kernel
  launches than K separate modules.

Training (:func:`train_surrogate`, Adam + MSE):

- naive: reconstruct the image;
- rotation: reconstruct the upright image from a copy rotated by a random multiple of 90 degrees;
- jigsaw: reconstruct the image from a copy whose n x n patches were randomly permuted
  (``jigsaw="shuffle"``) or whose halves were swapped along height and/or width
  (``jigsaw="halves"``, the 4 arrangements of the released code);
- prototypical: decoder k maps every class-A image to the prototype ``a_k`` and every class-B image
  to ``b_k`` (the first pairs are ``(A_i, B_i)``, the rest random cross pairs ``(A_i, B_j)``).

Fixes of the official code's quirks (documented in ``docs/nobox.md``): the horizontal flip is
random (the official one always flips), every transformation is drawn afresh from the clean images
(the official code transforms its input tensor in place, so rotations and shuffles accumulate),
and the prototypical surrogate trains on a full batch of all 2n images (the official code trains
BatchNorm on batches of 2).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dnnkit.core.seeding import make_generator
from dnnkit.core.validation import (
    Instance,
    Int,
    Optional_,
    Options,
    Real,
    Seed,
    Sequence_,
    Tensor,
    check_tensor,
    declares,
    param_error,
    validate_params,
)

__all__ = [
    "MODES",
    "NoBoxSurrogate",
    "SurrogateConfig",
    "fused_from_separate",
    "jigsaw_shuffle",
    "prototype_pairs",
    "random_rotation",
    "surrogate_flops",
    "train_surrogate",
]

MODES = ("prototypical", "rotation", "jigsaw", "naive")
CPU_FLOPS = 30e9          # sustained single-core convolution throughput assumed for estimates
DEFAULT_ITERS = {"prototypical": 15000, "rotation": 2000, "jigsaw": 5000, "naive": 1000}
_W = "nobox.SurrogateConfig"
IMAGES = Tensor(ndim=4, dtype="floating", low=0.0, high=1.0)
LABELS = Tensor(ndim=1, dtype="integer")
NORMALIZE = Optional_(Sequence_(Sequence_(Real(), min_len=1, max_len=4096), min_len=2, max_len=2))


@validate_params({
    "mode": Options(*MODES), "n_decoders": Int(1, 4096), "iters": Optional_(Int(0, 10_000_000)),
    "lr": Real(0.0, 10.0, closed="right"), "width": Int(1, 4096), "n_stages": Int(0, 8),
    "downsample": Instance(bool), "n_res_blocks": Int(0, 64), "stem_kernel": Int(1, 15),
    "decoder_width": Optional_(Int(1, 4096)), "flip": Instance(bool),
    "jigsaw": Options("halves", "shuffle"), "jigsaw_grid": Int(2, 64),
    "batch_size": Optional_(Int(2, 1_000_000)),
})
@dataclass(frozen=True)
class SurrogateConfig:
    """How to build and train one surrogate (defaults: the paper's ImageNet setting).

    Parameters
    ----------
    mode : {"prototypical", "rotation", "jigsaw", "naive"}
        Surrogate-training mechanism.
    n_decoders : int
        K, prototypical only; must be ``<= n_a * n_b``. The paper uses 20.
    iters : int or None
        Adam iterations; ``None`` = the official count of the mode (15000 / 2000 / 5000 / 1000).
    lr : float
        Adam learning rate (1e-3).
    width : int
        Channels of the encoder stem (64 in the paper).
    n_stages : int
        Channel-doubling encoder convolutions after the stem (2 in the paper).
    downsample : bool
        Whether those convolutions have stride 2 (True in the paper: 224 -> 56).
    n_res_blocks : int
        Residual blocks at the end of the encoder (3 in the paper).
    stem_kernel : int
        Kernel of the stem convolution (7 in the paper, reflection padded).
    decoder_width : int or None
        Hidden channels of each decoder; ``None`` = half the feature channels.
    flip : bool
        Random horizontal flips of the training inputs (prototypical mode).
    jigsaw : {"halves", "shuffle"}
        ``"halves"``: swap halves along H and/or W (released code); ``"shuffle"``: random
        permutation of a ``jigsaw_grid x jigsaw_grid`` patch grid.
    jigsaw_grid : int
        Grid size n of the shuffle (H and W must be divisible by n).
    batch_size : int or None
        Images per Adam step; ``None`` = the whole set (a fix: the official code uses 2 in
        prototypical mode, which makes BatchNorm statistics noisy).
    """

    mode: str = "prototypical"
    n_decoders: int = 20
    iters: int | None = None
    lr: float = 1e-3
    width: int = 64
    n_stages: int = 2
    downsample: bool = True
    n_res_blocks: int = 3
    stem_kernel: int = 7
    decoder_width: int | None = None
    flip: bool = True
    jigsaw: str = "halves"
    jigsaw_grid: int = 2
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.stem_kernel % 2 == 0:
            raise ValueError(param_error("stem_kernel", _W, "an odd int", self.stem_kernel))

    @property
    def n_iters(self) -> int:
        """The iteration count actually used."""
        return DEFAULT_ITERS[self.mode] if self.iters is None else self.iters

    @property
    def feature_channels(self) -> int:
        return self.width * 2 ** self.n_stages

    @property
    def reduction(self) -> int:
        """Spatial down-sampling factor of the encoder."""
        return 2 ** self.n_stages if self.downsample else 1


# --------------------------------------------------------------------------- architecture
class _ResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.BatchNorm2d(c), nn.ReLU(),
            nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.BatchNorm2d(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _encoder(in_ch: int, cfg: SurrogateConfig) -> nn.Sequential:
    k = cfg.stem_kernel
    layers: list[nn.Module] = []
    if k > 1:
        layers.append(nn.ReflectionPad2d(k // 2))
    layers += [nn.Conv2d(in_ch, cfg.width, k), nn.BatchNorm2d(cfg.width), nn.ReLU()]
    c = cfg.width
    stride = 2 if cfg.downsample else 1
    for _ in range(cfg.n_stages):
        layers += [nn.Conv2d(c, 2 * c, 3, stride=stride, padding=1), nn.BatchNorm2d(2 * c),
                   nn.ReLU()]
        c *= 2
    layers += [_ResBlock(c) for _ in range(cfg.n_res_blocks)]
    return nn.Sequential(*layers)


def _recon_decoder(out_ch: int, cfg: SurrogateConfig) -> nn.Sequential:
    """Up-sampling decoder back to the input size (official: 2 x ConvTranspose s2, Conv, Sigmoid)."""
    c = cfg.feature_channels
    layers: list[nn.Module] = []
    if cfg.downsample and cfg.n_stages > 0:
        for _ in range(cfg.n_stages):
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1),
                       nn.BatchNorm2d(c // 2), nn.ReLU()]
            c //= 2
    else:
        mid = _proto_width(cfg)
        layers += [nn.Conv2d(c, mid, 3, padding=1), nn.BatchNorm2d(mid), nn.ReLU()]
        c = mid
    layers += [nn.Conv2d(c, out_ch, 3, padding=1), nn.Sigmoid()]
    return nn.Sequential(*layers)


def _proto_width(cfg: SurrogateConfig) -> int:
    return cfg.decoder_width or max(cfg.feature_channels // 2, 1)


class _FusedDecoders(nn.Module):
    """K decoders ``Conv(C_h, m) - BN - ReLU - Conv(m, C) - Sigmoid`` as one grouped stack."""

    def __init__(self, c_h: int, mid: int, out_ch: int, k: int) -> None:
        super().__init__()
        self.k, self.out_ch = k, out_ch
        self.conv1 = nn.Conv2d(c_h, k * mid, 3, padding=1)
        self.bn = nn.BatchNorm2d(k * mid)
        self.conv2 = nn.Conv2d(k * mid, k * out_ch, 3, padding=1, groups=k)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y = torch.sigmoid(self.conv2(F.relu(self.bn(self.conv1(h)))))
        return y.unflatten(1, (self.k, self.out_ch))


def _separate_decoder(c_h: int, mid: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_h, mid, 3, padding=1), nn.BatchNorm2d(mid), nn.ReLU(),
                         nn.Conv2d(mid, out_ch, 3, padding=1), nn.Sigmoid())


def fused_from_separate(decoders: Sequence[nn.Sequential]) -> nn.Module:
    """Build the fused K-decoder stack holding exactly the weights of K separate decoders.

    Each decoder is ``Sequential(Conv2d(C_h, m, 3), BatchNorm2d(m), ReLU, Conv2d(m, C, 3),
    Sigmoid)``. The result maps ``h`` to ``(N, K, C, H, W)`` with slice k equal to
    ``decoders[k](h)`` (up to float rounding): the first convolutions are stacked along the output
    channels, BatchNorm is per channel, and the second convolution becomes a grouped one.
    """
    if len(decoders) == 0:
        raise ValueError(param_error("decoders", "fused_from_separate", "a non-empty sequence", 0))
    c1, bn, c2 = decoders[0][0], decoders[0][1], decoders[0][3]
    fused = _FusedDecoders(c1.in_channels, c1.out_channels, c2.out_channels, len(decoders))
    fused = fused.to(device=c1.weight.device, dtype=c1.weight.dtype)
    with torch.no_grad():
        fused.conv1.weight.copy_(torch.cat([d[0].weight for d in decoders]))
        fused.conv1.bias.copy_(torch.cat([d[0].bias for d in decoders]))
        fused.conv2.weight.copy_(torch.cat([d[3].weight for d in decoders]))
        fused.conv2.bias.copy_(torch.cat([d[3].bias for d in decoders]))
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(fused.bn, name).copy_(torch.cat([getattr(d[1], name) for d in decoders]))
        fused.bn.eps, fused.bn.momentum = bn.eps, bn.momentum
    return fused


#: a batch for the surrogate's forward methods (channels checked against the model inline)
_BATCH = Tensor(ndim=4, dtype="floating", finite=False, numpy=False)


@validate_params({"in_channels": Int(1, 4096), "cfg": Instance(SurrogateConfig),
                  "normalize": NORMALIZE})
class NoBoxSurrogate(nn.Module):
    """Encoder ``E`` and decoder(s) ``D_k``; images in [0, 1], optional internal normalisation.

    Use :meth:`encode` for the features ``h(x)`` that ILA perturbs and ``forward`` for the
    reconstructions, always of shape ``(N, K, C, h, w)`` (K = 1 for single-decoder modes;
    ``(h, w)`` is the encoder resolution for prototypical mode, the input size otherwise).
    ``prototypes`` holds the (K, 2, C, h, w) targets ``(a_k, b_k)`` in prototypical mode.
    """

    def __init__(self, in_channels: int, cfg: SurrogateConfig,
                 normalize: tuple[Sequence[float], Sequence[float]] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = _encoder(in_channels, cfg)
        if cfg.mode == "prototypical":
            self.decoder: nn.Module = _FusedDecoders(cfg.feature_channels, _proto_width(cfg),
                                                     in_channels, cfg.n_decoders)
        else:
            self.decoder = _recon_decoder(in_channels, cfg)
        mean, std = normalize if normalize is not None else ([0.0] * in_channels,
                                                            [1.0] * in_channels)
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
        if mean_t.shape[1] != in_channels or std_t.shape[1] != in_channels:
            raise ValueError(param_error("normalize", "NoBoxSurrogate",
                                         f"(mean, std) with {in_channels} values each",
                                         (list(mean), list(std))))
        if bool((std_t <= 0).any()):
            raise ValueError(param_error("normalize", "NoBoxSurrogate", "positive std values",
                                         list(std)))
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)
        self.register_buffer("prototypes", torch.zeros(0))

    @property
    def n_decoders(self) -> int:
        return self.cfg.n_decoders if self.cfg.mode == "prototypical" else 1

    @staticmethod
    def _check_batch(t: object, name: str, channels: int, where: str) -> None:
        # inline (a few microseconds): these run in every training / ILA step; values are not
        # scanned (train_surrogate and craft_nobox check their images' range and finiteness)
        if not isinstance(t, torch.Tensor):
            raise TypeError(param_error(name, where, "a torch.Tensor", type(t).__name__))
        if t.ndim != 4 or t.shape[1] != channels or t.numel() == 0:
            raise ValueError(param_error(name, where, f"a non-empty (N, {channels}, H, W) tensor",
                                         f"shape {tuple(t.shape)}"))
        if not t.is_floating_point():
            raise TypeError(param_error(name, where, "a floating-point tensor", f"dtype {t.dtype}"))

    @declares({"x": _BATCH})
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``h(x)``, shape ``(N, C_h, H / r, W / r)``."""
        self._check_batch(x, "x", self.mean.shape[1], "nobox.NoBoxSurrogate.encode")
        return self.encoder((x - self.mean) / self.std)

    @declares({"h": _BATCH})
    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """Reconstructions ``(N, K, C, h, w)`` of features ``h`` (output of :meth:`encode`)."""
        self._check_batch(h, "h", self.cfg.feature_channels, "nobox.NoBoxSurrogate.decode")
        y = self.decoder(h)
        return y if self.cfg.mode == "prototypical" else y.unsqueeze(1)

    @declares({"x": _BATCH})
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstructions ``(N, K, C, h, w)`` of images ``x`` (``decode(encode(x))``)."""
        return self.decode(self.encode(x))


def _reinit(model: nn.Module, gen: torch.Generator) -> None:
    """PyTorch's default initialisation, drawn from ``gen`` (global RNG untouched)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=gen)
                if m.bias is not None:
                    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
                    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
                    nn.init.uniform_(m.bias, -bound, bound, generator=gen)


def surrogate_flops(cfg: SurrogateConfig, shape: tuple[int, int, int]) -> float:
    """Multiply-adds x 2 of one surrogate forward pass on one image of ``shape`` (C, H, W)."""
    c, h, w = shape
    k = cfg.stem_kernel
    flops = 2.0 * h * w * c * cfg.width * k * k
    ch, r = cfg.width, 1
    for _ in range(cfg.n_stages):
        r *= 2 if cfg.downsample else 1
        flops += 2.0 * (h // r) * (w // r) * ch * 2 * ch * 9
        ch *= 2
    hh, ww = h // r, w // r
    flops += cfg.n_res_blocks * 2 * 2.0 * hh * ww * ch * ch * 9
    mid = cfg.decoder_width or ch // 2
    if cfg.mode == "prototypical":
        flops += 2.0 * hh * ww * 9 * (ch * cfg.n_decoders * mid + mid * cfg.n_decoders * c)
    elif cfg.downsample and cfg.n_stages > 0:
        for _ in range(cfg.n_stages):
            flops += 2.0 * hh * ww * ch * (ch // 2) * 9       # transposed: per input pixel
            hh, ww = 2 * hh, 2 * ww
            ch //= 2
        flops += 2.0 * h * w * ch * c * 9
    else:
        flops += 2.0 * h * w * 9 * (ch * mid + mid * c)
    return flops


# --------------------------------------------------------------------------- transformations
def random_rotation(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Rotate each image by a random multiple of 90 degrees (180 only when H != W)."""
    n = x.shape[0]
    square = x.shape[-1] == x.shape[-2]
    k = torch.randint(0, 4, (n,), generator=gen, device=gen.device)
    if not square:
        k = 2 * (k % 2)
    k = k.to(x.device)
    out = x.clone()
    for r in (1, 2, 3):
        sel = k == r
        if bool(sel.any()):
            out[sel] = torch.rot90(x[sel], r, dims=(-2, -1))
    return out


def jigsaw_shuffle(x: torch.Tensor, gen: torch.Generator, *, grid: int = 2,
                   kind: str = "halves") -> torch.Tensor:
    """Shuffle patches: random half swaps along H and/or W, or a random n x n permutation.

    Raises ``ValueError`` when H or W is not divisible by ``grid``.
    """
    n, c, h, w = x.shape
    if h % grid or w % grid:
        raise ValueError(param_error("jigsaw_grid", "jigsaw_shuffle",
                                     f"a divisor of the image size {h}x{w}", grid))
    if kind == "halves":
        swap = torch.randint(0, 2, (n, 2), generator=gen, device=gen.device).to(x.device)
        out = x.clone()
        sh = torch.where(swap[:, 0, None, None, None].bool(), out.roll(h // 2, -2), out)
        return torch.where(swap[:, 1, None, None, None].bool(), sh.roll(w // 2, -1), sh)
    ph, pw = h // grid, w // grid
    patches = x.reshape(n, c, grid, ph, grid, pw).permute(0, 2, 4, 1, 3, 5).reshape(
        n, grid * grid, c, ph, pw)
    perm = torch.stack([torch.randperm(grid * grid, generator=gen, device=gen.device)
                        for _ in range(n)]).to(x.device)
    patches = torch.gather(patches, 1, perm[:, :, None, None, None].expand_as(patches))
    return patches.reshape(n, grid, grid, c, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)


def prototype_pairs(n_a: int, n_b: int, k: int, gen: torch.Generator) -> list[tuple[int, int]]:
    """K prototype pairs ``(i, j)`` (indices into class A and class B).

    The first ``min(n_a, n_b, k)`` pairs are ``(i, i)``; the rest are distinct random cross pairs
    ``(i, j)``, ``i != j``, as in the official code.
    """
    if k > n_a * n_b:
        raise ValueError(param_error("n_decoders", "train_surrogate",
                                     f"at most n_a * n_b = {n_a} * {n_b} = {n_a * n_b}", k))
    m = min(n_a, n_b, k)
    pairs = [(i, i) for i in range(m)]
    rest = [(i, j) for i in range(n_a) for j in range(n_b) if i != j]
    order = torch.randperm(len(rest), generator=gen).tolist() if rest else []
    pairs += [rest[t] for t in order[: k - m]]
    return pairs


# --------------------------------------------------------------------------- training
def check_images(x: object, name: str, where: str) -> torch.Tensor:
    """(N, C, H, W) floating tensor, finite, with pixels in [0, 1]."""
    x = check_tensor(x, name, ndim=4, floating=True, where=where)
    if x.numel() == 0:
        raise ValueError(param_error(name, where, "a non-empty tensor", f"shape {tuple(x.shape)}"))
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(param_error(name, where, "pixels in [0, 1] (normalisation is the "
                                     "surrogate's job: pass normalize=(mean, std))",
                                     f"values in [{lo:.4g}, {hi:.4g}]"))
    return x


def check_labels(y: object, n: int, where: str, name: str = "labels") -> torch.Tensor:
    y = check_tensor(y, name, ndim=1, where=where)
    if y.is_floating_point() or y.dtype == torch.bool:
        raise TypeError(param_error(name, where, "an integer tensor", f"dtype {y.dtype}"))
    if y.shape[0] != n:
        raise ValueError(param_error(name, where, f"{n} labels (one per image)", y.shape[0]))
    return y


def two_classes(y: torch.Tensor, where: str, *, min_per_class: int = 2,
                even: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of class A (smaller label) and class B; checks the counts."""
    classes, counts = torch.unique(y, return_counts=True)
    if classes.numel() != 2:
        raise ValueError(param_error("labels", where, "exactly two classes",
                                     f"{classes.numel()} classes {classes.tolist()}"))
    ca, cb = counts.tolist()
    if even and ca != cb:
        raise ValueError(param_error("labels", where, "the same number of images per class",
                                     f"{ca} and {cb} images of classes {classes.tolist()}"))
    if min(ca, cb) < min_per_class:
        raise ValueError(param_error("labels", where,
                                     f"at least {min_per_class} images per class",
                                     f"{ca} and {cb}"))
    ia = torch.nonzero(y == classes[0]).flatten()
    ib = torch.nonzero(y == classes[1]).flatten()
    return ia, ib


@validate_params({"images": IMAGES, "labels": Optional_(LABELS),
                  "cfg": Optional_(Instance(SurrogateConfig)), "normalize": NORMALIZE,
                  "seed": Seed()})
def train_surrogate(
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    cfg: SurrogateConfig | None = None,
    *,
    normalize: tuple[Sequence[float], Sequence[float]] | None = None,
    seed: int | torch.Generator | None = 0,
) -> NoBoxSurrogate:
    """Train one surrogate on a few images (Li et al. 2020, Sec. 3.2-3.3; Adam, MSE loss).

    Parameters
    ----------
    images : torch.Tensor
        ``(N, C, H, W)`` in [0, 1], the attacker's images (tens of them).
    labels : torch.Tensor or None
        ``(N,)`` integers; prototypical mode needs exactly two classes with the same number
        (>= 2) of images each. Unused by the other modes.
    cfg : SurrogateConfig
        Mode and architecture (default: ``SurrogateConfig()``, the paper's setting).
    normalize : (mean, std) or None
        Per-channel normalisation applied inside the surrogate (ImageNet mean/std in the paper).
    seed : int, torch.Generator or None
        Seeds the initialisation, the prototype pairs and the random transformations.

    Returns
    -------
    NoBoxSurrogate
        In eval mode, on ``images``' device and dtype, parameters not requiring gradients.

    Raises
    ------
    ValueError
        Bad images (not 4-D, outside [0, 1], NaN); prototypical labels without exactly two
        balanced classes of >= 2 images, or ``n_decoders > n_a * n_b``; jigsaw grid not dividing
        the image size; an image size not divisible by the encoder's down-sampling factor.
    """
    where = "nobox.train_surrogate"
    cfg = SurrogateConfig() if cfg is None else cfg
    x = check_images(images, "images", where)
    n, c, h, w = x.shape
    r = cfg.reduction
    if h % r or w % r:
        raise ValueError(param_error("images", where, f"a size divisible by {r} (the encoder's "
                                     "down-sampling)", f"{h}x{w}"))
    if cfg.mode == "jigsaw" and (h % cfg.jigsaw_grid or w % cfg.jigsaw_grid):
        raise ValueError(param_error("jigsaw_grid", where, f"a divisor of the image size {h}x{w}",
                                     cfg.jigsaw_grid))
    if cfg.mode == "prototypical":
        if labels is None:
            raise ValueError(param_error("labels", where, "given in prototypical mode", None))
        y = check_labels(labels, n, where)
        ia, ib = two_classes(y, where)
        if cfg.n_decoders > len(ia) * len(ib):
            raise ValueError(param_error("n_decoders", where,
                                         f"at most n_a * n_b = {len(ia)} * {len(ib)} = "
                                         f"{len(ia) * len(ib)}",
                                         cfg.n_decoders))
    elif labels is not None:
        check_labels(labels, n, where)
    if n < 2:
        raise ValueError(param_error("images", where, "at least 2 images", n))
    bs = n if cfg.batch_size is None else min(cfg.batch_size, n)
    if x.device.type == "cpu":
        seconds = 3 * surrogate_flops(cfg, (c, h, w)) * bs * cfg.n_iters / CPU_FLOPS
        if seconds > 600:
            warnings.warn(f"train_surrogate: about {seconds / 3600:.1f} h of single-core CPU time "
                          f"expected ({cfg.n_iters} iterations on {bs} images of {c}x{h}x{w}); "
                          "consider a GPU or a smaller preset.", UserWarning, stacklevel=2)
    gen = make_generator(seed)
    dev, dt = x.device, x.dtype
    with torch.random.fork_rng(devices=[]):      # default init draws globally: restore it
        model = NoBoxSurrogate(c, cfg, normalize)
    _reinit(model, gen)
    model = model.to(device=dev, dtype=dt)
    x = x.detach()
    if cfg.mode == "prototypical":
        pairs = prototype_pairs(len(ia), len(ib), cfg.n_decoders, gen)
        a = x[ia[torch.tensor([p[0] for p in pairs], device=ia.device)]]
        b = x[ib[torch.tensor([p[1] for p in pairs], device=ib.device)]]
        size = (h // r, w // r)
        if size != (h, w):
            a = F.interpolate(a, size=size, mode="bilinear", align_corners=False)
            b = F.interpolate(b, size=size, mode="bilinear", align_corners=False)
        model.prototypes = torch.stack([a, b], dim=1)            # (K, 2, C, h, w)
        cls = torch.zeros(n, dtype=torch.long, device=dev)
        cls[ib] = 1
        x, cls = x[torch.cat([ia, ib])], cls[torch.cat([ia, ib])]
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    model.train()
    for _ in range(cfg.n_iters):
        if bs < n:
            idx = torch.randperm(n, generator=gen)[:bs].to(dev)
            xb = x[idx]
        else:
            idx, xb = None, x
        if cfg.mode == "prototypical":
            inp = xb
            if cfg.flip:
                f = (torch.rand(len(xb), generator=gen) < 0.5).to(dev)[:, None, None, None]
                inp = torch.where(f, xb.flip(-1), xb)
            cb = cls if idx is None else cls[idx]
            # target of decoder k for image i: prototypes[k, class(i)]  -> (N, K, C, h, w)
            target = model.prototypes[:, cb].transpose(0, 1)
        else:
            target = xb.unsqueeze(1)
            if cfg.mode == "rotation":
                inp = random_rotation(xb, gen)
            elif cfg.mode == "jigsaw":
                inp = jigsaw_shuffle(xb, gen, grid=cfg.jigsaw_grid, kind=cfg.jigsaw)
            else:
                inp = xb
        loss = F.mse_loss(model(inp), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    model.requires_grad_(False)
    return model
