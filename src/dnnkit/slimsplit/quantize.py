"""The bottleneck quantizer: min-max uniform, per tensor, 1..8 bits, bit-packed payloads.

Two code books, both uniform over the tensor's range ``[m, M]`` with ``Q = 2**bits - 1`` levels
and ``s = (M - m) / Q``:

``"minmax"`` (default)
    ``q = round((z - m) / s)``, ``z_hat = m + s * q``: both ends of the range are exact.
``"torchdistill"``
    torchdistill 1.1.5's ``quantize_tensor`` / ``dequantize_tensor`` (after Jacob et al., CVPR
    2018, Eq. 1): zero point ``p = int(clip(-m / s, 0, Q))`` (truncated), codes
    ``q = round(clip(p + z / s, 0, Q))``, ``z_hat = s * (q - p)``. Codes, scale and zero point
    are identical to torchdistill's, bit for bit. (For a tensor with ``m > 0`` the zero point
    clips to 0 and large values saturate: that is torchdistill's behaviour, kept on purpose.)

A constant tensor (``M == m``, scale 0: torchdistill divides by zero there) is sent as all-zero
codes with scale 1 and its value in the header's ``offset``; it decodes back exactly.

On the wire a :class:`Payload` is a small header (magic, mode, bits, shape, scale, zero point,
offset) followed by the codes packed MSB first, ``bits`` bits each, zero-padded to a byte:
``ceil(numel * bits / 8)`` data bytes (:func:`payload_nbytes`).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from dnnkit.core.validation import (
    Instance,
    Int,
    Optional_,
    Options,
    Sequence_,
    Tensor,
    check_choice,
    check_int,
    check_tensor,
    declares,
    param_error,
    validate_params,
)

__all__ = ["Payload", "BottleneckQuantizer", "pack_bits", "unpack_bits", "payload_nbytes"]

MODES = ("minmax", "torchdistill")
_MAGIC = 0x53  # "S"
_VERSION = 1
_HEAD = struct.Struct("<BBBB")  # magic, version << 4 | mode, bits, ndim
_TAIL = struct.Struct("<ffB")  # scale, offset, zero point
_MAX_DIM = 2**32 - 1


def _varint(n: int) -> bytes:
    """LEB128 unsigned varint (7 bits per byte, high bit = more)."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(blob: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(blob) or shift > 35:
            raise ValueError("truncated or oversized varint")
        byte = blob[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def _check_bits(bits, where: str) -> int:
    return check_int(bits, "bits", 1, 8, where=where)


def header_nbytes(shape: tuple[int, ...]) -> int:
    """Bytes of a payload header: 4 + varint bytes of each dimension + 9 (scale, offset, zp).

    A dimension below 128 takes one byte, so a ``(1, 1, 4, 4)`` tensor has a 17-byte header.
    """
    return _HEAD.size + sum(len(_varint(int(d))) for d in shape) + _TAIL.size


@validate_params({"shape": Sequence_(Int(0, 2**32 - 1), min_len=0), "bits": Int(1, 8),
                  "header": Instance(bool)})
def payload_nbytes(shape: tuple[int, ...], bits: int, *, header: bool = True) -> int:
    """Exact size of the payload of a tensor of ``shape`` at ``bits`` bits.

    ``ceil(numel * bits / 8)`` data bytes, plus :func:`header_nbytes` when ``header``.
    """
    where = "slimsplit.payload_nbytes"
    bits = _check_bits(bits, where)
    if not isinstance(shape, (tuple, list)) or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= _MAX_DIM for d in shape):
        raise ValueError(param_error("shape", where, "a tuple of non-negative ints", shape))
    data = (math.prod(shape) * bits + 7) // 8
    return data + (header_nbytes(tuple(shape)) if header else 0)


@validate_params({"codes": Tensor(dtype=torch.uint8, nonempty=False), "bits": Int(1, 8)})
def pack_bits(codes: torch.Tensor, bits: int) -> bytes:
    """Pack integer codes in ``[0, 2**bits)`` into bytes, ``bits`` bits each, MSB first.

    The stream is zero-padded to a whole byte: ``ceil(n * bits / 8)`` bytes for ``n`` codes. It
    equals ``numpy.packbits`` of the concatenated ``bits``-bit big-endian codes.
    """
    where = "slimsplit.pack_bits"
    bits = _check_bits(bits, where)
    codes = check_tensor(codes, "codes", where=where)
    if codes.dtype != torch.uint8:
        raise TypeError(param_error("codes", where, "a uint8 tensor", f"dtype {codes.dtype}"))
    flat = codes.detach().reshape(-1).to("cpu", torch.int64)
    if flat.numel() and int(flat.max()) >= (1 << bits):
        raise ValueError(param_error("codes", where, f"codes in [0, {(1 << bits) - 1}]",
                                     int(flat.max())))
    if bits == 8:
        return flat.to(torch.uint8).numpy().tobytes()
    # 8 codes of b bits are exactly b bytes: build one big-endian 8b-bit word per group
    n = flat.numel()
    groups = torch.nn.functional.pad(flat, (0, (-n) % 8)).reshape(-1, 8)
    word = (groups << (bits * torch.arange(7, -1, -1, dtype=torch.int64))).sum(1)
    out = (word[:, None] >> (8 * torch.arange(bits - 1, -1, -1, dtype=torch.int64))) & 0xFF
    return out.reshape(-1)[: (n * bits + 7) // 8].to(torch.uint8).numpy().tobytes()


@validate_params({"data": Instance(bytes, bytearray, memoryview), "n": Int(0, 2**35),
                  "bits": Int(1, 8)})
def unpack_bits(data: bytes, n: int, bits: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: ``n`` codes of ``bits`` bits as a uint8 tensor."""
    where = "slimsplit.unpack_bits"
    bits = _check_bits(bits, where)
    n = check_int(n, "n", 0, _MAX_DIM * 8, where=where)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(param_error("data", where, "bytes", type(data).__name__))
    need = (n * bits + 7) // 8
    if len(data) != need:
        raise ValueError(param_error("data", where, f"{need} bytes ({n} codes x {bits} bits)",
                                     f"{len(data)} bytes"))
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(torch.int64) if need else \
        torch.zeros(0, dtype=torch.int64)
    if bits == 8:
        return raw.to(torch.uint8)
    groups = torch.nn.functional.pad(raw, (0, (-need) % bits)).reshape(-1, bits)
    word = (groups << (8 * torch.arange(bits - 1, -1, -1, dtype=torch.int64))).sum(1)
    codes = (word[:, None] >> (bits * torch.arange(7, -1, -1, dtype=torch.int64))) & (
        (1 << bits) - 1)
    return codes.reshape(-1)[:n].to(torch.uint8)


@dataclass(frozen=True)
class Payload:
    """What the device sends: packed codes plus the header needed to decode them.

    ``z_hat = scale * (q - zero_point) + offset`` elementwise (float32), with ``q`` the codes
    unpacked from ``data``.

    Attributes
    ----------
    data : bytes
        The codes, ``bits`` bits each, MSB first (:func:`pack_bits`).
    shape : tuple of int
        Shape of the quantized tensor.
    bits : int
        Bits per element, 1..8.
    scale : float
        Quantization step (float32 value).
    zero_point : int
        Integer zero point (``"torchdistill"`` mode; 0 in ``"minmax"`` mode).
    offset : float
        Additive offset: the range minimum (``"minmax"``), the constant of a constant tensor,
        else 0.
    mode : str
        ``"minmax"`` or ``"torchdistill"``.
    """

    data: bytes
    shape: tuple[int, ...]
    bits: int
    scale: float
    zero_point: int
    offset: float
    mode: str = "minmax"

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def nbytes(self) -> int:
        """Bytes on the wire: header + ``ceil(numel * bits / 8)``."""
        return header_nbytes(self.shape) + len(self.data)

    def to_bytes(self) -> bytes:
        """Serialise header and data (little-endian header, see :func:`header_nbytes`)."""
        head = _HEAD.pack(_MAGIC, _VERSION << 4 | MODES.index(self.mode), self.bits,
                          len(self.shape))
        dims = b"".join(_varint(int(d)) for d in self.shape)
        tail = _TAIL.pack(self.scale, self.offset, self.zero_point)
        return head + dims + tail + bytes(self.data)

    @classmethod
    @validate_params({"blob": Instance(bytes, bytearray, memoryview)},
                     where="slimsplit.Payload.from_bytes")
    def from_bytes(cls, blob: bytes) -> Payload:
        """Parse :meth:`to_bytes` output; a bad magic, version, mode or length raises."""
        where = "slimsplit.Payload.from_bytes"
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise TypeError(param_error("blob", where, "bytes", type(blob).__name__))
        blob = bytes(blob)
        if len(blob) < _HEAD.size:
            raise ValueError(param_error("blob", where, "a payload header", f"{len(blob)} bytes"))
        magic, vm, bits, ndim = _HEAD.unpack_from(blob)
        version, mode = vm >> 4, vm & 0x0F
        if magic != _MAGIC or version != _VERSION or mode >= len(MODES) or not 1 <= bits <= 8:
            raise ValueError(param_error("blob", where, "a slimsplit payload (magic b'S', "
                                         f"version {_VERSION})", blob[:_HEAD.size]))
        off, shape = _HEAD.size, []
        try:
            for _ in range(ndim):
                d, off = _read_varint(blob, off)
                shape.append(d)
        except ValueError:
            raise ValueError(param_error("blob", where, "a complete header",
                                         f"{len(blob)} bytes")) from None
        if len(blob) < off + _TAIL.size:
            raise ValueError(param_error("blob", where, "a complete header", f"{len(blob)} bytes"))
        scale, offset, zp = _TAIL.unpack_from(blob, off)
        data = blob[off + _TAIL.size:]
        need = (math.prod(shape) * bits + 7) // 8
        if len(data) != need:
            raise ValueError(param_error("blob", where, f"{need} data bytes for shape {shape} at "
                                         f"{bits} bits", f"{len(data)} bytes"))
        return cls(data, tuple(shape), bits, scale, zp, offset, MODES[mode])


class _StraightThrough(torch.autograd.Function):
    """Forward: the quantized value; backward: the identity (Bengio et al. 2013's STE)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, z_hat: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        return z_hat.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ARG004
        return grad, None


def _quant_params(z: torch.Tensor, bits: int, mode: str, dims: tuple[int, ...]):
    """Codes (float), scale, zero point and offset broadcastable to ``z`` (reduced over dims)."""
    qmax = 2.0**bits - 1.0
    lo = z.amin(dim=dims, keepdim=True) if dims else z.min().reshape([1] * z.ndim)
    hi = z.amax(dim=dims, keepdim=True) if dims else z.max().reshape([1] * z.ndim)
    scale = (hi - lo) / (qmax - 0.0)
    const = scale == 0
    safe = torch.where(const, torch.ones_like(scale), scale)
    if mode == "torchdistill":
        zp = (0.0 - lo / safe).clamp(0.0, qmax).trunc()
        zp = torch.where(const, torch.zeros_like(zp), zp)
        q = (zp + z / safe).clamp(0.0, qmax).round()
        offset = torch.where(const, lo, torch.zeros_like(lo))
    else:
        zp = torch.zeros_like(lo)
        q = ((z - lo) / safe).round().clamp(0.0, qmax)
        offset = lo
    q = torch.where(const, torch.zeros_like(q), q)
    return q, safe, zp, offset


@validate_params({"bits": Int(1, 8), "mode": Options(*MODES), "per_sample": Instance(bool)})
class BottleneckQuantizer(nn.Module):
    """Min-max uniform quantizer of the transmitted tensor (1..8 bits, straight-through).

    Parameters
    ----------
    bits : int
        Default bits per element, 1..8 (``forward``/``encode`` accept a per-call ``bits``).
    mode : {"minmax", "torchdistill"}
        Code book (module docstring). ``"torchdistill"`` is identical to torchdistill 1.1.5's
        ``quantize_tensor``.
    per_sample : bool
        In :meth:`forward`, quantize each sample of the batch as its own tensor (what
        :meth:`encode` does on a batch of one, the deployment case). ``False``: one range for
        the whole batch (what :meth:`encode` does on the whole tensor).

    Notes
    -----
    The forward pass returns the dequantized tensor; its gradient is the identity
    (straight-through estimator), so the encoder trains through the quantizer.
    ``decode(encode(z))`` equals ``forward(z)`` exactly for float32 ``z`` of batch one.

    Examples
    --------
    >>> qz = BottleneckQuantizer(bits=2)
    >>> z = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    >>> p = qz.encode(z)
    >>> p.nbytes() - len(p.data), len(p.data), qz.decode(p).tolist()
    (15, 1, [[0.0, 1.0, 2.0, 3.0]])
    """

    def __init__(self, bits: int = 8, *, mode: Literal["minmax", "torchdistill"] = "minmax",
                 per_sample: bool = True) -> None:
        super().__init__()
        where = "slimsplit.BottleneckQuantizer"
        self.bits = _check_bits(bits, where)
        self.mode = check_choice(mode, "mode", MODES, where=where)
        if not isinstance(per_sample, bool):
            raise TypeError(param_error("per_sample", where, "a bool", per_sample))
        self.per_sample = per_sample

    def extra_repr(self) -> str:
        return f"bits={self.bits}, mode={self.mode!r}, per_sample={self.per_sample}"

    @validate_params({"z": Tensor(dtype="floating"), "bits": Optional_(Int(1, 8)),
                      "per_sample": Optional_(Instance(bool))},
                     where="slimsplit.BottleneckQuantizer.quantize")
    def quantize(self, z: torch.Tensor, bits: int | None = None, *, per_sample: bool | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Codes (uint8), scale, zero point and offset of ``z`` (no gradient).

        With ``per_sample`` the parameters have shape ``(N, 1, ..., 1)``, else ``(1, ..., 1)``.
        """
        where = "slimsplit.BottleneckQuantizer.quantize"
        bits = self.bits if bits is None else _check_bits(bits, where)
        z = self._check_z(z, where)
        per = self.per_sample if per_sample is None else per_sample
        dims = tuple(range(1, z.ndim)) if per and z.ndim > 1 else ()
        with torch.no_grad():
            q, scale, zp, offset = _quant_params(z.detach(), bits, self.mode, dims)
        return q.to(torch.uint8), scale, zp, offset

    def _check_z(self, z, where: str) -> torch.Tensor:
        z = check_tensor(z, "z", floating=True, where=where)
        if z.numel() == 0:
            raise ValueError(param_error("z", where, "a non-empty tensor", f"shape {tuple(z.shape)}"))
        return z

    @declares({"z": Tensor(dtype="floating"), "bits": Optional_(Int(1, 8))})
    def forward(self, z: torch.Tensor, bits: int | None = None) -> torch.Tensor:
        """Fake-quantize ``z`` (same shape, dtype); straight-through gradient."""
        where = "slimsplit.BottleneckQuantizer.forward"
        bits = self.bits if bits is None else _check_bits(bits, where)
        z = self._check_z(z, where)
        dims = tuple(range(1, z.ndim)) if self.per_sample and z.ndim > 1 else ()
        with torch.no_grad():
            q, scale, zp, offset = _quant_params(z.detach(), bits, self.mode, dims)
            z_hat = scale * (q - zp) + offset
        return _StraightThrough.apply(z, z_hat)

    @validate_params({"z": Tensor(dtype="floating"), "bits": Optional_(Int(1, 8))},
                     where="slimsplit.BottleneckQuantizer.encode")
    def encode(self, z: torch.Tensor, bits: int | None = None) -> Payload:
        """Quantize the whole tensor ``z`` with one range and pack the codes into a payload.

        Parameters and header values are float32 (``z`` is cast), so the decoded tensor is
        float32.
        """
        where = "slimsplit.BottleneckQuantizer.encode"
        bits = self.bits if bits is None else _check_bits(bits, where)
        z = self._check_z(z, where).detach().to(torch.float32)
        q, scale, zp, offset = _quant_params(z, bits, self.mode, ())
        return Payload(pack_bits(q.to(torch.uint8), bits), tuple(int(d) for d in z.shape), bits,
                       float(scale.reshape(())), int(zp.reshape(())), float(offset.reshape(())),
                       self.mode)

    @validate_params({"payload": Instance(Payload)}, where="slimsplit.BottleneckQuantizer.decode")
    def decode(self, payload: Payload, *, device: str | torch.device | None = None
               ) -> torch.Tensor:
        """Unpack and dequantize a payload into a float32 tensor (on ``device``, default cpu)."""
        where = "slimsplit.BottleneckQuantizer.decode"
        if not isinstance(payload, Payload):
            raise TypeError(param_error("payload", where, "a slimsplit.Payload",
                                        type(payload).__name__))
        if payload.mode != self.mode:
            raise ValueError(param_error("payload", where, f"a payload in mode {self.mode!r}",
                                         f"mode {payload.mode!r}"))
        q = unpack_bits(payload.data, payload.numel, payload.bits).reshape(payload.shape)
        q = q.to(device or "cpu", torch.float32)
        f32 = torch.float32
        scale = torch.tensor(payload.scale, dtype=f32, device=q.device)
        zp = torch.tensor(float(payload.zero_point), dtype=f32, device=q.device)
        offset = torch.tensor(payload.offset, dtype=f32, device=q.device)
        return scale * (q - zp) + offset
