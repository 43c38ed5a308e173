"""``dnnkit bench slimsplit``: device-side latency per mode, switching vs reloading, payloads.

Rows (ours vs anchor, same process, batch 1, the caller's thread setting):

- device side of each mode (members + quantize + pack) vs the physical transfer time of its
  payload at the paper's Bluetooth rate (161 kB/s at 1 m);
- ``set_mode`` vs loading that mode's model from a safetensors file (one model per operating
  point, the competitors' way);
- our encode (quantize + bit-pack) vs torchdistill's ``quantize_tensor`` + ``numpy.packbits`` on
  the paper's 6 x 96 x 96 bottleneck (when torchdistill is installed);
- memory: one slimmable model vs 16 per-mode models (bytes of tensors, in the note).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from dnnkit.core.benchmark import Timing, time_call
from dnnkit.core.checkpoint import load_tensors, save_tensors
from dnnkit.core.registry import register_bench
from dnnkit.slimsplit.models import digits_split_model
from dnnkit.slimsplit.quantize import BottleneckQuantizer

LINK_BPS = 161e3


def _tensor_bytes(sd: dict) -> int:
    return sum(v.numel() * v.element_size() for v in sd.values())


@register_bench("slimsplit")
def bench(quick: bool = False) -> list[Timing]:
    repeat = 5 if quick else 50
    model = digits_split_model(seed=0).eval()
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    rows: list[Timing] = []
    modes = [(1, 1), (4, 4)] if quick else model.modes
    for k, b in modes:
        model.set_mode(k, b)
        p = model.device_side(x)
        t = time_call(lambda: model.device_side(x), repeat=repeat, warmup=2)
        rows.append(Timing(f"device side, mode (k={k}, b={b}), {p.nbytes()} B payload", t,
                           f"transfer at {LINK_BPS / 1e3:.0f} kB/s", p.nbytes() / LINK_BPS,
                           note="paper RPi 4: 66 ms per member"))
    sd = model.state_dict()
    per_mode_bytes = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mode44.safetensors"
        save_tensors(path, sd, {"k": 4, "bits": 4})
        for k in range(1, 5):
            keep = {n: v for n, v in sd.items()
                    if not n.startswith("encoder.members.") or int(n.split(".")[2]) < k}
            per_mode_bytes += 4 * _tensor_bytes(keep)

        def reload():
            tensors, meta = load_tensors(path)
            m = digits_split_model(meta["k"], seed=None)
            m.load_state_dict(tensors)
            m.set_mode(meta["k"], meta["bits"])
            return m.eval()

        load_s = time_call(reload, repeat=max(3, repeat // 5))
    i = [0]
    all_modes = model.modes

    def switch():
        for _ in range(100):
            model.set_mode(*all_modes[i[0] % 16])
            i[0] += 1

    switch_s = time_call(switch, repeat=repeat) / 100
    rows.append(Timing("mode switch (set_mode)", switch_s,
                       "load a per-mode model (safetensors)", load_s,
                       note=f"memory: one model {_tensor_bytes(sd) / 1e3:.0f} kB vs 16 per-mode "
                            f"models {per_mode_bytes / 1e3:.0f} kB"))

    z = torch.randn(1, 6, 96, 96, generator=torch.Generator().manual_seed(1))
    try:
        from torchdistill.common.tensor_util import quantize_tensor
    except ImportError:
        quantize_tensor = None
    for bits in (1, 4) if quick else (1, 2, 3, 4, 8):
        q = BottleneckQuantizer(bits, mode="torchdistill")
        ours = time_call(lambda: q.encode(z), repeat=repeat)
        nbytes = q.encode(z).nbytes()
        if quantize_tensor is not None:
            def anchor():
                codes = quantize_tensor(z, num_bits=bits).tensor.numpy().reshape(-1)
                bits_mat = np.unpackbits(codes[:, None], axis=1)[:, 8 - bits:]
                return np.packbits(bits_mat.reshape(-1)).tobytes()

            rows.append(Timing(f"encode 6x96x96 at {bits} bits ({nbytes} B)", ours,
                               "torchdistill quantize_tensor + numpy.packbits",
                               time_call(anchor, repeat=repeat),
                               note=f"transfer at {LINK_BPS / 1e3:.0f} kB/s: "
                                    f"{1e3 * nbytes / LINK_BPS:.1f} ms"))
        else:
            rows.append(Timing(f"encode 6x96x96 at {bits} bits ({nbytes} B)", ours,
                               f"transfer at {LINK_BPS / 1e3:.0f} kB/s", nbytes / LINK_BPS,
                               note="torchdistill not installed"))
    return rows
