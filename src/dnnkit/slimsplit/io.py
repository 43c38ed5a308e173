"""Readers for measured mode tables and bandwidth traces (CSV), and the paper's mode table.

A mode table CSV has a header with the columns ``k, bits, accuracy, payload_bytes, encoder_ms``
(any order, extra columns ignored): e.g. a Raspberry Pi profile of a deployed model. A bandwidth
trace CSV has a column ``bytes_per_s`` (or ``Bps``), one row per frame (e.g. a throughput log).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from dnnkit.core.validation import PathArg, param_error, validate_params
from dnnkit.slimsplit.split import ModeStats

__all__ = ["read_mode_table", "read_bandwidth_trace", "paper_mode_table"]

_COLUMNS = ("k", "bits", "accuracy", "payload_bytes", "encoder_ms")

# Assine et al. 2023, authors' result files: COCO mAP (%) per (k, bits), RPi 4 encoder ms per k,
# payload 55 296 b / 8 bytes (6 x 96 x 96 tensor, no header)
_PAPER_MAP = {1: (14.5, 27.7, 32.0, 34.3), 2: (16.5, 29.4, 34.1, 36.1),
              3: (16.4, 29.4, 34.2, 36.4), 4: (16.6, 29.7, 34.6, 36.8)}
_PAPER_MS = {1: 66.0, 2: 134.0, 3: 202.0, 4: 265.0}


def paper_mode_table() -> dict[tuple[int, int], ModeStats]:
    """The paper's 16 modes: mAP / 100, payload ``55296 b / 8`` bytes, RPi 4 encoder ms."""
    return {(k, b): ModeStats(_PAPER_MAP[k][b - 1] / 100, 55296 * b // 8, _PAPER_MS[k])
            for k in range(1, 5) for b in range(1, 5)}


def _rows(path: Path, where: str) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(param_error("path", where, "a readable CSV file", f"{path} ({exc})")
                         ) from None


@validate_params({"path": PathArg(must_exist=True, kind="file")})
def read_mode_table(path: str | Path) -> dict[tuple[int, int], ModeStats]:
    """Read a mode table CSV into ``{(k, bits): ModeStats}`` (for :class:`ModeController`)."""
    where = "slimsplit.read_mode_table"
    rows = _rows(Path(path), where)
    if not rows:
        raise ValueError(param_error("path", where, "a CSV with at least one mode row", str(path)))
    missing = [c for c in _COLUMNS if c not in rows[0]]
    if missing:
        raise ValueError(param_error("path", where, f"a CSV with columns {list(_COLUMNS)}",
                                     f"missing {missing}"))
    table: dict[tuple[int, int], ModeStats] = {}
    for i, r in enumerate(rows, start=2):
        try:
            k, b = int(r["k"]), int(r["bits"])
            st = ModeStats(float(r["accuracy"]), int(r["payload_bytes"]), float(r["encoder_ms"]))
        except (TypeError, ValueError):
            raise ValueError(param_error("path", where, "numbers in every mode row",
                                         f"line {i}: {r}")) from None
        if not (k >= 1 and 1 <= b <= 8 and st.payload_bytes > 0 and st.encoder_ms >= 0
                and math.isfinite(st.accuracy) and math.isfinite(st.encoder_ms)):
            raise ValueError(param_error("path", where, "k >= 1, bits in 1..8, positive bytes, "
                                         "finite accuracy and non-negative ms", f"line {i}: {r}"))
        if (k, b) in table:
            raise ValueError(param_error("path", where, "one row per mode",
                                         f"line {i}: mode {(k, b)} again"))
        table[(k, b)] = st
    return table


@validate_params({"path": PathArg(must_exist=True, kind="file")})
def read_bandwidth_trace(path: str | Path) -> np.ndarray:
    """Read a per-frame link rate (bytes / s) from the ``bytes_per_s`` or ``Bps`` column."""
    where = "slimsplit.read_bandwidth_trace"
    rows = _rows(Path(path), where)
    col = next((c for c in ("bytes_per_s", "Bps") if rows and c in rows[0]), None)
    if col is None:
        raise ValueError(param_error("path", where, "a non-empty CSV with a 'bytes_per_s' column",
                                     str(path)))
    try:
        bw = np.array([float(r[col]) for r in rows])
    except (TypeError, ValueError):
        raise ValueError(param_error("path", where, "numeric rates", str(path))) from None
    if not np.all(np.isfinite(bw)) or np.any(bw <= 0):
        raise ValueError(param_error("path", where, "positive finite rates",
                                     f"min {bw.min()}"))
    return bw
