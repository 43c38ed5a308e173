"""The offline latency model: a tiny profile, JSON round trip, set-up mismatch warnings."""

from __future__ import annotations

import logging
import math

import pytest

from dnnkit.deeppeep import LatencyModel, profile_latency_model

TINY = {"batch": 2, "channels": (8, 16, 32), "sizes": (8, 4), "samples_per_class": 4}


@pytest.fixture(scope="module")
def lm():
    return profile_latency_model(TINY, repeats=3, seed=0)


def test_tiny_profile(lm):
    assert lm.batch == 2 and lm.samples > 0 and lm.meta["num_threads"] == 1
    for op in ("conv1", "gconv1", "conv3", "dw3", "gconv3", "batch_norm", "relu", "hardtanh",
               "add", "cat"):
        assert op in lm.coef and all(math.isfinite(v) and v >= 0 for v in lm.coef[op])
    assert lm.predict("conv", k=3, cin=16, cout=16, groups=1, h=8, stride=1) > 0
    assert lm.predict("relu", numel=1000) > 0
    assert any(k.startswith("conv3/") for k in lm.kernels)


def test_round_trip(lm, tmp_path):
    p = tmp_path / "sub" / "lm.json"
    lm.save(p)
    back = LatencyModel.load(p)
    assert back.to_dict() == lm.to_dict()
    assert back.conv_us(1, 8, 16, 1, 8) == lm.conv_us(1, 8, 16, 1, 8)


def test_mismatch_warns(lm, caplog):
    other = dict(lm.meta, torch="0.0", num_threads=4)
    assert len(lm.compatible(other, batch=8)) == 3
    with caplog.at_level(logging.WARNING, logger="dnnkit"):
        lm.warn_if_incompatible(other, 8)
    assert "different set-up" in caplog.text
    assert lm.compatible(lm.meta, lm.batch) == []


def test_bad_grid():
    with pytest.raises(KeyError, match="channel"):
        profile_latency_model({"channel": (8,)})
    with pytest.raises(ValueError, match="repeats"):
        profile_latency_model(TINY, repeats=1)
