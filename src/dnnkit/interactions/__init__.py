"""Exact AND-OR interactions and generalizable interaction primitives shared by several DNNs.

Paper: Lu Chen, Siyu Lou, Benhao Huang, Quanshi Zhang, "Defining and Extracting Generalizable
Interaction Primitives from DNNs", ICLR 2024 (arXiv:2401.16318); built on Harsanyi dividends,
Li & Zhang, "Does a neural network really encode symbolic concepts?" (ICML 2023, AND-OR
decomposition with learnable split and bounded noise) and Ren et al. (sparse interaction
primitives).

A model's scalar output on one input split into ``n`` players (pixels, patches, tokens,
features) is evaluated on all ``2**n`` masked inputs (:func:`masked_outputs`), decomposed exactly
into AND interactions (Harsanyi dividends, :func:`harsanyi_and`) and OR interactions
(:func:`harsanyi_or`), made sparse for one model (:func:`extract_interactions`) or jointly for
several models so that the salient interactions are shared (:func:`extract_shared_interactions`,
the paper's Eq. (6)); :func:`explain_models` does it all in one call.

Convention: every length-``2**n`` tensor is indexed by a little-endian bitmask (bit ``i`` set
<=> player ``i`` present): ``values[0]`` is the empty set, ``values[-1]`` all players
(:mod:`dnnkit.interactions.subsets` has ``subset_to_index`` / ``index_to_subset``).

More in the submodules: :mod:`.transforms` (``and_or_interactions``, ``reconstruct``),
:mod:`.metrics` (``efficiency_gap``, ``matching_gap``, ``sparsity``, ``topk_overlap``,
``order_profile``), :mod:`.masking` (``patch_players``), :mod:`.plots`.

Examples
--------
>>> import torch
>>> from dnnkit.interactions import harsanyi_and, extract_shared_interactions
>>> from dnnkit.interactions.metrics import efficiency_gap, matching_gap
>>> v = torch.tensor([0.0, 1.0, 2.0, 5.0], dtype=torch.float64)  # v(x_T) for T = {}, {0}, {1}, {0,1}
>>> harsanyi_and(v)
tensor([0., 1., 2., 2.], dtype=torch.float64)
>>> res = extract_shared_interactions([v, 1.5 * v], steps=300)
>>> float(matching_gap(res[0].values, res[0].i_and, res[0].i_or, res[0].eps)) < 1e-12
True
"""

from dnnkit.interactions.explain import explain_models
from dnnkit.interactions.extraction import extract_interactions, extract_shared_interactions
from dnnkit.interactions.masking import masked_outputs
from dnnkit.interactions.transforms import (
    and_or_interactions,
    harsanyi_and,
    harsanyi_or,
    reconstruct,
)

__all__ = [
           "and_or_interactions",
           "explain_models",
           "extract_interactions",
           "extract_shared_interactions",
           "harsanyi_and",
           "harsanyi_or",
           "masked_outputs",
           "reconstruct",
]
