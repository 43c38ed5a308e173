import subprocess
import sys

from dnnkit.core.process import isolated_python_env


def test_child_python_does_not_inherit_our_import_path(monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("VIRTUAL_ENV", str(tmp_path))
    env = isolated_python_env(DNNKIT_MARK="1")
    assert "PYTHONPATH" not in env and "VIRTUAL_ENV" not in env and env["DNNKIT_MARK"] == "1"
    out = subprocess.run([sys.executable, "-c", "import sys; print(sys.path)"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert str(tmp_path) not in out
