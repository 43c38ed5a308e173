"""Shared fixtures and helpers: seeds, float64, markers, and oracle availability.

An oracle (independent library or its own venv) that is missing is a *skip* on a developer's
machine but a *failure* under CI (``CI=true``): the oracle tests must really run in CI.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(int(os.environ.get("DNNKIT_TEST_THREADS", "1")))
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def missing_oracle(what: str, why: str) -> None:
    """Skip locally, fail in CI."""
    msg = f"oracle {what} is not available: {why}. Run `make test` to install it."
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def need(module: str):
    """Import an oracle library or skip/fail (see :func:`missing_oracle`)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing_oracle(module, str(exc))


def oracle_python(venv: str) -> Path:
    """The python of an oracle venv created by the Makefile (``mk/*.mk``), e.g. '.venv-scalesim'."""
    py = ROOT / venv / "bin" / "python"
    if not py.is_file():
        missing_oracle(venv, f"{py} does not exist")
    return py


@pytest.fixture
def seed() -> int:
    return 0


@pytest.fixture
def float64():
    """Run a test in float64 (restores the default dtype afterwards)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield torch.float64
    finally:
        torch.set_default_dtype(old)
