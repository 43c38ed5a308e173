"""Export traced layers as a SCALE-Sim topology CSV, so users can cross-check with SCALE-Sim."""

from __future__ import annotations

from collections.abc import Sequence

from dnnkit.core.validation import Instance, Sequence_, param_error, validate_params
from dnnkit.systolic.layers import GemmLayer

__all__ = ["to_scalesim_topology"]

_CONV_HEADER = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
                "Num Filter, Strides,")
_GEMM_HEADER = "Layer, M, N, K,"


def _clean(name: str, i: int, depthwise: bool) -> str:
    name = (name or f"layer{i}").replace(",", "_").replace(" ", "_").replace("\n", "_")
    # SCALE-Sim treats every layer whose name contains "DP" as depthwise
    name = name.replace("DP", "Dp")
    return name + "_DP" if depthwise else name


def _conv_row(name: str, lay: GemmLayer, channels: int, filters: int) -> str:
    if (lay.k_h, lay.k_w) == (1, 1):
        # a 1x1 kernel: write the output grid with stride 1 (the same GEMM), batch folded in
        h, w, s = lay.out_h * lay.batch, lay.out_w, 1
    else:
        if lay.stride_h != lay.stride_w:
            raise ValueError(f"to_scalesim_topology: layer {lay.name!r} has strides "
                             f"({lay.stride_h}, {lay.stride_w}); SCALE-Sim's convolution format "
                             "has one stride. Use gemm=True.")
        if lay.batch != 1:
            raise ValueError(f"to_scalesim_topology: layer {lay.name!r} has batch {lay.batch}; "
                             "SCALE-Sim has no batch dimension for convolutions. Use gemm=True.")
        # effective extent: SCALE-Sim's ceil((H - R + s) / s) then equals floor((H - R) / s) + 1
        h = (lay.out_h - 1) * lay.stride_h + lay.k_h
        w = (lay.out_w - 1) * lay.stride_w + lay.k_w
        s = lay.stride_h
    return f"{name}, {h}, {w}, {lay.k_h}, {lay.k_w}, {channels}, {filters}, {s},"


@validate_params({"layers": Sequence_(Instance(GemmLayer), min_len=0),
                  "per_group": Instance(bool), "gemm": Instance(bool)})
def to_scalesim_topology(layers: Sequence[GemmLayer], *, per_group: bool = True,
                         gemm: bool = False) -> str:
    """SCALE-Sim v3.0.0 topology CSV text for ``layers``.

    The input extent written is the effective one, ``(E - 1) * stride + k``, so that SCALE-Sim's
    ``ceil((H - R + s) / s)`` gives torch's output size (a 3x3/s2/pad-1 conv on 224 px is written
    as 225, not 226). 1x1 layers are written on their output grid with stride 1 (the same GEMM).

    Parameters
    ----------
    layers : sequence of GemmLayer
    per_group : bool
        ``True``: one row per layer describing ONE group (multiply SCALE-Sim's cycles by
        ``n_groups``; cheap to simulate). ``False``: the whole layer, with depthwise layers named
        ``*_DP`` (SCALE-Sim expands them into one single-channel layer per channel) and other
        grouped layers written as one row per group (``name_g0``, ``name_g1``, ...).
    gemm : bool
        Write SCALE-Sim's GEMM format (``Layer, M, N, K`` with ``M = Npx``, ``N`` filters,
        ``K`` window; load it with ``mnk_inputs=True``). Exact for any layer, including batched
        convolutions and unequal strides, which the convolution format cannot express.

    Returns
    -------
    str
        CSV text with a header line; SCALE-Sim needs the trailing comma on every row.

    Raises
    ------
    ValueError
        A batched or unequal-stride convolution in the convolution format (use ``gemm=True``).

    Examples
    --------
    >>> conv0 = GemmLayer("conv0", "conv", 225, 225, 3, 3, 3, 32, stride_h=2, stride_w=2)
    >>> print(to_scalesim_topology([conv0]).splitlines()[1])
    conv0, 225, 225, 3, 3, 3, 32, 2,
    """
    layers = list(layers)
    if not layers:
        raise ValueError("to_scalesim_topology: no GEMM layers found (the layer list is empty).")
    for lay in layers:
        if not isinstance(lay, GemmLayer):
            raise TypeError(param_error("layers", "to_scalesim_topology",
                                        "a sequence of GemmLayer", type(lay).__name__))
    rows = [_GEMM_HEADER if gemm else _CONV_HEADER]
    for i, lay in enumerate(layers):
        c, m = lay.in_ch_per_group, lay.out_ch_per_group
        if per_group or lay.n_groups == 1:
            name = _clean(lay.name, i, False)
            rows.append(f"{name}, {lay.npx}, {m}, {lay.window}," if gemm
                        else _conv_row(name, lay, c, m))
        elif lay.in_ch_per_group == 1 and not gemm:
            rows.append(_conv_row(_clean(lay.name, i, True), lay, lay.n_groups, m))
        else:
            base = _clean(lay.name, i, False)
            for j in range(lay.n_groups):
                rows.append(f"{base}_g{j}, {lay.npx}, {m}, {lay.window}," if gemm
                            else _conv_row(f"{base}_g{j}", lay, c, m))
    return "\n".join(rows) + "\n"
