"""The split model: ensemble encoder on the device, quantized payload, decoder on the server.

All (k, bits) modes share one encoder, one quantizer and one decoder (Assine et al., WoWMoM
2023): :meth:`SplitModel.set_mode` changes two integers. :func:`train_split` trains every mode
jointly with the sandwich rule (Yu & Huang, ICCV 2019, "universally slimmable networks", Sec.
3.3): each step sums the losses of the largest mode, the smallest mode and one random mode.
:func:`profile_modes` measures accuracy, payload bytes and device-side latency per mode.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dnnkit.core.hooks import eval_mode
from dnnkit.core.seeding import make_generator
from dnnkit.core.validation import (
    Instance,
    Int,
    Optional_,
    Options,
    Real,
    Seed,
    Sequence_,
    Tensor,
    check_int,
    check_interval,
    check_tensor,
    declares,
    param_error,
    validate_params,
)
from dnnkit.slimsplit.ensemble import SlimmableEnsembleEncoder, _ModeState
from dnnkit.slimsplit.quantize import MODES, BottleneckQuantizer, Payload, payload_nbytes

__all__ = ["SplitModel", "ModeStats", "train_split", "profile_modes"]

log = logging.getLogger("dnnkit")


_MODES = Optional_(Sequence_(Sequence_(Int(1, 64), min_len=2, max_len=2)))


@validate_params({"encoder": Instance(SlimmableEnsembleEncoder), "decoder": Instance(nn.Module),
                  "bits_options": Sequence_(Int(1, 8)), "quant_mode": Options(*MODES)})
class SplitModel(nn.Module):
    """Device-side ensemble encoder + bottleneck quantizer + server-side decoder.

    Parameters
    ----------
    encoder : SlimmableEnsembleEncoder
        The device-side head (its members are the user's modules).
    decoder : nn.Module
        The server-side tail, fed the dequantized ``(N, *encoder.out_shape)`` tensor.
    bits_options : sequence of int
        The bit-widths of the modes (each 1..8), default the paper's 1..4.
    quant_mode : {"minmax", "torchdistill"}
        The quantizer's code book (:class:`BottleneckQuantizer`).

    Notes
    -----
    ``forward(x, k, bits)`` is ``decoder(Q_bits(encoder(x, k)))`` with a straight-through fake
    quantizer (trainable); :meth:`device_side` / :meth:`server_side` are the deployed halves
    that exchange a real bit-packed :class:`Payload` (batch one in the paper; a batch is sent as
    one tensor with one range). The modes are ``[(k, b) for k in 1..N for b in bits_options]``.
    """

    def __init__(self, encoder: SlimmableEnsembleEncoder, decoder: nn.Module, *,
                 bits_options: Sequence[int] = (1, 2, 3, 4),
                 quant_mode: str = "minmax") -> None:
        super().__init__()
        where = "slimsplit.SplitModel"
        if not isinstance(encoder, SlimmableEnsembleEncoder):
            raise TypeError(param_error("encoder", where, "a SlimmableEnsembleEncoder",
                                        type(encoder).__name__))
        if not isinstance(decoder, nn.Module):
            raise TypeError(param_error("decoder", where, "a torch.nn.Module",
                                        type(decoder).__name__))
        if not isinstance(bits_options, (list, tuple)) or not bits_options:
            raise ValueError(param_error("bits_options", where, "a non-empty list of ints in "
                                         "[1, 8]", bits_options))
        bits = tuple(sorted({check_int(b, "bits_options", 1, 8, where=where)
                             for b in bits_options}))
        if quant_mode not in MODES:
            raise ValueError(param_error("quant_mode", where, f"one of {list(MODES)}", quant_mode))
        self.encoder = encoder
        self.decoder = decoder
        self.quantizer = BottleneckQuantizer(max(bits), mode=quant_mode, per_sample=True)
        self.bits_options = bits
        self._n_members = encoder.n_members
        self._mode = _ModeState(encoder.n_members, max(bits))

    @property
    def k(self) -> int:
        """Active members of the current mode."""
        return self._mode.k

    @property
    def bits(self) -> int:
        """Bits per element of the current mode."""
        return self._mode.bits

    @property
    def modes(self) -> list[tuple[int, int]]:
        """Every (k, bits) mode, k-major."""
        return [(k, b) for k in range(1, self.encoder.n_members + 1) for b in self.bits_options]

    def _check_mode(self, k, bits, where: str) -> tuple[int, int]:
        k = self.k if k is None else check_int(k, "k", 1, self.encoder.n_members, where=where)
        if bits is None:
            return k, self.bits
        check_int(bits, "bits", 1, 8, where=where)
        if bits not in self.bits_options:
            raise ValueError(param_error("bits", where, f"one of {list(self.bits_options)}", bits))
        return k, int(bits)

    @declares({"k": Int(1, 1 << 16), "bits": Int(1, 8)})
    def set_mode(self, k: int, bits: int) -> None:
        """Switch the operating point: two integers are stored (no reload, no allocation)."""
        if not (type(k) is int and type(bits) is int and 1 <= k <= self._n_members
                and bits in self.bits_options):
            k, bits = self._check_mode(k, bits, "slimsplit.SplitModel.set_mode")
        self._mode.k, self._mode.bits = k, bits

    @declares({"x": Tensor(), "k": Optional_(Int(1, 1 << 16)), "bits": Optional_(Int(1, 8))})
    def forward(self, x: torch.Tensor, k: int | None = None, bits: int | None = None
                ) -> torch.Tensor:
        """``decoder(fake_quant(encoder(x, k), bits))``; the mode's values when None."""
        k, bits = self._check_mode(k, bits, "slimsplit.SplitModel.forward")
        return self.decoder(self.quantizer(self.encoder(x, k), bits))

    @validate_params({"x": Tensor(dtype="floating")}, where="slimsplit.SplitModel.device_side")
    def device_side(self, x: torch.Tensor) -> Payload:
        """Run the active members on ``x`` (eval mode, no gradient) and pack the payload."""
        with torch.no_grad(), eval_mode(self.encoder):
            z = self.encoder(x, self.k)
            return self.quantizer.encode(z, self.bits)

    @validate_params({"payload": Instance(Payload)}, where="slimsplit.SplitModel.server_side")
    def server_side(self, payload: Payload) -> torch.Tensor:
        """Decode a payload and run the decoder (eval mode, no gradient).

        The header must match this model: bottleneck shape ``(*, *encoder.out_shape)``, a
        listed bit-width and the quantizer's mode; otherwise ``ValueError`` names the field.
        """
        where = "slimsplit.SplitModel.server_side"
        if not isinstance(payload, Payload):
            raise TypeError(param_error("payload", where, "a slimsplit.Payload",
                                        type(payload).__name__))
        want = self.encoder.out_shape
        if want is not None and tuple(payload.shape[1:]) != tuple(want):
            raise ValueError(param_error("payload", where, f"a header with shape (N, "
                                         f"{', '.join(map(str, want))})",
                                         f"shape {payload.shape}"))
        if payload.bits not in self.bits_options:
            raise ValueError(param_error("payload", where, f"bits in {list(self.bits_options)}",
                                         f"bits {payload.bits}"))
        dev = next((p.device for p in self.decoder.parameters()), torch.device("cpu"))
        with torch.no_grad(), eval_mode(self.decoder):
            return self.decoder(self.quantizer.decode(payload, device=dev))


@validate_params({"model": Instance(SplitModel), "x": Tensor(dtype="floating"),
                  "y": Tensor(ndim=1, dtype="integer"), "epochs": Int(0, 100_000),
                  "batch_size": Int(1, 1 << 20), "lr": Real(0.0, 10.0, closed="right"),
                  "sandwich": Instance(bool), "modes": _MODES, "seed": Seed()})
def train_split(model: SplitModel, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 40,
                batch_size: int = 64, lr: float = 3e-3, sandwich: bool = True,
                modes: Sequence[tuple[int, int]] | None = None,
                seed: int | torch.Generator | None = None) -> dict[str, list[float]]:
    """Train all modes of ``model`` jointly (cross-entropy, Adam).

    Each step sums the losses of the largest mode ``(N, max bits)``, the smallest mode
    ``(1, min bits)`` and one mode drawn uniformly from ``modes`` (the sandwich rule of Yu &
    Huang 2019); with ``sandwich=False`` only the random mode is trained. Gradients pass the
    quantizer straight through.

    Parameters
    ----------
    model : SplitModel
        Trained in place (left in train mode at its current (k, bits)).
    x, y : Tensor
        Inputs ``(n, ...)`` and class labels ``(n,)`` (int64).
    epochs, batch_size, lr : int, int, float
        Adam over ``epochs`` passes of shuffled mini-batches.
    sandwich : bool
        Sum the largest, smallest and a random mode (True) or only a random mode.
    modes : list of (k, bits), optional
        Modes to draw from (default all of ``model.modes``).
    seed : int or torch.Generator, optional
        Seeds the shuffling and the random modes (the model's initial weights are the caller's).

    Returns
    -------
    dict
        ``{"loss": [mean summed loss per epoch]}``.
    """
    where = "slimsplit.train_split"
    if not isinstance(model, SplitModel):
        raise TypeError(param_error("model", where, "a SplitModel", type(model).__name__))
    x = check_tensor(x, "x", floating=True, where=where)
    y = check_tensor(y, "y", ndim=1, where=where)
    if x.shape[0] == 0:
        raise ValueError(param_error("x", where, "a non-empty batch", f"shape {tuple(x.shape)}"))
    if y.shape[0] != x.shape[0]:
        raise ValueError(param_error("y", where, f"{x.shape[0]} labels", f"{y.shape[0]} labels"))
    epochs = check_int(epochs, "epochs", 0, 100_000, where=where)
    batch_size = check_int(batch_size, "batch_size", 1, 1 << 20, where=where)
    lr = check_interval(lr, "lr", 0.0, 10.0, closed="right", where=where)
    all_modes = model.modes
    if modes is None:
        modes = all_modes
    else:
        modes = [tuple(m) for m in modes] if isinstance(modes, (list, tuple)) else None
        bad = [m for m in (modes or []) if m not in all_modes]
        if not modes or bad:
            raise ValueError(param_error("modes", where, f"a non-empty list of modes from "
                                         f"{all_modes}", bad or modes))
    gen = make_generator(seed)
    n_max, b_max, b_min = model.encoder.n_members, max(model.bits_options), min(model.bits_options)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history: dict[str, list[float]] = {"loss": []}
    dev = x.device
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=gen).to(dev)
        total, count = 0.0, 0
        for start in range(0, x.shape[0], batch_size):
            idx = perm[start:start + batch_size]
            xb, yb = x[idx], y[idx]
            pick = modes[int(torch.randint(len(modes), (1,), generator=gen))]
            step_modes = [(n_max, b_max), (1, b_min), pick] if sandwich else [pick]
            opt.zero_grad(set_to_none=True)
            loss = sum(F.cross_entropy(model(xb, k, b), yb) for k, b in step_modes)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        history["loss"].append(total / max(count, 1))
        log.debug("train_split epoch loss %.4f", history["loss"][-1])
    return history


@validate_params({"accuracy": Real(), "payload_bytes": Int(1, 1 << 40),
                  "encoder_ms": Real(0.0, None)})
@dataclass(frozen=True)
class ModeStats:
    """One row of the mode table the controller chooses from.

    Attributes
    ----------
    accuracy : float
        Task accuracy in this mode (or any score to maximise).
    payload_bytes : int
        Bytes sent per frame (header + packed codes).
    encoder_ms : float
        Device-side time per frame (members + quantize + pack), milliseconds.
    """

    accuracy: float
    payload_bytes: int
    encoder_ms: float


@validate_params({"model": Instance(SplitModel), "x": Tensor(dtype="floating"),
                  "y": Tensor(ndim=1, dtype="integer"), "modes": _MODES,
                  "repeats": Int(1, 100_000), "batch_size": Int(1, 1 << 20)})
def profile_modes(model: SplitModel, x: torch.Tensor, y: torch.Tensor, *,
                  modes: Sequence[tuple[int, int]] | None = None, repeats: int = 20,
                  batch_size: int = 512) -> dict[tuple[int, int], ModeStats]:
    """Accuracy, payload bytes and device-side latency of each mode.

    Accuracy is measured on ``(x, y)`` with each sample quantized as its own payload (the
    per-sample fake quantizer, equal to :meth:`SplitModel.device_side` then
    :meth:`~SplitModel.server_side` on that sample). Latency is the median over ``repeats``
    calls of ``device_side(x[:1])`` (batch one, the caller's thread setting). Payload bytes are
    :func:`~dnnkit.slimsplit.quantize.payload_nbytes` of ``(1, *out_shape)``. The model's mode
    and train flags are restored.
    """
    where = "slimsplit.profile_modes"
    if not isinstance(model, SplitModel):
        raise TypeError(param_error("model", where, "a SplitModel", type(model).__name__))
    x = check_tensor(x, "x", floating=True, where=where)
    y = check_tensor(y, "y", ndim=1, where=where)
    if x.shape[0] == 0 or y.shape[0] != x.shape[0]:
        raise ValueError(param_error("x", where, "a non-empty batch matching y",
                                     f"{x.shape[0]} inputs, {y.shape[0]} labels"))
    repeats = check_int(repeats, "repeats", 1, 100_000, where=where)
    batch_size = check_int(batch_size, "batch_size", 1, 1 << 20, where=where)
    all_modes = model.modes
    modes = all_modes if modes is None else [tuple(m) for m in modes]
    bad = [m for m in modes if m not in all_modes]
    if not modes or bad:
        raise ValueError(param_error("modes", where, f"modes from {all_modes}", bad or modes))
    saved = (model.k, model.bits)
    out: dict[tuple[int, int], ModeStats] = {}
    try:
        with torch.no_grad(), eval_mode(model):
            for k, b in modes:
                correct = 0
                for s in range(0, x.shape[0], batch_size):
                    pred = model(x[s:s + batch_size], k, b).argmax(1)
                    correct += int((pred == y[s:s + batch_size]).sum())
                model.set_mode(k, b)
                one = x[:1]
                model.device_side(one)
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    model.device_side(one)
                    times.append(time.perf_counter() - t0)
                times.sort()
                shape = (1, *model.encoder.out_shape)
                out[(k, b)] = ModeStats(correct / x.shape[0], payload_nbytes(shape, b),
                                        1e3 * times[len(times) // 2])
    finally:
        model.set_mode(*saved)
    return out
