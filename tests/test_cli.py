import json

from typer.testing import CliRunner

from dnnkit.cli import app

runner = CliRunner()


def test_list_and_show():
    r = runner.invoke(app, ["list"])
    assert r.exit_code == 0 and "deep_taylor" in r.output
    r = runner.invoke(app, ["show", "deep_taylor"])
    assert r.exit_code == 0 and "quick config" in r.output and "Montavon" in r.output


def test_unknown_names_fail_with_suggestions():
    r = runner.invoke(app, ["show", "deep_tailor"])
    assert r.exit_code == 2 and "deep_taylor" in r.output
    r = runner.invoke(app, ["reproduce", "deep_tailor"])
    assert r.exit_code == 2 and "Did you mean" in r.output
    r = runner.invoke(app, ["bench", "nope"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["reproduce"])
    assert r.exit_code == 2 and "--all" in r.output


def test_unknown_config_key(tmp_path):
    r = runner.invoke(app, ["reproduce", "deep_taylor", "--quick", "--out", str(tmp_path),
                            "--set", "epoch=3"])
    assert r.exit_code == 2 and "epochs" in r.output


def test_reproduce_with_override_and_strict(tmp_path):
    r = runner.invoke(app, ["reproduce", "deep_taylor", "--quick", "--out", str(tmp_path),
                            "--set", "n_explain=40", "--set", "epochs=2", "--strict",
                            "--no-progress"])
    # two epochs are too few for the accuracy claim: --strict must turn that into exit 1
    m = json.loads((tmp_path / "deep_taylor" / "metrics.json").read_text())
    assert m["passed"] is False and r.exit_code == 1
    cfg = json.loads((tmp_path / "deep_taylor" / "config.json").read_text())
    assert cfg["config"]["n_explain"] == 40
    r = runner.invoke(app, ["report", str(tmp_path)])
    assert r.exit_code == 0 and (tmp_path / "index.html").is_file()
    r = runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert r.exit_code == 2
