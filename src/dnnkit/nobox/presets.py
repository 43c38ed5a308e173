"""Ready settings for three image sizes, with a CPU run-time estimate for the large one."""

from __future__ import annotations

import warnings

from dnnkit.core.validation import Instance, Options, Real, validate_params
from dnnkit.nobox.attack import AttackConfig
from dnnkit.nobox.surrogate import MODES, SurrogateConfig, surrogate_flops

__all__ = ["PRESETS", "preset", "surrogate_flops"]

PRESETS = ("digits8", "colour32", "imagenet224")
_SHAPES = {"digits8": (1, 8, 8), "colour32": (3, 32, 32), "imagenet224": (3, 224, 224)}


@validate_params({"name": Options(*PRESETS), "mode": Options(*MODES),
                  "gflops_per_s": Real(0.0, 1e6, closed="right"), "warn": Instance(bool)})
def preset(name: str, mode: str = "prototypical", *, gflops_per_s: float = 30.0,
           warn: bool = True) -> tuple[SurrogateConfig, AttackConfig]:
    """Surrogate and attack settings for a data size.

    - ``"digits8"``: 8x8 grey digits (the reproduction's setting): encoder conv16-conv32 without
      down-sampling, 10 decoders of width 8, 300 Adam iterations; eps = 0.2, eps1 = 0.6,
      100 stage-1 and 60 ILA iterations of step 2/255 (about 5 s per 20-image group on one core).
    - ``"colour32"``: 32x32 colour (CIFAR-like): width 32, one stride-2 stage, 1 residual block,
      10 decoders of width 8, 1000 iterations, eps = 16/255, eps1 = 48/255.
    - ``"imagenet224"``: the paper's setting (width 64, two stride-2 stages, 3 residual blocks,
      20 decoders, official iteration counts, eps = 0.1, eps1 = 0.3). Warns with an estimated
      single-core CPU time per 20-image group (``gflops_per_s`` of sustained convolution
      throughput; ``warn=False`` to silence).
    """
    if name == "digits8":
        s = SurrogateConfig(mode=mode, n_decoders=10, iters=300, width=16, n_stages=1,
                            downsample=False, n_res_blocks=0, stem_kernel=3, decoder_width=8)
        return s, AttackConfig(eps=0.2, stage1_eps=0.6, stage1_iters=100, ila_iters=60,
                               step=2 / 255)
    if name == "colour32":
        s = SurrogateConfig(mode=mode, n_decoders=10, iters=1000, width=32, n_stages=1,
                            downsample=True, n_res_blocks=1, stem_kernel=3, decoder_width=8)
        return s, AttackConfig(eps=16 / 255, stage1_eps=48 / 255, stage1_iters=200,
                               ila_iters=100, step=1 / 255)
    s = SurrogateConfig(mode=mode)
    a = AttackConfig()
    if warn:
        f = surrogate_flops(s, _SHAPES[name]) * 20                       # one group of 20 images
        train = 3 * f * s.n_iters
        craft = 2 * f * a.stage1_iters + 2 * f * a.ila_iters * 0.5
        hours = (train + craft) / (gflops_per_s * 1e9) / 3600
        warnings.warn(f"preset('imagenet224', {mode!r}): about {hours:.1f} h of single-core CPU "
                      f"time per 20-image group at {gflops_per_s:g} GFLOP/s "
                      f"({f / 20 / 1e9:.2f} GFLOP per image forward); use a GPU.",
                      UserWarning, stacklevel=2)
    return s, a
