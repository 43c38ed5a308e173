"""Efficient DNNs: FBNet's latency-aware differentiable NAS and the shift operation.

Paper: Bichen Wu, *Efficient Deep Neural Networks*, PhD dissertation, UC Berkeley 2019
(arXiv:1908.08926); its components used here: FBNet (Wu et al., CVPR 2019, arXiv:1812.03443) and
Shift (Wu et al., CVPR 2018, arXiv:1711.08141).

What it gives:

- :func:`shift2d` / :class:`Shift2d` — the zero-FLOP, zero-parameter spatial shift (any odd
  kernel, dilation, "modulo" or "grouped" channel assignment), equal to a one-hot depthwise conv
  (:func:`~dnnkit.fbnet.shift.shift_as_depthwise_weight`); :class:`ShiftConvBlock` (CSC block).
- :class:`LayerSlot`, :func:`fbnet_candidates`, :func:`fbnet_macro` — FBNet's search space
  (Table 2's 9 blocks, optional shift blocks) over any macro-architecture given as slots.
- :class:`LatencyTable` — measured (:func:`measure_latency_table`), MAC-based
  (:func:`flops_table`) or from a systolic accelerator's cycles (:func:`systolic_table`, through
  ``dnnkit.systolic``); saved as JSON or safetensors.
- :class:`SuperNet`, :func:`fbnet_loss`, :class:`DNASConfig`, :func:`dnas_search` — the
  Gumbel-softmax super-net, eq. (2)'s loss and the alternating w / theta search; children by
  :meth:`SuperNet.derive` and :meth:`SuperNet.build_child`.

Examples
--------
>>> import torch
>>> from dnnkit.fbnet import shift2d
>>> x = torch.randn(2, 18, 5, 5)
>>> shift2d(x, 3).shape
torch.Size([2, 18, 5, 5])
"""

from dnnkit.fbnet.dnas import (
    Derived,
    DNASConfig,
    SearchResult,
    SuperNet,
    dnas_search,
    fbnet_loss,
    gumbel_softmax_weights,
)
from dnnkit.fbnet.latency import LatencyTable, flops_table, measure_latency_table, systolic_table
from dnnkit.fbnet.shift import Shift2d, ShiftConvBlock, shift2d, shift_as_depthwise_weight
from dnnkit.fbnet.space import (
    FBNET_C_ARCH,
    FBNetBlock,
    LayerSlot,
    count_macs,
    fbnet_candidates,
    fbnet_macro,
)

__all__ = [
    "shift2d",
    "Shift2d",
    "ShiftConvBlock",
    "LayerSlot",
    "fbnet_candidates",
    "fbnet_macro",
    "LatencyTable",
    "measure_latency_table",
    "flops_table",
    "systolic_table",
    "SuperNet",
    "fbnet_loss",
    "DNASConfig",
    "dnas_search",
]

# importable from here too, kept out of __all__ to keep the headline API small
_ = (Derived, SearchResult, gumbel_softmax_weights, shift_as_depthwise_weight, FBNET_C_ARCH,
     FBNetBlock, count_macs)
