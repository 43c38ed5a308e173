"""Run SCALE-Sim v3.0.0 on a topology and print its per-layer compute report as JSON.

Runs inside the oracle venv ``.venv-scalesim`` (SCALE-Sim needs numpy < 2.4) and never imports
dnnkit. Input (stdin, JSON)::

    {"rows": 64, "cols": 64, "dataflow": "os",
     "topology": "<SCALE-Sim topology CSV text>", "gemm": false}

or ``"dataflows": ["os", "ws", "is"]`` instead of ``"dataflow"`` to run several in one process.
``gemm`` selects SCALE-Sim's M,N,K topology format instead of the convolution format. Layers whose
name contains ``DP`` are expanded by SCALE-Sim itself into one single-channel layer per channel.

Output (stdout, JSON): ``{"scalesim": version, "layers": [{"name", "total_cycles",
"cycles_with_prefetch", "stall_cycles", "overall_util", "mapping_eff", "compute_util",
"seconds"}, ...]}``, one entry per layer as SCALE-Sim lists it (depthwise layers expanded);
with ``"dataflows"``: ``{"scalesim": version, "results": {dataflow: [layer, ...]}}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from importlib.metadata import version

CONFIG = """[general]
run_name = dnnkit_oracle

[architecture_presets]
ArrayHeight = {rows}
ArrayWidth = {cols}
IfmapSramSzkB = 1024
FilterSramSzkB = 1024
OfmapSramSzkB = 1024
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Bandwidth = 10
Dataflow = {dataflow}
MemoryBanks = 1
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
IfmapSRAMBankBandwidth = 10
IfmapSRAMBankNum = 10
IfmapSRAMBankPort = 2
FilterCustomLayout = False
FilterSRAMBankBandwidth = 10
FilterSRAMBankNum = 10
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40

[run_presets]
InterfaceBandwidth = CALC
UseRamulatorTrace = False
"""

LAYOUT_HEADER = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels,\n"


def run(request: dict, dataflow: str) -> list[dict]:
    from scalesim.layout_utils import layouts
    from scalesim.scale_config import scale_config
    from scalesim.single_layer_sim import single_layer_sim
    from scalesim.topology_utils import topologies

    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = os.path.join(tmp, "oracle.cfg")
        topo_path = os.path.join(tmp, "topology.csv")
        layout_path = os.path.join(tmp, "layout.csv")
        with open(cfg_path, "w") as fh:
            fh.write(CONFIG.format(rows=int(request["rows"]), cols=int(request["cols"]),
                                   dataflow=dataflow))
        with open(topo_path, "w") as fh:
            fh.write(request["topology"])
        with open(layout_path, "w") as fh:
            fh.write(LAYOUT_HEADER)
        config = scale_config()
        config.read_conf_file(cfg_path)
        topo = topologies()
        topo.load_arrays(topofile=topo_path, mnk_inputs=bool(request.get("gemm", False)))
        layout = layouts()
        layout.load_arrays(layoutfile=layout_path)
        out = []
        for i in range(topo.get_num_layers()):
            t0 = time.perf_counter()
            sim = single_layer_sim()
            sim.set_params(layer_id=i, config_obj=config, topology_obj=topo, layout_obj=layout,
                           verbose=False)
            sim.run()
            items = sim.get_compute_report_items()
            out.append({
                "name": topo.get_layer_name(i),
                "cycles_with_prefetch": int(items[0]),
                "total_cycles": int(items[1]),
                "stall_cycles": int(items[2]),
                "overall_util": float(items[3]),
                "mapping_eff": float(items[4]),
                "compute_util": float(items[5]),
                "seconds": time.perf_counter() - t0,
            })
            del sim
    return out


def main() -> None:
    request = json.load(sys.stdin)
    # SCALE-Sim prints progress to stdout; keep stdout for the JSON answer.
    answer = {"scalesim": version("scalesim"), "numpy": version("numpy")}
    with contextlib.redirect_stdout(sys.stderr):
        if "dataflows" in request:
            answer["results"] = {df: run(request, str(df)) for df in request["dataflows"]}
        else:
            answer["layers"] = run(request, str(request["dataflow"]))
    json.dump(answer, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
