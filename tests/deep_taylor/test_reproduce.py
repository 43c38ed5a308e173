import json

import pytest
from typer.testing import CliRunner

from dnnkit.cli import app


@pytest.mark.slow
def test_reproduce_quick_passes_its_claims(tmp_path):
    r = CliRunner().invoke(app, ["reproduce", "deep_taylor", "--quick", "--out", str(tmp_path),
                                 "--strict", "--no-progress"])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "deep_taylor" / "metrics.json").read_text())
    assert m["passed"] and all(c["passed"] for c in m["claims"])
    assert (tmp_path / "deep_taylor" / "heatmaps.png").is_file()
