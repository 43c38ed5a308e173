"""Systolic-array performance model (SCALE-Sim v3.0.0 compute model) and DRACO's regrouping.

Paper: N. K. Jha, S. Ravishankar, S. Mittal, A. Kaushik, D. Mandal, M. Chandra, "DRACO:
Co-Optimizing Hardware Utilization, and Performance of DNNs on Systolic Accelerator", ISVLSI 2020,
arXiv:2006.15103. Compute model: A. Samajdar et al., "SCALE-Sim: Systolic CNN Accelerator
Simulator", arXiv:1811.02883 (v3.0.0 code).

What it gives:

- :func:`simulate` — per-layer compute cycles, overall utilisation, mapping efficiency and compute
  utilisation of any torch model (traced on an input shape with :func:`extract_layers`) on a
  rows x cols array with output-, weight- or input-stationary dataflow; equal to SCALE-Sim
  v3.0.0's compute report to the cycle, in microseconds instead of minutes.
- :func:`draco_sweep` — turn every depthwise layer into a group convolution with ``G`` channels
  per group and report latency, utilisation, MACs and parameters for each ``G``;
  :func:`apply_group_size` returns the regrouped torch model (optionally computing exactly the
  same function as the original).
- :func:`to_scalesim_topology` — the SCALE-Sim topology CSV of any traced model.

Lower-level pieces: :class:`~dnnkit.systolic.layers.GemmLayer`,
:func:`~dnnkit.systolic.layers.regroup_layers`, :func:`~dnnkit.systolic.model.simulate_layer`,
:func:`~dnnkit.systolic.draco.choose_group_sizes` (per-layer ``G``).

Cycles are compute cycles (no memory stalls; SCALE-Sim reports none in its CALC bandwidth mode).

Examples
--------
>>> from dnnkit.core.models import mobilenet_v1
>>> from dnnkit.systolic import SystolicArray, draco_sweep, simulate
>>> net = mobilenet_v1()
>>> rep = simulate(net, SystolicArray(64, 64, "os"), input_shape=(1, 3, 224, 224))
>>> rep.total_cycles > 4_000_000, round(rep.network_util, 1)
(True, 2.9)
>>> pts = draco_sweep(net, SystolicArray(64, 64, "ws"), (1, 4), input_shape=(1, 3, 224, 224))
>>> round(pts[1].latency_reduction)
67
"""

from dnnkit.systolic.draco import SweepPoint, apply_group_size, choose_group_sizes, draco_sweep
from dnnkit.systolic.layers import GemmLayer, extract_layers, regroup_layers
from dnnkit.systolic.model import (
    LayerReport,
    NetworkReport,
    SystolicArray,
    simulate,
    simulate_layer,
)
from dnnkit.systolic.topology import to_scalesim_topology

__all__ = [
    "SystolicArray",
    "apply_group_size",
    "draco_sweep",
    "extract_layers",
    "simulate",
    "to_scalesim_topology",
]

# importable from here too, kept out of __all__ to keep the headline API small
_ = (SweepPoint, choose_group_sizes, GemmLayer, regroup_layers, LayerReport, NetworkReport,
     simulate_layer)
