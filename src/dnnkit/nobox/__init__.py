"""No-box adversarial attacks from auto-encoders trained on a few images.

Paper: Qizhang Li, Yiwen Guo and Hao Chen, "Practical No-box Adversarial Attacks against DNNs",
NeurIPS 2020 (arXiv:2012.02525). Official code: github.com/qizhangli/nobox-attacks.

The attacker never touches the victim (no weights, no queries, no training data): it holds about
twenty images of two classes, trains a small auto-encoder surrogate on them (prototypical
reconstruction, rotation, jigsaw or plain reconstruction), crafts perturbations against the
surrogate (stage-1 I-FGSM on a prototype-classification loss, then ILA on the encoder features)
and relies on transfer.

Public API
----------
- :class:`SurrogateConfig`, :func:`train_surrogate`, :class:`NoBoxSurrogate` - the surrogate.
- :class:`AttackConfig`, :func:`craft_nobox` - stage 1 + ILA against one surrogate.
- :func:`iterative_fgsm` - the shared L∞ I-FGSM / BIM primitive (equals ``torchattacks.BIM``).
- :func:`nobox_attack` - a whole labelled pool, one surrogate per two-class group.
- :func:`evaluate_transfer` - clean / adversarial accuracy of victims given as plain callables.
- :func:`preset` - settings for 8x8 digits, 32x32 colour and 224x224 ImageNet-size images.

More: ``dnnkit.nobox.data.load_image_folder`` (the paper's ImageNet sampling on a local
``root/<class>/<image>`` folder), ``dnnkit.nobox.attack.make_groups`` (two-class groups),
``dnnkit.nobox.surrogate.fused_from_separate`` (the K-decoder identity).

Example
-------
>>> import torch
>>> from dnnkit.nobox import AttackConfig, SurrogateConfig, craft_nobox, train_surrogate
>>> g = torch.Generator().manual_seed(0)
>>> x = torch.rand(8, 1, 8, 8, generator=g); y = torch.tensor([0, 1] * 4)
>>> scfg = SurrogateConfig(n_decoders=4, iters=5, width=8, n_stages=1, downsample=False,
...                        n_res_blocks=0, stem_kernel=3)
>>> sur = train_surrogate(x, y, scfg, seed=0)
>>> adv = craft_nobox(sur, x, y, AttackConfig(eps=0.1, stage1_eps=0.2, stage1_iters=3,
...                                            ila_iters=3, step=0.05))
>>> bool((adv - x).abs().max() <= 0.1 + 1e-7) and adv.shape == x.shape
True
"""

from dnnkit.nobox.attack import (
    AttackConfig,
    craft_nobox,
    evaluate_transfer,
    iterative_fgsm,
    nobox_attack,
)
from dnnkit.nobox.presets import preset
from dnnkit.nobox.surrogate import NoBoxSurrogate, SurrogateConfig, train_surrogate

__all__ = [
    "AttackConfig",
    "NoBoxSurrogate",
    "SurrogateConfig",
    "craft_nobox",
    "evaluate_transfer",
    "iterative_fgsm",
    "nobox_attack",
    "preset",
    "train_surrogate",
]
