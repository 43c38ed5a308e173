"""An independent reading of a model's blocks from its torch.fx graph (the structural oracle).

Convolutions are read from ``call_module`` nodes in graph order; function nodes (add, cat,
transpose) and ReLU6 modules are attributed to the group of the top-level child they belong to
(found from the node's target path, or, for function nodes, the preceding module node).
"""

from __future__ import annotations

import operator

import torch
from torch import fx, nn


def fx_blocks(model: nn.Module, input_shape) -> list[dict]:
    gm = fx.symbolic_trace(model)
    mods = dict(gm.named_modules())
    # spatial sizes from a shape-propagating interpreter
    from torch.fx.passes.shape_prop import ShapeProp

    with torch.no_grad():
        ShapeProp(gm).propagate(torch.zeros(input_shape))
    groups: list[dict] = []
    cur = None
    n_conv = 0
    for node in gm.graph.nodes:
        if node.op == "call_module":
            top = node.target.split(".")[0]
            m = mods[node.target]
            if cur is None or cur["top"] != top:
                cur = {"top": top, "convs": [], "funcs": [], "relu6": False}
                groups.append(cur)
            if isinstance(m, nn.Conv2d):
                shp = node.meta["tensor_meta"].shape
                cur["convs"].append(dict(index=n_conv, k=m.kernel_size[0], cin=m.in_channels,
                                         cout=m.out_channels, g=m.groups, s=m.stride[0],
                                         h=shp[-1]))
                n_conv += 1
            if isinstance(m, nn.ReLU6):
                cur["relu6"] = True
        elif node.op in ("call_function", "call_method") and cur is not None:
            t = node.target
            name = t if isinstance(t, str) else getattr(t, "__name__", str(t))
            if t in (operator.add, torch.add) or name == "add":
                cur["funcs"].append("add")
            elif t is torch.cat or name == "cat":
                cur["funcs"].append("cat")
            elif name == "transpose":
                cur["funcs"].append("shuffle")
    out: list[dict] = []
    for grp in groups:
        convs = grp["convs"]
        if not convs:
            continue
        f = grp["funcs"]
        if "cat" in f:
            typ = "fire"
        elif "shuffle" in f:
            typ = "shuffle"
        elif grp["relu6"]:
            typ = "inverted_residual"
        else:
            typ = None
        if typ is not None:
            out.append(dict(type=typ, layers=tuple(c["index"] for c in convs),
                            cin=convs[0]["cin"],
                            cout=(convs[-2]["cout"] + convs[-1]["cout"] if typ == "fire"
                                  else convs[-1]["cout"]),
                            stride=max(c["s"] for c in convs), convs=convs))
            continue
        # plain convs (possibly a flat model): pair a grouped 3x3 with the next 1x1
        i = 0
        while i < len(convs):
            c = convs[i]
            nxt = convs[i + 1] if i + 1 < len(convs) else None
            out.append(None)
            if c["k"] == 3 and c["g"] > 1 and nxt is None:
                out.pop()  # a lone grouped conv at the end of a group: pair across groups later
                out.append(dict(type="?pair", layers=(c["index"],), cin=c["cin"],
                                cout=c["cout"], stride=c["s"], convs=[c]))
                i += 1
                continue
            if c["k"] == 3 and c["g"] > 1 and nxt["k"] == 1 and nxt["g"] == 1:
                typ = "dwsep" if c["g"] == c["cin"] == c["cout"] else "grouped"
                out[-1] = dict(type=typ, layers=(c["index"], nxt["index"]), cin=c["cin"],
                               cout=nxt["cout"], stride=c["s"], convs=[c, nxt])
                i += 2
                continue
            typ = "standard" if c["g"] == 1 else ("dwsep" if c["g"] == c["cin"] else "grouped")
            out[-1] = dict(type=typ, layers=(c["index"],), cin=c["cin"], cout=c["cout"],
                           stride=c["s"], convs=[c])
            i += 1
    # merge "?pair" (flat models: dw conv in one top-level child, pw conv in the next)
    merged: list[dict] = []
    i = 0
    while i < len(out):
        b = out[i]
        if b["type"] == "?pair":
            c = b["convs"][0]
            nx = out[i + 1] if i + 1 < len(out) else None
            if nx is not None and nx["type"] == "standard" and nx["convs"][0]["k"] == 1:
                typ = "dwsep" if c["g"] == c["cin"] == c["cout"] else "grouped"
                merged.append(dict(type=typ, layers=(c["index"], nx["layers"][0]), cin=c["cin"],
                                   cout=nx["cout"], stride=c["s"], convs=[c, nx["convs"][0]]))
                i += 2
                continue
            b["type"] = "dwsep" if c["g"] == c["cin"] == c["cout"] else "grouped"
        merged.append(b)
        i += 1
    return merged
