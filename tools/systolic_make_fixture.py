"""Regenerate tests/systolic/data/scalesim_mobilenet_v1_64x64.json by running SCALE-Sim v3.0.0.

Every MobileNetV1-1.0-224 layer (conv0, 13 depthwise, 13 pointwise, fc) is written ONE GROUP per
row (a depthwise layer as one single-channel layer: SCALE-Sim would otherwise expand it into up
to 1,024 layers, hours and tens of GB), plus the 13 depthwise layers regrouped to G = 4 channels
per group (one group each), and simulated by SCALE-Sim on a 64x64 array for the os, ws and is
dataflows. SCALE-Sim runs in its own venv (``make .venv-scalesim/.ok``) through
``tests/oracles/systolic_scalesim.py``.

Usage: ``OMP_NUM_THREADS=1 .venv/bin/python tools/systolic_make_fixture.py`` (about 10-20
CPU-minutes).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "systolic" / "data" / "scalesim_mobilenet_v1_64x64.json"
ORACLE = ROOT / "tests" / "oracles" / "systolic_scalesim.py"
PYTHON = ROOT / ".venv-scalesim" / "bin" / "python"


def run_scalesim(topology: str, rows: int, cols: int, dataflow: str) -> dict:
    req = json.dumps({"rows": rows, "cols": cols, "dataflow": dataflow, "topology": topology})
    proc = subprocess.run([str(PYTHON), str(ORACLE)], input=req, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"SCALE-Sim failed ({dataflow}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def main() -> None:
    from dnnkit.core.models import mobilenet_v1
    from dnnkit.systolic import extract_layers, to_scalesim_topology
    from dnnkit.systolic.layers import regroup_layers

    if not PYTHON.is_file():
        sys.exit(f"{PYTHON} is missing: run `make .venv-scalesim/.ok` first.")
    layers = extract_layers(mobilenet_v1(), (1, 3, 224, 224))
    g4 = [lay for lay in regroup_layers(layers, 4) if lay.kind == "group"]
    g4 = [type(lay)(**{**vars(lay), "name": lay.name + "_G4"}) for lay in g4]
    all_layers = layers + g4
    topology = to_scalesim_topology(all_layers, per_group=True)
    fixture = {
        "description": "SCALE-Sim v3.0.0 compute report, one group per row (multiply cycles by "
                       "n_groups for the whole layer), MobileNetV1-1.0-224 + depthwise layers "
                       "regrouped to G=4, 64x64 array",
        "generated_by": "tools/systolic_make_fixture.py",
        "rows": 64, "cols": 64,
        "topology": topology,
        "n_groups": {lay.name: lay.n_groups for lay in all_layers},
        "results": {},
    }
    for df in ("os", "ws", "is"):
        t0 = time.perf_counter()
        ans = run_scalesim(topology, 64, 64, df)
        fixture["scalesim"] = ans["scalesim"]
        fixture["numpy"] = ans["numpy"]
        fixture["results"][df] = [
            {k: (round(v, 4) if k == "seconds" else v) for k, v in lay.items()}
            for lay in ans["layers"]]
        print(f"{df}: {len(ans['layers'])} layers in {time.perf_counter() - t0:.1f} s",
              flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
