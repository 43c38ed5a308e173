"""Tracing torch models into GEMM layers: shapes, MACs, refusals, models left as found."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dnnkit.core.models import mobilenet_v1
from dnnkit.systolic import extract_layers
from dnnkit.systolic.layers import GemmLayer, regroup_layers


def torch_macs(model: nn.Module, shape) -> int:
    """MACs counted independently: weight elements x output positions of every call."""
    total = 0

    def hook(m, args, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += m.weight.numel() * out.shape[-1] * out.shape[-2] * (
                out.shape[0] if out.dim() == 4 else 1)
        else:
            total += m.weight.numel() * (args[0].numel() // m.in_features)

    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(shape))
    for h in hs:
        h.remove()
    return total


def test_mobilenet_v1_layers():
    net = mobilenet_v1()
    layers = extract_layers(net, (1, 3, 224, 224))
    assert [x.name for x in layers[:4]] == ["conv0", "dw1", "pw1", "dw2"]
    assert len(layers) == 28 and layers[-1].name == "fc" and layers[-1].kind == "fc"
    kinds = [x.kind for x in layers]
    assert kinds.count("depthwise") == 13 and kinds.count("pointwise") == 13
    assert layers[0].in_h == 225  # 3x3/s2/pad1 on 224 -> effective extent 225
    assert sum(x.macs for x in layers) == torch_macs(net, (1, 3, 224, 224)) == 568_740_352
    assert sum(x.params for x in layers) == sum(
        m.weight.numel() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


@settings(max_examples=40, deadline=None)
@given(st.integers(5, 16), st.integers(5, 16), st.integers(1, 4), st.integers(1, 4),
       st.integers(1, 3), st.integers(1, 3), st.integers(0, 2), st.integers(1, 3),
       st.sampled_from([1, 2, 4]), st.integers(1, 3))
def test_conv_shapes_match_torch(h, w, kh, kw, sh, sw, pad, mult, groups, batch):
    conv = nn.Conv2d(4, 4 * mult, (kh, kw), stride=(sh, sw), padding=pad, groups=groups)
    x = torch.zeros(batch, 4, h, w)
    out = conv(x)
    (lay,) = extract_layers(conv, x.shape)
    assert (lay.out_h, lay.out_w) == tuple(out.shape[-2:])
    assert lay.npx == out.shape[-1] * out.shape[-2] * batch
    assert lay.macs == conv.weight.numel() * out.shape[-1] * out.shape[-2] * batch
    assert lay.n_groups == groups and lay.in_ch_per_group == 4 // groups
    assert lay.kind == {1: "pointwise" if (kh, kw) == (1, 1) else "conv", 2: "group",
                        4: "depthwise"}[groups]


@pytest.mark.filterwarnings("ignore:Using padding=.same.")
def test_padding_same_and_unbatched_input():
    conv = nn.Conv2d(3, 5, (2, 4), padding="same")
    (lay,) = extract_layers(conv, (3, 9, 7))
    assert (lay.out_h, lay.out_w, lay.batch) == (9, 7, 1)


def test_linear_tokens_and_shared_module():
    lin = nn.Linear(6, 6)
    net = nn.Sequential()
    net.add_module("a", lin)
    net.add_module("act", nn.ReLU())
    net.add_module("b", lin)  # the same module called twice
    layers, unmodeled = extract_layers(net, (2, 5, 6), return_unmodeled=True)
    assert [x.name for x in layers] == ["a", "a#2"]
    assert layers[0].batch == 10 and layers[0].kind == "fc"
    assert unmodeled == ["act"]


def test_model_left_as_found():
    net = mobilenet_v1(width_mult=0.25, num_classes=10)
    net.train()
    net.dw1_bn.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    flags = [m.training for m in net.modules()]
    extract_layers(net, (4, 3, 32, 32))
    assert [m.training for m in net.modules()] == flags
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN stats untouched
    assert all(not m._forward_hooks and not m._forward_hooks_with_kwargs for m in net.modules())


def test_hooks_removed_when_forward_fails():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(10, 2))
    with pytest.raises(ValueError, match=r"shape \(1, 3, 8, 8\)"):
        extract_layers(net, (1, 3, 8, 8))
    assert all(not m._forward_hooks and not m._forward_hooks_with_kwargs for m in net.modules())


@pytest.mark.parametrize("module, shape, what", [
    (nn.Conv2d(2, 2, 3, dilation=2), (1, 2, 9, 9), "dilated"),
    (nn.ConvTranspose2d(2, 2, 3), (1, 2, 5, 5), "ConvTranspose2d"),
    (nn.Conv1d(2, 2, 3), (1, 2, 9), "Conv1d"),
    (nn.Conv3d(2, 2, 3), (1, 2, 5, 5, 5), "Conv3d"),
])
def test_refused_layers(module, shape, what):
    net = nn.Sequential(nn.Identity(), module)
    with pytest.raises(NotImplementedError) as info:
        extract_layers(net, shape)
    assert what in str(info.value) and "'1'" in str(info.value)


def test_strict_false_skips_with_warning():
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ConvTranspose2d(4, 4, 3), nn.Conv2d(4, 2, 1))
    with pytest.warns(UserWarning, match="layer '1'.*Skipped"):
        layers = extract_layers(net, (1, 2, 8, 8), strict=False)
    assert [x.name for x in layers] == ["0", "2"]


def test_attention_is_refused_not_silently_skipped():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            return self.fc(self.attn(x, x, x)[0])

    with pytest.raises(NotImplementedError, match="attn.*MultiheadAttention"):
        extract_layers(Block(), (1, 4, 8))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        layers = extract_layers(Block(), (1, 4, 8), strict=False)
    assert [x.name for x in layers] == ["fc"]


def test_unknown_matrix_leaf_is_refused():
    class Mystery(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(4, 4))

        def forward(self, x):
            return x @ self.w

    with pytest.raises(NotImplementedError, match="Mystery"):
        extract_layers(nn.Sequential(nn.Linear(4, 4), Mystery()), (2, 4))


def test_no_gemm_layers_and_bad_shapes():
    with pytest.raises(ValueError, match="no GEMM layers found"):
        extract_layers(nn.Sequential(nn.ReLU(), nn.BatchNorm2d(3)), (2, 3, 4, 4))
    with pytest.raises(ValueError, match="input_shape"):
        extract_layers(nn.Linear(2, 2), (0, 2))
    with pytest.raises(TypeError, match="input_shape"):
        extract_layers(nn.Linear(2, 2), "2x2")
    with pytest.raises(TypeError, match="nn.Module"):
        extract_layers(lambda x: x, (1, 2))
    with pytest.raises(ValueError, match="kernel is larger"):
        GemmLayer("k", "conv", 2, 5, 3, 3, 1, 1)


def test_example_tensor_and_float64(float64):
    net = nn.Sequential(nn.Conv2d(1, 2, 3))
    (lay,) = extract_layers(net, torch.randn(2, 1, 6, 6))
    assert lay.batch == 2 and net[0].weight.dtype == torch.float64


def test_regroup_layers_errors_and_clamp():
    dw = GemmLayer("dw", "depthwise", 6, 6, 3, 3, 1, 2, n_groups=12)  # channel multiplier 2
    pw = GemmLayer("pw", "pointwise", 4, 4, 1, 1, 12, 8)
    g3 = regroup_layers([dw, pw], 3)
    assert (g3[0].n_groups, g3[0].in_ch_per_group, g3[0].out_ch_per_group) == (4, 3, 6)
    assert g3[1] == pw
    full = regroup_layers([dw], 64)[0]  # clamped to the 12 channels: a full convolution
    assert (full.kind, full.n_groups, full.in_ch_per_group) == ("conv", 1, 12)
    with pytest.raises(ValueError) as info:
        regroup_layers([dw], 5)
    assert "does not divide the 12 input channels of layer 'dw'" in str(info.value)
    assert "[4, 6]" in str(info.value)
    with pytest.raises(KeyError, match="Did you mean 'dw'"):
        regroup_layers([dw, pw], {"dw1": 2})
    with pytest.raises(ValueError, match="pointwise"):
        regroup_layers([dw, pw], {"pw": 2})
    with pytest.raises(ValueError, match="group_size"):
        regroup_layers([dw], 0)
    assert regroup_layers([dw, pw], {"dw": 6})[0].n_groups == 2


def test_keyword_input_and_refused_parent_with_called_child():
    class Wrapper(nn.Conv1d):  # refused type whose forward calls a child Linear
        def __init__(self):
            super().__init__(2, 2, 1)
            self.inner = nn.Linear(3, 3)

        def forward(self, x):
            return self.inner(x)

    class KW(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3)
            self.w = Wrapper()

        def forward(self, x):
            y = self.conv(input=x)
            return self.w(y.flatten(2)[..., :3])

    with pytest.warns(UserWarning, match="'w'"):
        layers = extract_layers(KW(), (1, 2, 5, 5), strict=False)
    assert [x.name for x in layers] == ["conv"]  # w.inner belongs to the skipped module
    assert layers[0].out_h == 3
