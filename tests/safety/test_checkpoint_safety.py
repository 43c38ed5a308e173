"""Issue 12, training checkpoints: exact resume with dropout (also after SIGKILL), job
fingerprints, hyper-parameter mismatches, checksums and stale temporaries."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import dnnkit
from dnnkit.core.checkpoint import (
    CheckpointError,
    load_tensors,
    load_training_state,
    save_tensors,
    save_training_state,
)
from dnnkit.core.training import fit

SRC = str(Path(dnnkit.__file__).resolve().parents[1])   # the dnnkit under test

CHILD = textwrap.dedent("""
    import sys
    main(*sys.argv[1:4])
""")

JOB = """
def main(mode, ck, out):
    import os, signal
    import torch
    from torch import nn
    from dnnkit.core.checkpoint import save_tensors
    from dnnkit.core.training import fit

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(96, 12, generator=g), torch.randint(0, 3, (96,), generator=g)
    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3))
    if mode == "resume":
        torch.manual_seed(1234)          # a new process: the global RNG is somewhere else

    def on_epoch(epoch, m):
        torch.rand(3)                    # a callback that also draws from the global RNG
        if mode == "kill" and epoch == 2:
            os.kill(os.getpid(), signal.SIGKILL)

    fit(model, x, y, epochs=4, batch_size=16, lr=1e-2, seed=3,
        checkpoint=None if mode == "ref" else ck, on_epoch=on_epoch)
    save_tensors(out, model.state_dict())
"""


def _child(tmp_path: Path, mode: str) -> subprocess.CompletedProcess:
    script = tmp_path / "child.py"
    script.write_text(JOB + CHILD)
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(script), mode, str(tmp_path / "ck.safetensors"),
                           str(tmp_path / f"{mode}.safetensors")], env=env,
                          capture_output=True, text=True, timeout=120)


def test_sigkill_then_resume_with_dropout_is_bit_identical(tmp_path):
    ns: dict = {}
    exec(JOB, ns)
    with torch.random.fork_rng():                    # the uninterrupted run, in this process
        ns["main"]("ref", None, str(tmp_path / "ref.safetensors"))
    killed = _child(tmp_path, "kill")
    assert killed.returncode == -9 and (tmp_path / "ck.safetensors").is_file()
    resumed = _child(tmp_path, "resume")
    assert resumed.returncode == 0, resumed.stderr
    ref, _ = load_tensors(tmp_path / "ref.safetensors")
    got, _ = load_tensors(tmp_path / "resume.safetensors")
    for k in ref:
        assert torch.equal(ref[k], got[k]), k


def _xy(seed=0, n=64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.randint(0, 2, (n,), generator=g)


def _net():
    return nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.3), nn.Linear(8, 2))


def test_global_rng_states_roundtrip(tmp_path):
    import random

    m = _net()
    gens = {"a": torch.Generator().manual_seed(5), "b": torch.Generator().manual_seed(6)}
    p = save_training_state(tmp_path / "s.safetensors", m, generator=gens)
    want = (torch.rand(4), np.random.rand(3), random.random(),
            torch.rand(2, generator=gens["a"]), torch.rand(2, generator=gens["b"]))
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    gens2 = {"a": torch.Generator(), "b": torch.Generator()}
    load_training_state(p, _net(), generator=gens2)
    got = (torch.rand(4), np.random.rand(3), random.random(),
           torch.rand(2, generator=gens2["a"]), torch.rand(2, generator=gens2["b"]))
    assert torch.equal(want[0], got[0]) and np.array_equal(want[1], got[1])
    assert want[2] == got[2] and torch.equal(want[3], got[3]) and torch.equal(want[4], got[4])


def test_checkpoint_of_another_job_is_refused_or_restarted(tmp_path):
    ck = tmp_path / "ck.safetensors"
    x, y = _xy(0)
    torch.manual_seed(0)
    fit(_net(), x, y, epochs=2, checkpoint=ck)
    new_x, new_y = _xy(1)
    torch.manual_seed(0)
    m = _net()
    with pytest.raises(CheckpointError, match="different job.*data"):
        fit(m, new_x, new_y, epochs=5, checkpoint=ck)
    # the user says "start fresh": trains all 5 epochs and overwrites the file
    h = fit(m, new_x, new_y, epochs=5, checkpoint=ck, resume=False)
    assert h.resumed_from == 0 and len(h.loss) == 5
    assert load_tensors(ck)[1]["step"] == 5
    # same data, but a different user-given run id is another job too
    with pytest.raises(CheckpointError, match="run_id"):
        fit(_net(), new_x, new_y, epochs=6, checkpoint=ck, run_id="exp-2")
    # extending a finished run (more epochs, same job) resumes
    h = fit(_net(), new_x, new_y, epochs=6, checkpoint=ck)
    assert h.resumed_from == 5 and len(h.loss) == 6


def test_hyper_parameter_mismatch_on_resume_is_a_clear_error(tmp_path):
    ck = tmp_path / "ck.safetensors"
    x, y = _xy(0)
    fit(_net(), x, y, epochs=1, lr=1e-3, checkpoint=ck)
    with pytest.raises(CheckpointError, match=r"lr: checkpoint \[0.001\], now \[0.5\]"):
        fit(_net(), x, y, epochs=2, lr=0.5, checkpoint=ck)
    with pytest.raises(CheckpointError, match="optimizer: checkpoint 'Adam', now 'SGD'"):
        fit(_net(), x, y, epochs=2, optimizer="sgd", checkpoint=ck)
    with pytest.raises(CheckpointError, match="batch_size"):
        fit(_net(), x, y, epochs=2, batch_size=8, checkpoint=ck)
    # loading an Adam state into SGD directly (no fingerprint) is a CheckpointError, not KeyError
    net = _net()
    with pytest.raises(CheckpointError, match="holds Adam state but the optimizer is SGD"):
        load_training_state(ck, net, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9))


def test_flipped_byte_is_refused_naming_the_file(tmp_path):
    p = save_tensors(tmp_path / "w.safetensors", {"w": torch.randn(50, 50)}, {"k": 1})
    data = bytearray(p.read_bytes())
    data[-100] ^= 0x01                                    # one bit of the payload
    p.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"w\.safetensors.*checksum"):
        load_tensors(p)


def test_stale_temporaries_of_a_killed_save_are_removed(tmp_path):
    p = tmp_path / "ck.safetensors"
    stale = [tmp_path / f"ck.safetensors.k{i}.tmp" for i in range(3)]
    for s in stale:
        s.write_bytes(b"x" * 1000)
    other = tmp_path / "other.safetensors.zz.tmp"          # another checkpoint's: kept
    other.write_bytes(b"y")
    save_tensors(p, {"w": torch.zeros(2)})
    assert sorted(q.name for q in tmp_path.iterdir()) == ["ck.safetensors", other.name]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resume_with_dropout_on_cuda_restores_the_cuda_rng(tmp_path):
    x, y = _xy(0)

    def run(ck=None, stop=None, scramble=False):
        torch.manual_seed(0)
        m = _net().cuda()
        if scramble:
            torch.cuda.manual_seed_all(4321)
        fit(m, x, y, epochs=4, batch_size=16, checkpoint=ck, stop_after=stop)
        return m

    ref = run()
    ck = tmp_path / "ck.safetensors"
    run(ck, stop=2)
    got = run(ck, scramble=True)
    for (k, v), w in zip(ref.state_dict().items(), got.state_dict().values()):
        assert torch.equal(v, w), k
