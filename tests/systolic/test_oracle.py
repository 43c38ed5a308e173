"""Agreement with SCALE-Sim v3.0.0: the shipped fixture and a live run on small layers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from dnnkit.core.models import mobilenet_v1
from dnnkit.core.process import isolated_python_env
from dnnkit.systolic import SystolicArray, extract_layers, simulate, to_scalesim_topology
from dnnkit.systolic.layers import GemmLayer, regroup_layers
from dnnkit.systolic.model import simulate_layer
from tests.conftest import ROOT, oracle_python

FIXTURE = Path(__file__).parent / "data" / "scalesim_mobilenet_v1_64x64.json"
SCRIPT = ROOT / "tests" / "oracles" / "systolic_scalesim.py"


def fixture_layers(fx) -> list[GemmLayer]:
    out = []
    for line in fx["topology"].strip().splitlines()[1:]:
        name, h, w, r, s, c, m, st = (e.strip() for e in line.split(",")[:8])
        out.append(GemmLayer(name, "conv", int(h), int(w), int(r), int(s), int(c), int(m),
                             int(st), int(st)))
    return out


@pytest.mark.oracle
@pytest.mark.parametrize("df", ["os", "ws", "is"])
def test_matches_scalesim_fixture(df):
    fx = json.loads(FIXTURE.read_text())
    assert fx["scalesim"] == "3.0.0" and (fx["rows"], fx["cols"]) == (64, 64)
    layers = fixture_layers(fx)
    refs = fx["results"][df]
    assert len(layers) == len(refs) == 41
    arr = SystolicArray(64, 64, df)
    for lay, ref in zip(layers, refs):
        rep = simulate_layer(lay, arr)
        assert rep.cycles == ref["total_cycles"], lay.name
        assert ref["stall_cycles"] == 0
        assert rep.overall_util == pytest.approx(ref["overall_util"], abs=1e-6)
        assert rep.mapping_eff == pytest.approx(ref["mapping_eff"], abs=1e-6)
        assert rep.scalesim_compute_util == pytest.approx(ref["compute_util"], abs=1e-6)


def test_fixture_covers_todays_mobilenet():
    """The fixture's topology is what extract_layers + to_scalesim_topology produce now."""
    fx = json.loads(FIXTURE.read_text())
    layers = extract_layers(mobilenet_v1(), (1, 3, 224, 224))
    g4 = [lay for lay in regroup_layers(layers, 4) if lay.kind == "group"]
    g4 = [type(lay)(**{**vars(lay), "name": lay.name + "_G4"}) for lay in g4]
    assert to_scalesim_topology(layers + g4) == fx["topology"]
    assert fx["n_groups"] == {lay.name: lay.n_groups for lay in layers + g4}
    # whole-network cycles from the fixture (per group x groups) equal ours
    for df in ("os", "ws", "is"):
        ref = sum(r["total_cycles"] * fx["n_groups"][r["name"]] for r in fx["results"][df]
                  if not r["name"].endswith("_G4"))
        assert simulate(layers, SystolicArray(64, 64, df)).total_cycles == ref


def run_scalesim(request: dict) -> dict:
    py = oracle_python(".venv-scalesim")
    proc = subprocess.run([str(py), str(SCRIPT)], input=json.dumps(request), text=True,
                          capture_output=True, timeout=300, check=False,
                          env=isolated_python_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.oracle
def test_live_scalesim_small_layers():
    """Run SCALE-Sim itself: odd strides/extents, native depthwise expansion, groups, GEMMs."""
    layers = [
        GemmLayer("conv", "conv", 10, 10, 3, 3, 3, 9, 2, 2),      # (10-3) not divisible by 2
        GemmLayer("dw", "depthwise", 8, 8, 3, 3, 1, 2, n_groups=3),  # multiplier 2
        GemmLayer("grp", "group", 7, 7, 3, 3, 4, 4, n_groups=2),
        GemmLayer("pw", "pointwise", 5, 5, 1, 1, 20, 11, batch=2),
        GemmLayer("fc", "fc", 1, 1, 1, 1, 40, 10, batch=3),
    ]
    conv_csv = to_scalesim_topology(layers, per_group=False)
    gemm_layers = [GemmLayer("odd", "conv", 9, 12, 3, 2, 5, 7, 1, 3, batch=2)]
    gemm_csv = to_scalesim_topology(gemm_layers, gemm=True)
    rows, cols = 8, 6
    ans = run_scalesim({"rows": rows, "cols": cols, "dataflows": ["os", "ws", "is"],
                        "topology": conv_csv})
    ans_gemm = run_scalesim({"rows": rows, "cols": cols, "dataflows": ["os", "ws", "is"],
                             "topology": gemm_csv, "gemm": True})
    assert ans["scalesim"] == "3.0.0"
    for df in ("os", "ws", "is"):
        arr = SystolicArray(rows, cols, df)
        sim = ans["results"][df]
        assert len(sim) == 1 + 3 + 2 + 1 + 1  # SCALE-Sim expanded dw (3) and our groups (2)
        for lay in layers:
            mine = [r for r in sim if r["name"] == lay.name
                    or r["name"].startswith(lay.name + "_")]
            assert len(mine) == lay.n_groups
            rep = simulate_layer(lay, arr)
            assert rep.cycles == sum(r["total_cycles"] for r in mine), (df, lay.name)
            for r in mine:
                assert rep.overall_util == pytest.approx(r["overall_util"], abs=1e-6)
                assert rep.mapping_eff == pytest.approx(r["mapping_eff"], abs=1e-6)
                assert rep.scalesim_compute_util == pytest.approx(r["compute_util"], abs=1e-6)
        (g,) = ans_gemm["results"][df]
        assert simulate_layer(gemm_layers[0], arr).cycles == g["total_cycles"]
