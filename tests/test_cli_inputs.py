"""The CLI checks its options and outputs before computing (issue 13)."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from dnnkit.cli import app

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args))


@pytest.mark.parametrize("seed", ["1099511627776000000000", "-1"])
def test_seed_out_of_range_is_refused(tmp_path, seed):
    r = _run("reproduce", "options", "--quick", "--seed", seed, "--out", str(tmp_path))
    assert r.exit_code == 2 and "--seed" in r.output
    assert not any(tmp_path.iterdir())          # nothing ran


def test_set_is_checked_against_the_declared_config(tmp_path):
    r = _run("reproduce", "interactions", "--quick", "--set", "n_players=64",
             "--out", str(tmp_path))
    assert r.exit_code == 2 and "n_players" in r.output
    assert not any(tmp_path.iterdir())


def test_out_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "results"
    f.write_text("x")
    r = _run("reproduce", "options", "--quick", "--out", str(f))
    assert r.exit_code == 2 and "is a file" in r.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_out_read_only_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        r = _run("reproduce", "options", "--quick", "--out", str(ro / "results"))
        assert r.exit_code == 2 and "not writable" in r.output
    finally:
        ro.chmod(0o700)


def test_bench_json_to_a_missing_folder_is_refused_first(tmp_path):
    r = _run("bench", "options", "--quick", "--json", str(tmp_path / "no" / "such" / "x.json"))
    assert r.exit_code == 2 and "does not exist" in r.output
