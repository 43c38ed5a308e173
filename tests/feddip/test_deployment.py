"""A real Flower deployment on loopback: one SuperLink, two SuperNodes, `flwr run` (slow)."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.feddip.helpers import require_flower

require_flower()

APP_TOML = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "feddip-digits"
version = "1.0.0"
description = "FedDIP on digits (dnnkit)"
license = "MIT"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "dnnkit"

[tool.flwr.app.components]
serverapp = "dnnkit.feddip.app:server_app"
clientapp = "dnnkit.feddip.app:client_app"

[tool.flwr.app.config]
num-server-rounds = 3
clients-per-round = 2
target-sparsity = 0.8
reconfig-interval = 1
checkpoint = "{checkpoint}"
node-wait-timeout = 120.0
"""


def _free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _wait_port(port, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.5)
    return False


@pytest.mark.slow
def test_loopback_deployment_runs_feddip(tmp_path):
    from dnnkit.feddip.app import _cfg, _model
    from dnnkit.feddip.server import FedDIPServer

    bindir = Path(sys.executable).parent
    tools = {t: bindir / t for t in ("flower-superlink", "flower-supernode", "flwr")}
    missing = [t for t, p in tools.items() if not p.is_file()]
    if missing:
        pytest.skip(f"Flower executables {missing} not found next to {sys.executable}")
    link, n1, n2 = _free_ports(3)  # flwr >= 1.42: one HTTP port serves Fleet/Control/Runtime
    home = tmp_path / "flwr-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "loop"\n\n[superlink.loop]\naddress = "127.0.0.1:{link}"\n'
        "insecure = true\n")
    ck = tmp_path / "server.safetensors"
    app = tmp_path / "app"
    app.mkdir()
    (app / "pyproject.toml").write_text(APP_TOML.format(checkpoint=ck))
    (app / "README.md").write_text("FedDIP digits app\n")
    env = {**os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0",
           "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1",
           "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = []

    def start(name, args):
        fh = open(logs / f"{name}.log", "w")  # noqa: SIM115  (closed in finally)
        procs.append((subprocess.Popen(args, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                       cwd=tmp_path), fh))

    try:
        start("superlink", [str(tools["flower-superlink"]), "--insecure",
                            "--host", "127.0.0.1", "--port", str(link),
                            "--database", str(tmp_path / "state.db")])
        for i, port in enumerate((n1, n2)):
            start(f"supernode{i}", [str(tools["flower-supernode"]), "--insecure",
                                    "--superlink", f"127.0.0.1:{link}",
                                    "--host", "127.0.0.1", "--port", str(port),
                                    "--node-config", f"partition-id={i} num-partitions=2"])
        def logs_tail():
            return {p.name: p.read_text()[-2000:] for p in logs.iterdir()}

        assert _wait_port(link), logs_tail()
        time.sleep(3)
        run = subprocess.run([str(tools["flwr"]), "run", str(app), "loop"], env=env, check=False,
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert run.returncode == 0, (run.stdout + run.stderr, logs_tail())
        cfg = _cfg({"num-server-rounds": 3, "clients-per-round": 2, "target-sparsity": 0.8,
                    "reconfig-interval": 1})
        deadline = time.monotonic() + 300
        done = 0
        while time.monotonic() < deadline:
            if ck.is_file():
                try:
                    server = FedDIPServer(_model(), cfg)
                    done = server.load(ck)
                except ValueError:
                    done = 0
                if done == cfg.rounds:
                    break
            time.sleep(2)
        if done != cfg.rounds:
            pytest.fail(f"deployment finished {done} of {cfg.rounds} rounds; logs: "
                        f"{logs_tail()}")
        assert [h["clients_received"] for h in server.history] == [2, 2, 2]
        assert abs(server.history[-1]["sparsity"] - server.history[-1]["scheduled_sparsity"]) \
            < 1e-3
    finally:
        for p, fh in procs:
            p.terminate()
        for p, fh in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
            fh.close()
        shutil.rmtree(home, ignore_errors=True)
