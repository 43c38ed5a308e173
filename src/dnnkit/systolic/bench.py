"""``dnnkit bench systolic``: the closed-form model vs SCALE-Sim v3.0.0 on the same layers.

SCALE-Sim runs in its own venv (``make .venv-scalesim/.ok``; or point ``DNNKIT_SCALESIM_PYTHON``
at a python with ``scalesim==3.0.0`` and ``numpy<2.4``) through
``tests/oracles/systolic_scalesim.py``; its time is the sum of its per-layer simulation times
(measured inside that process, interpreter start-up and imports excluded). A whole MobileNetV1
run of SCALE-Sim expands the depthwise layers into ~5,000 single-channel layers (hours, tens of
GB), so it is timed on a subset of layers, one group each, and the whole-network figure is a
lower bound extrapolated from that subset.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from dnnkit.core.benchmark import Timing, time_call
from dnnkit.core.models import mobilenet_v1
from dnnkit.core.process import isolated_python_env
from dnnkit.core.registry import register_bench
from dnnkit.systolic.draco import draco_sweep
from dnnkit.systolic.layers import extract_layers
from dnnkit.systolic.model import DATAFLOWS, SystolicArray, simulate
from dnnkit.systolic.topology import to_scalesim_topology

_ROOT = Path(__file__).resolve().parents[3]


def _scalesim_python() -> Path:
    env = os.environ.get("DNNKIT_SCALESIM_PYTHON")
    py = Path(env) if env else _ROOT / ".venv-scalesim" / "bin" / "python"
    if not py.is_file():
        raise RuntimeError(f"SCALE-Sim's python {py} does not exist: run `make .venv-scalesim/.ok`"
                           " or set DNNKIT_SCALESIM_PYTHON.")
    return py


def run_scalesim(topology: str, rows: int, cols: int, dataflows=DATAFLOWS) -> dict:
    """Run SCALE-Sim (oracle venv) on a topology CSV for several dataflows; its JSON answer."""
    script = _ROOT / "tests" / "oracles" / "systolic_scalesim.py"
    if not script.is_file():
        raise RuntimeError(f"{script} is missing (the benchmark needs the repository checkout).")
    req = json.dumps({"rows": rows, "cols": cols, "dataflows": list(dataflows),
                      "topology": topology})
    proc = subprocess.run([str(_scalesim_python()), str(script)], input=req, text=True,
                          capture_output=True, check=False, env=isolated_python_env())
    if proc.returncode != 0:
        raise RuntimeError(f"SCALE-Sim failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


@register_bench("systolic")
def bench(quick: bool = False) -> list[Timing]:
    layers = extract_layers(mobilenet_v1(), (1, 3, 224, 224))
    arrays = [SystolicArray(64, 64, df) for df in DATAFLOWS]
    # SCALE-Sim subset: the per-channel (one group) depthwise layers of the later stages
    names = ("dw12", "dw13") if quick else tuple(f"dw{i}" for i in range(4, 14))
    subset = [lay for lay in layers if lay.name in names]
    one_group = [type(lay)(**{**vars(lay), "n_groups": 1}) for lay in subset]
    ans = run_scalesim(to_scalesim_topology(one_group), 64, 64)
    anchor_s = sum(r["seconds"] for df in DATAFLOWS for r in ans["results"][df])
    same = all(
        rep.cycles == ref["total_cycles"]
        for arr in arrays
        for rep, ref in zip(simulate(one_group, arr).layers, ans["results"][arr.dataflow]))
    repeat = 5 if quick else 50
    ours_subset = time_call(lambda: [simulate(one_group, a) for a in arrays], repeat=repeat)
    ours_net = time_call(lambda: [simulate(layers, a) for a in arrays], repeat=repeat)
    sweep_s = time_call(lambda: [draco_sweep(layers, a) for a in arrays], repeat=max(3, repeat // 5))
    trace_s = time_call(lambda: extract_layers(mobilenet_v1(), (1, 3, 224, 224)), repeat=3)
    # lower bound for SCALE-Sim on the whole network: only the subset layers, each expanded into
    # its n_groups single-channel layers (the other 18 layers are not counted)
    per_layer = {df: {r["name"]: r["seconds"] for r in ans["results"][df]} for df in DATAFLOWS}
    lower = sum(per_layer[df][lay.name] * lay.n_groups for df in DATAFLOWS for lay in subset)
    return [
        Timing(f"{len(subset)} MobileNetV1 depthwise layers (one group each) x 3 dataflows, "
               "64x64", ours_subset, "SCALE-Sim 3.0.0 (measured)", anchor_s,
               note=f"identical cycles: {'yes' if same else 'NO'}"),
        Timing("MobileNetV1-224 whole network (28 layers, all groups) x 3 dataflows",
               ours_net, "SCALE-Sim 3.0.0 (lower bound)", lower,
               note=f"anchor extrapolated from the measured subset x groups (other layers not "
                    f"counted); 6-point G sweep x 3 dataflows: {sweep_s * 1e3:.1f} ms; tracing "
                    f"the torch model: {trace_s * 1e3:.0f} ms"),
    ]
