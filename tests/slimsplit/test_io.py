"""CSV readers of mode tables and bandwidth traces, and the paper's table."""

from __future__ import annotations

import numpy as np
import pytest

from dnnkit.slimsplit import (
    ModeController,
    ModeStats,
    paper_mode_table,
    read_bandwidth_trace,
    read_mode_table,
)


def test_read_mode_table_roundtrip(tmp_path):
    p = tmp_path / "modes.csv"
    p.write_text("bits,k,accuracy,payload_bytes,encoder_ms,note\n1,1,0.5,10,2.0,x\n"
                 "4,2,0.9,40,4.5,y\n")
    table = read_mode_table(p)
    assert table == {(1, 1): ModeStats(0.5, 10, 2.0), (2, 4): ModeStats(0.9, 40, 4.5)}
    assert ModeController(table).select(1e3, 100.0).mode == (2, 4)


@pytest.mark.parametrize("text,match", [
    ("k,bits,accuracy\n1,1,0.5\n", "columns"),
    ("k,bits,accuracy,payload_bytes,encoder_ms\n", "at least one"),
    ("k,bits,accuracy,payload_bytes,encoder_ms\n1,9,0.5,10,1\n", "bits in 1..8"),
    ("k,bits,accuracy,payload_bytes,encoder_ms\n1,1,x,10,1\n", "numbers"),
    ("k,bits,accuracy,payload_bytes,encoder_ms\n1,1,.5,10,1\n1,1,.6,10,1\n", "one row per mode"),
])
def test_read_mode_table_refuses_bad_files(tmp_path, text, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=f"'path' parameter.*{match}"):
        read_mode_table(p)


def test_read_bandwidth_trace(tmp_path):
    p = tmp_path / "bw.csv"
    p.write_text("t,bytes_per_s\n0,1000\n1,2500.5\n")
    assert np.array_equal(read_bandwidth_trace(p), [1000.0, 2500.5])
    p.write_text("t,bytes_per_s\n0,-1\n")
    with pytest.raises(ValueError, match="positive"):
        read_bandwidth_trace(p)
    with pytest.raises(ValueError, match="'path' parameter"):
        read_bandwidth_trace(tmp_path / "missing.csv")


def test_paper_table_sizes_and_controller():
    t = paper_mode_table()
    assert len(t) == 16 and t[(1, 1)].payload_bytes == 6912 and t[(4, 4)].payload_bytes == 27648
    c = ModeController(t, server_ms=60.0)
    assert c.select(161e3, 600.0).accuracy >= c.select(67e3, 600.0).accuracy
    hi, lo = c.select(161e3, 600.0), c.select(67e3, 600.0)
    assert hi.feasible and lo.feasible and hi.accuracy > lo.accuracy
    assert hi.predicted_ms < 0.8 * 600.0 and c.select(1e9, 600.0).mode == (4, 4)
