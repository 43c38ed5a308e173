"""Ground truth from the module structure, per-layer MACs, and the attack's scorer."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from dnnkit.core.hooks import eval_mode, registered_hooks
from dnnkit.core.validation import (
    Instance,
    Int,
    Options,
    Real,
    Sequence_,
    Str,
    param_error,
    validate_params,
)

from .zoo import BLOCK_TYPES, DepthwiseSeparable, Fire, InvertedResidual, ShuffleUnit

__all__ = ["BlockGuess", "LayerInfo", "layer_table", "ground_truth_blocks", "score",
           "layer_kind", "SUPPORTED_LEAVES"]

#: leaf modules ground_truth_blocks understands (anything else with its own forward is refused)
SUPPORTED_LEAVES = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Hardtanh,
                    nn.Identity, nn.Dropout, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                    nn.Flatten, nn.ChannelShuffle)
_BLOCKS = (DepthwiseSeparable, InvertedResidual, Fire, ShuffleUnit)


@validate_params({"block_type": Options(*BLOCK_TYPES, "unknown"), "params": Instance(dict),
                  "confidence": Real(0.0, 1.0),
                  "layers": Sequence_(Int(0, 1 << 20), min_len=0),
                  "layer_kinds": Sequence_(Str(), min_len=0), "path": Str(allow_empty=True)},
                 where="deeppeep.BlockGuess")
@dataclass
class BlockGuess:
    """One building block: its type, hyper-parameters and how sure the attack is.

    ``layers`` are the execution-order indices of the block's convolutions (0 = first conv of the
    model), ``layer_kinds`` one of ``pw`` (1x1), ``gpw`` (grouped 1x1), ``std3``, ``dw3``
    (depthwise 3x3) or ``g3`` (grouped 3x3) per conv, ``path`` the module path (ground truth).
    ``params`` hold ``in_channels``, ``out_channels``, ``stride`` and the type's own
    hyper-parameters (``kernel_size``; ``groups``; ``expansion``; ``squeeze``, ``expand1``,
    ``expand3``).
    """

    block_type: str
    params: dict = field(default_factory=dict)
    confidence: float = 1.0
    layers: tuple[int, ...] = ()
    layer_kinds: tuple[str, ...] = ()
    path: str = ""


@dataclass
class LayerInfo:
    """A conv or linear layer as executed: shapes, MACs (multiply-accumulates) and kind."""

    index: int
    path: str
    op: str
    kernel_size: int
    stride: int
    groups: int
    in_channels: int
    out_channels: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    batch: int
    macs: int
    kind: str


def layer_kind(k: int, cin: int, cout: int, groups: int) -> str:
    """``pw`` / ``gpw`` / ``std3`` / ``dw3`` / ``g3`` (``std{k}`` for other kernel sizes)."""
    if k == 1:
        return "pw" if groups == 1 else "gpw"
    if groups == 1:
        return "std3" if k == 3 else f"std{k}"
    return "dw3" if groups == cin == cout else "g3"


def _check_shape(model: nn.Module, input_shape, where: str) -> torch.Tensor:
    p = next(iter(model.parameters()), None)
    dev = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    return torch.zeros(tuple(int(s) for s in input_shape), device=dev, dtype=dtype)


@validate_params({"model": Instance(nn.Module),
                  "input_shape": Sequence_(Int(1, 1 << 16), min_len=2, max_len=5)},
                 where="deeppeep.layer_table")
def layer_table(model: nn.Module, input_shape: Sequence[int]) -> list[LayerInfo]:
    """Every ``nn.Conv2d`` / ``nn.Linear`` call of one forward pass, in execution order.

    MACs: ``B * H_out * W_out * C_out * (C_in / groups) * k_h * k_w`` for a convolution and
    ``rows * in_features * out_features`` for a linear layer (bias additions not counted).
    """
    where = "deeppeep.layer_table"
    x = _check_shape(model, input_shape, where)
    names = {m: n for n, m in model.named_modules()}
    rows: list[LayerInfo] = []

    def hook(m, inp, out):
        i = inp[0]
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            macs = out.numel() * (m.in_channels // m.groups) * k
            rows.append(LayerInfo(len(rows), names[m], "conv", m.kernel_size[0], m.stride[0],
                                  m.groups, m.in_channels, m.out_channels,
                                  tuple(i.shape[-2:]), tuple(out.shape[-2:]), i.shape[0],
                                  int(macs), layer_kind(m.kernel_size[0], m.in_channels,
                                                        m.out_channels, m.groups)))
        else:
            macs = i.numel() // m.in_features * m.in_features * m.out_features
            rows.append(LayerInfo(len(rows), names[m], "linear", 1, 1, 1, m.in_features,
                                  m.out_features, (1, 1), (1, 1), i.shape[0], int(macs),
                                  "linear"))

    with registered_hooks() as hs, torch.no_grad(), eval_mode(model):
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                hs.append(m.register_forward_hook(hook))
        try:
            model(x)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise ValueError(param_error("input_shape", where, "consistent with the model",
                                         tuple(input_shape)) + f" The forward pass failed: {exc}"
                             ) from None
    return rows


def _flatten(module: nn.Module, path: str, out: list, where: str) -> None:
    if isinstance(module, _BLOCKS):
        out.append((path, module))
    elif isinstance(module, nn.Sequential):  # includes ConvBNAct
        for name, child in module.named_children():
            _flatten(child, f"{path}.{name}" if path else name, out, where)
    elif isinstance(module, SUPPORTED_LEAVES):
        out.append((path, module))
    else:
        raise NotImplementedError(
            f"{where}: module '{path or '<root>'}' of type {type(module).__name__} is not "
            "supported (its forward may hold glue the structure does not show). Build the model "
            "from nn.Sequential, the leaves " + ", ".join(t.__name__ for t in SUPPORTED_LEAVES)
            + " and the blocks " + ", ".join(t.__name__ for t in _BLOCKS) + ".")


@validate_params({"model": Instance(nn.Module),
                  "input_shape": Sequence_(Int(1, 1 << 16), min_len=2, max_len=5)},
                 where="deeppeep.ground_truth_blocks")
def ground_truth_blocks(model: nn.Module, input_shape: Sequence[int]) -> list[BlockGuess]:
    """The building blocks of ``model`` read from its module structure (confidence 1).

    Block modules (:class:`DepthwiseSeparable`, :class:`InvertedResidual`, :class:`Fire`,
    :class:`ShuffleUnit`) give their own type; runs of plain layers are grouped by the grammar of
    the paper's building blocks: a 3x3 conv with ``groups > 1`` followed by a 1x1 conv is a
    depthwise-separable (``groups == C``) or grouped block, any other conv a ``standard`` block.
    Linear layers (the classifier) are not blocks.

    Raises
    ------
    NotImplementedError
        A module type whose forward cannot be read from the structure (named with its path).
    ValueError
        ``input_shape`` inconsistent with the model.
    """
    where = "deeppeep.ground_truth_blocks"
    items: list = []
    _flatten(model, "", items, where)
    table = layer_table(model, input_shape)
    by_path = {r.path: r for r in table}
    blocks: list[BlockGuess] = []

    def convs_under(path: str) -> list[LayerInfo]:
        return [r for r in table if r.op == "conv" and (r.path.startswith(path + "."))]

    i = 0
    while i < len(items):
        path, m = items[i]
        if isinstance(m, _BLOCKS):
            rs = convs_under(path)
            first, last = rs[0], rs[-1]
            p = {"in_channels": first.in_channels, "stride": max(r.stride for r in rs)}
            if isinstance(m, DepthwiseSeparable):
                kind = "dwsep" if rs[0].kind == "dw3" else (
                    "grouped" if rs[0].kind == "g3" else "standard")
                if kind == "grouped":
                    p["groups"] = rs[0].groups
                p["out_channels"] = last.out_channels
            elif isinstance(m, InvertedResidual):
                kind = "inverted_residual"
                p.update(out_channels=last.out_channels, expansion=m.expansion,
                         residual=bool(m.residual))
            elif isinstance(m, Fire):
                kind = "fire"
                p.update(out_channels=rs[1].out_channels + rs[2].out_channels,
                         squeeze=rs[0].out_channels, expand1=rs[1].out_channels,
                         expand3=rs[2].out_channels)
            else:
                kind = "shuffle"
                p.update(out_channels=last.out_channels, groups=m.groups)
            blocks.append(BlockGuess(kind, p, 1.0, tuple(r.index for r in rs),
                                     tuple(r.kind for r in rs), path))
            i += 1
            continue
        if isinstance(m, nn.Conv2d):
            r = by_path[path]
            nxt = None
            j = i + 1
            while j < len(items) and isinstance(items[j][1], (nn.BatchNorm2d, nn.ReLU, nn.ReLU6,
                                                              nn.Hardtanh, nn.Identity,
                                                              nn.Dropout)):
                j += 1
            if j < len(items) and isinstance(items[j][1], nn.Conv2d):
                nxt = by_path[items[j][0]]
            if r.kind in ("dw3", "g3") and nxt is not None and nxt.kind == "pw":
                kind = "dwsep" if r.kind == "dw3" else "grouped"
                p = {"in_channels": r.in_channels, "out_channels": nxt.out_channels,
                     "stride": r.stride}
                if kind == "grouped":
                    p["groups"] = r.groups
                blocks.append(BlockGuess(kind, p, 1.0, (r.index, nxt.index), (r.kind, nxt.kind),
                                         path.rsplit(".", 1)[0] if "." in path else path))
                i = j + 1
                continue
            kind = {"dw3": "dwsep", "g3": "grouped"}.get(r.kind, "standard")
            p = {"in_channels": r.in_channels, "out_channels": r.out_channels,
                 "stride": r.stride}
            if kind == "standard":
                p["kernel_size"] = r.kernel_size
            if kind == "grouped":
                p["groups"] = r.groups
            parent = path.rsplit(".", 1)[0] if "." in path else path
            blocks.append(BlockGuess(kind, p, 1.0, (r.index,), (r.kind,), parent))
        i += 1
    return blocks


_PARAM_KEYS = ("in_channels", "out_channels", "stride", "kernel_size", "groups", "expansion",
               "squeeze")


@validate_params({"guess": Sequence_(Instance(BlockGuess), min_len=0),
                  "truth": Sequence_(Instance(BlockGuess), min_len=0)}, where="deeppeep.score")
def score(guess: Sequence[BlockGuess], truth: Sequence[BlockGuess]) -> dict[str, float]:
    """Score an attack against the ground truth.

    Blocks are matched by the convolutions they cover (``layers``). Returns

    * ``block_type_acc``: truth blocks whose layers form one guessed block of the same type;
    * ``exact_<param>``: among those, exact matches of each hyper-parameter (NaN if none);
    * ``channel_exact``, ``channel_within_2x``, ``channel_mean_abs_log2``: output channels of
      the layer-matched blocks (any type);
    * ``conv3_kind_acc`` (depthwise / grouped / standard for every 3x3 conv) and
      ``dw_vs_std_acc`` (the same restricted to depthwise and standard 3x3 convs).
    """
    by_layers = {tuple(g.layers): g for g in guess}
    kind_of: dict[int, str] = {}
    for g in guess:
        for li, k in zip(g.layers, g.layer_kinds):
            kind_of[li] = k
    n_type = 0
    exact: dict[str, list[bool]] = {k: [] for k in _PARAM_KEYS}
    ch: list[float] = []
    for t in truth:
        g = by_layers.get(tuple(t.layers))
        if g is None:
            continue
        if "out_channels" in g.params and "out_channels" in t.params:
            ch.append(math.log2(max(g.params["out_channels"], 1) / t.params["out_channels"]))
        if g.block_type != t.block_type:
            continue
        n_type += 1
        for k in _PARAM_KEYS:
            if k in t.params:
                exact[k].append(g.params.get(k) == t.params[k])
    k3 = [(li, k) for t in truth for li, k in zip(t.layers, t.layer_kinds)
          if k in ("std3", "dw3", "g3")]
    dws = [(li, k) for li, k in k3 if k in ("std3", "dw3")]

    def frac(xs):
        return float(sum(xs) / len(xs)) if xs else float("nan")

    out = {"n_blocks": float(len(truth)),
           "block_type_acc": n_type / len(truth) if truth else float("nan"),
           "channel_exact": frac([abs(c) < 1e-9 for c in ch]),
           "channel_within_2x": frac([abs(c) <= 1 + 1e-9 for c in ch]),
           "channel_mean_abs_log2": frac([abs(c) for c in ch]),
           "conv3_kind_acc": frac([kind_of.get(li) == k for li, k in k3]),
           "dw_vs_std_acc": frac([kind_of.get(li) == k for li, k in dws])}
    for k, v in exact.items():
        out[f"exact_{k}"] = frac(v)
    return out
