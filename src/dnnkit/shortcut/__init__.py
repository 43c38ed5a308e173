"""WCST-ML: which shortcut cue a DNN chooses, and why (flatness, abundance, complexity).

Scimeca, Oh, Chun, Poli, Yun, "Which Shortcut Cues Will DNNs Choose? A Study from the
Parameter-Space Perspective", ICLR 2022 (arXiv:2110.03095).

Training images vary along K cues (colour, shape, scale, orientation, ...); on the *diagonal*
training set every cue predicts the label, so each alone solves the task. Accuracy on the
*off-diagonal* set of cue c (combinations never seen in training, labelled by c) tells which cue
a model adopted. The paper explains the preference from parameter space: preferred-cue solutions
are flatter, more abundant and have lower Kolmogorov complexity.

Public API
----------
make_wcst_ml            diagonal / off-diagonal sets from coloured dSprites or your own data
augmented_training_set  diagonal set + off-diagonal samples of one cue (forces that cue)
cue_preference          train per seed, off-diagonal accuracy per cue over epochs
sphere_flatness         loss increase at random perturbations of growing radius
kc_proxy                compressor-based complexity proxy per cue

More: :mod:`dnnkit.shortcut.sources` (``DSpritesSource``, ``FactorDataset``),
:mod:`dnnkit.shortcut.loaders` (real dSprites .npz, UTKFace folder),
:mod:`dnnkit.shortcut.measures` (``offdiag_accuracy``, ``basin_rerun``).

Examples
--------
>>> import torch
>>> from dnnkit.shortcut import make_wcst_ml, cue_preference
>>> from dnnkit.shortcut.sources import DSpritesSource
>>> splits = make_wcst_ml(DSpritesSource(size=16), ["color", "shape", "scale"], n_train=60,
...                       n_val=0, n_test=30, seed=0)
>>> net = lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3))
>>> res = cue_preference(net, splits, epochs=1, seeds=(0,))
>>> sorted(res.acc), res.acc["color"].shape, splits.chance["shape"]
(['color', 'scale', 'shape'], (1, 1), (0.3333333333333333, 0.25))
"""

from dnnkit.shortcut.measures import cue_preference, kc_proxy, sphere_flatness
from dnnkit.shortcut.protocol import augmented_training_set, make_wcst_ml

__all__ = [
           "augmented_training_set",
           "cue_preference",
           "kc_proxy",
           "make_wcst_ml",
           "sphere_flatness",
]
