"""Bottleneck quantizer: codes, bit packing vs numpy, payload round trip, STE, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dnnkit.slimsplit import BottleneckQuantizer, Payload, pack_bits, payload_nbytes, unpack_bits


@pytest.mark.parametrize("bits", range(1, 9))
def test_pack_bits_matches_numpy_packbits(bits):
    g = torch.Generator().manual_seed(bits)
    for n in (1, 7, 16, 33):
        codes = torch.randint(0, 2**bits, (n,), generator=g, dtype=torch.int64).to(torch.uint8)
        stream = np.unpackbits(codes.numpy()[:, None], axis=1)[:, 8 - bits:].reshape(-1)
        ref = np.packbits(stream).tobytes()
        ours = pack_bits(codes, bits)
        assert ours == ref and len(ours) == (n * bits + 7) // 8
        back = np.packbits(np.unpackbits(np.frombuffer(ours, np.uint8))[: n * bits]
                           .reshape(n, bits), axis=1, bitorder="big") >> (8 - bits)
        assert torch.equal(unpack_bits(ours, n, bits), torch.from_numpy(back.reshape(-1)))
        assert torch.equal(unpack_bits(ours, n, bits), codes)


@pytest.mark.parametrize("mode", ["minmax", "torchdistill"])
@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_encode_decode_equals_forward_and_serialises(mode, bits):
    q = BottleneckQuantizer(bits, mode=mode)
    z = torch.randn(1, 3, 5, 5, generator=torch.Generator().manual_seed(bits))
    p = q.encode(z)
    assert p.nbytes() == payload_nbytes(tuple(z.shape), bits) == len(p.to_bytes())
    assert len(p.data) == (75 * bits + 7) // 8
    p2 = Payload.from_bytes(p.to_bytes())
    assert p2 == p
    assert torch.equal(q.decode(p2), q(z))
    codes, *_ = q.quantize(z)
    assert int(codes.max()) <= 2**bits - 1


def test_minmax_levels_and_error_bound():
    z = torch.randn(2, 64, generator=torch.Generator().manual_seed(0))
    for bits in range(1, 9):
        zh = BottleneckQuantizer(bits)(z)
        for i in range(2):
            lo, hi = z[i].min(), z[i].max()
            step = (hi - lo) / (2**bits - 1)
            assert (zh[i] - z[i]).abs().max() <= step / 2 + 1e-6
            assert torch.isclose(zh[i].min(), lo) and torch.isclose(zh[i].max(), hi, atol=1e-6)
            assert len(torch.unique(zh[i])) <= 2**bits


def test_per_sample_forward_equals_batch_one_encode():
    q = BottleneckQuantizer(2)
    z = torch.randn(4, 2, 3, 3, generator=torch.Generator().manual_seed(3)) * torch.arange(
        1, 5).view(4, 1, 1, 1)
    out = q(z)
    for i in range(4):
        assert torch.equal(out[i:i + 1], q.decode(q.encode(z[i:i + 1])))


@pytest.mark.parametrize("mode", ["minmax", "torchdistill"])
@pytest.mark.parametrize("value", [0.0, 2.5, -1.25])
def test_constant_tensor_decodes_exactly(mode, value):
    q = BottleneckQuantizer(3, mode=mode)
    z = torch.full((1, 2, 4, 4), value)
    p = q.encode(z)
    assert p.scale == 1.0 and set(unpack_bits(p.data, 32, 3).tolist()) == {0}
    assert torch.equal(q.decode(p), z) and torch.equal(q(z), z)


def test_straight_through_gradient():
    z = torch.randn(2, 8, requires_grad=True)
    w = torch.randn(2, 8)
    (BottleneckQuantizer(1)(z) * w).sum().backward()
    assert torch.equal(z.grad, w)


def test_bad_input():
    q = BottleneckQuantizer(4)
    with pytest.raises(ValueError, match="'bits' parameter"):
        BottleneckQuantizer(9)
    with pytest.raises(ValueError, match="'bits' parameter"):
        q(torch.randn(2, 3), bits=0)
    with pytest.raises(TypeError, match="'bits' parameter"):
        q.encode(torch.randn(2, 3), bits=2.0)
    with pytest.raises(ValueError, match="'mode' parameter"):
        BottleneckQuantizer(4, mode="minmx")
    with pytest.raises(ValueError, match="'z' parameter.*finite"):
        q(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="'z' parameter.*finite"):
        q.encode(torch.tensor([[0.0, float("inf")]]))
    with pytest.raises(ValueError, match="'z' parameter.*non-empty"):
        q.encode(torch.zeros(0, 3))
    with pytest.raises(TypeError, match="'z' parameter"):
        q(torch.ones(2, 3, dtype=torch.int64))
    blob = q.encode(torch.randn(1, 8)).to_bytes()
    with pytest.raises(ValueError, match="'blob' parameter"):
        Payload.from_bytes(blob[:-1])
    with pytest.raises(ValueError, match="'blob' parameter"):
        Payload.from_bytes(b"X" + blob[1:])
    with pytest.raises(ValueError, match="'blob' parameter"):
        Payload.from_bytes(blob[:5])
    p = BottleneckQuantizer(2, mode="torchdistill").encode(torch.randn(1, 4))
    with pytest.raises(ValueError, match="'payload' parameter"):
        q.decode(p)
    with pytest.raises(ValueError, match="'data' parameter"):
        unpack_bits(b"\x00", 9, 1)
    with pytest.raises(ValueError, match="'codes' parameter"):
        pack_bits(torch.tensor([4], dtype=torch.uint8), 2)
