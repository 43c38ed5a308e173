"""``dnnkit bench deep_taylor``: our DTD vs zennit (same composite) vs one forward+backward.

Besides wall time, each explanation's memory is reported in two ways (both on CPU):

- **peak RSS** (:func:`peak_rss_subprocess`): in a fresh process per workload, started with
  glibc's mmap threshold fixed at 64 kB (``MALLOC_MMAP_THRESHOLD_``: every tensor of 64 kB or
  more is its own mapping, so freeing it leaves the resident set at once), the rise of the
  resident-set high-water mark during one call after two warm-up calls, the kernel's mark being
  reset first (``/proc/self/clear_refs``, Linux); median of 3. It also
  counts oneDNN scratch buffers, which no PyTorch counter sees. Repeat runs agree to ~0.3 MB.
- **saved-tensor bytes** (:func:`saved_tensor_peak_bytes`): the peak of the bytes that autograd
  holds for the backward pass (``torch.autograd.graph.saved_tensors_hooks``, one count per
  storage, parameters excluded). Exactly deterministic; it misses temporaries of the backward.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

from dnnkit.core.benchmark import Timing, time_call
from dnnkit.core.registry import register_bench
from dnnkit.deep_taylor.decompose import DTDConfig, deep_taylor

__all__ = ["bench_cnn", "peak_rss_bytes", "peak_rss_subprocess", "saved_tensor_peak_bytes"]

def bench_cnn(width: int = 32) -> nn.Sequential:
    """3 conv + 2 fc ReLU CNN for 3x32x32 inputs (the spec's benchmark model)."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(2 * width * 16, 128), nn.ReLU(), nn.Linear(128, 10),
    ).eval()


def _status_bytes(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise OSError(f"{key} not in /proc/self/status")


def peak_rss_bytes(fn: Callable[[], object], *, repeat: int = 3) -> int | None:
    """Median rise of the resident-set high-water mark over ``repeat`` calls of ``fn``.

    Linux only (``None`` elsewhere). Meaningful when the process was started with
    ``MALLOC_MMAP_THRESHOLD_=65536`` (glibc then maps every block >= 64 kB on its own, so a freed
    tensor leaves the resident set at once): :func:`peak_rss_subprocess` does that. Call ``fn``
    once before to warm up kernels and libraries.
    """
    clear = Path("/proc/self/clear_refs")
    if not sys.platform.startswith("linux") or not clear.exists():
        return None
    peaks = []
    try:
        for _ in range(max(1, repeat)):
            gc.collect()
            clear.write_text("5")  # reset the high-water mark to the current RSS
            before = _status_bytes("VmRSS:")
            fn()
            peaks.append(_status_bytes("VmHWM:") - before)
    except OSError:
        return None
    peaks.sort()
    return peaks[len(peaks) // 2]


def _bench_work(kind: str, batch: int) -> Callable[[], None]:
    """The benchmark's three workloads on the seeded bench CNN: ours, zennit, plain."""
    torch.manual_seed(0)
    model = bench_cnn()
    x = torch.rand(batch, 3, 32, 32)
    target = model(x).argmax(1)
    cfg = DTDConfig(first_rule="zb", low=0.0, high=1.0, check_assumptions=False)
    if kind == "ours":
        return lambda: deep_taylor(model, x, target, cfg)
    if kind == "zennit":
        from dnnkit.deep_taylor.oracle import zennit_relevance

        return lambda: zennit_relevance(model, x, target, cfg)

    def plain() -> None:
        xin = x.clone().requires_grad_(True)
        model(xin)[:, 0].sum().backward()

    return plain


def _rss_child(kind: str, batch: int) -> None:  # pragma: no cover - runs in a subprocess
    torch.set_num_threads(1)
    fn = _bench_work(kind, batch)
    fn()
    fn()
    print(peak_rss_bytes(fn))


def peak_rss_subprocess(kind: str, batch: int) -> int | None:
    """:func:`peak_rss_bytes` of one benchmark workload in a fresh Python process started with
    glibc's mmap threshold fixed at 64 kB (no heap reuse hides or inflates the peak)."""
    code = f"from dnnkit.deep_taylor.bench import _rss_child; _rss_child({kind!r}, {batch})"
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=600, check=True).stdout.strip().splitlines()
        return None if not out or out[-1] == "None" else int(out[-1])
    except (subprocess.SubprocessError, ValueError, OSError):
        return None


def saved_tensor_peak_bytes(fn: Callable[[], object], exclude: Iterable[torch.Tensor] = ()
                            ) -> int:
    """Peak bytes of the tensors autograd saves for backward while ``fn`` runs.

    Each storage counts once however many graph nodes save it, and while any of them is alive;
    storages of ``exclude`` (e.g. the model's parameters) are not counted.
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    live: dict[int, list[int]] = {}
    state = {"now": 0, "peak": 0}

    class _Packed:
        __slots__ = ("tensor", "__weakref__")

    def release(key: int) -> None:
        entry = live[key]
        entry[0] -= 1
        if entry[0] == 0:
            state["now"] -= entry[1]
            del live[key]

    def pack(t: torch.Tensor) -> _Packed:
        p = _Packed()
        p.tensor = t
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key and key not in skip:
            entry = live.setdefault(key, [0, storage.nbytes()])
            if entry[0] == 0:
                state["now"] += entry[1]
                state["peak"] = max(state["peak"], state["now"])
            entry[0] += 1
            weakref.finalize(p, release, key)
        return p

    def unpack(p: _Packed) -> torch.Tensor:
        return p.tensor

    gc.collect()
    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        fn()
    gc.collect()
    return state["peak"]


def _mb(b: int | None) -> str:
    return "n/a" if b is None else f"{b / 2**20:.1f} MB"


def _ratio(a: int | None, b: int | None) -> str:
    return "n/a" if a is None or not b else f"{a / b:.2f}x"


@register_bench("deep_taylor")
def bench(quick: bool = False) -> list[Timing]:
    from dnnkit.deep_taylor.oracle import zennit_relevance

    n = 16 if quick else 64
    kinds = ("ours", "zennit", "plain")
    work = {k: _bench_work(k, n) for k in kinds}
    repeat = 3 if quick else 7
    times = {k: time_call(work[k], repeat=repeat) for k in kinds}
    torch.manual_seed(0)
    model = bench_cnn()
    params = list(model.parameters())
    saved = {k: saved_tensor_peak_bytes(_bench_work(k, n), params) for k in kinds}
    rss = {k: peak_rss_subprocess(k, n) for k in kinds}
    x = torch.rand(n, 3, 32, 32)
    target = model(x).argmax(1)
    cfg = DTDConfig(first_rule="zb", low=0.0, high=1.0, check_assumptions=False)
    err = float((deep_taylor(model, x, target, cfg) - zennit_relevance(model, x, target, cfg))
                .abs().max())
    return [
        Timing(f"DTD z^B+z+ on 3conv+2fc CNN, batch {n}, 3x32x32", times["ours"], "zennit 0.5.1",
               times["zennit"],
               note=f"max |dR| vs zennit {err:.1e} (float32); peak RSS ours {_mb(rss['ours'])} "
                    f"vs zennit {_mb(rss['zennit'])}"),
        Timing("same, vs one plain forward+backward (floor)", times["ours"], "autograd",
               times["plain"],
               note=f"memory vs floor (goal <= 2x): peak RSS "
                    f"{_ratio(rss['ours'], rss['plain'])} (zennit "
                    f"{_ratio(rss['zennit'], rss['plain'])}; floor {_mb(rss['plain'])}), "
                    f"saved tensors {_ratio(saved['ours'], saved['plain'])} (zennit "
                    f"{_ratio(saved['zennit'], saved['plain'])})"),
    ]
