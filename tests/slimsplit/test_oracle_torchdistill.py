"""Oracle: ``BottleneckQuantizer(mode="torchdistill")`` vs torchdistill 1.1.5's quantize_tensor.

Install: ``pip install --no-deps torchdistill==1.1.5`` (its plain install may replace the CPU
torch). ``torchdistill.common.tensor_util`` imports only torch.
"""

from __future__ import annotations

import pytest
import torch

from dnnkit.slimsplit import BottleneckQuantizer, unpack_bits
from tests.conftest import need


def _inputs():
    g = torch.Generator().manual_seed(0)
    return [
        torch.randn(1, 6, 8, 8, generator=g),                 # mixed sign
        torch.rand(1, 1, 4, 4, generator=g) * 3,              # non-negative, min > 0
        -torch.rand(1, 2, 5, 5, generator=g) - 0.5,           # all negative
        torch.randn(1, 3, 7, 7, generator=g) * 100 + 20,      # large range
        torch.relu(torch.randn(1, 4, 6, 6, generator=g)),     # post-ReLU (min 0)
    ]


@pytest.mark.oracle
@pytest.mark.parametrize("bits", range(1, 9))
def test_identical_codes_scale_zero_point(bits):
    tu = need("torchdistill.common.tensor_util")
    q = BottleneckQuantizer(bits, mode="torchdistill")
    for z in _inputs():
        ref = tu.quantize_tensor(z, num_bits=bits)
        codes, scale, zp, offset = q.quantize(z, per_sample=False)
        assert torch.equal(codes, ref.tensor)
        assert torch.equal(scale.reshape(()), ref.scale)
        assert int(zp.reshape(())) == ref.zero_point and float(offset.reshape(())) == 0.0
        p = q.encode(z)
        assert torch.equal(unpack_bits(p.data, z.numel(), bits).reshape(z.shape), ref.tensor)
        assert p.scale == float(ref.scale) and p.zero_point == ref.zero_point
        deq = tu.dequantize_tensor(ref)
        assert torch.equal(q.decode(p), deq)
        assert torch.equal(q(z), deq)


@pytest.mark.oracle
def test_constant_tensor_where_torchdistill_divides_by_zero():
    tu = need("torchdistill.common.tensor_util")
    z = torch.full((1, 1, 4, 4), 1.5)
    with torch.no_grad():
        ref = tu.dequantize_tensor(tu.quantize_tensor(z, num_bits=4))
    assert not torch.equal(ref, z)  # torchdistill: scale 0 -> the constant is lost
    q = BottleneckQuantizer(4, mode="torchdistill")
    assert torch.equal(q.decode(q.encode(z)), z)
