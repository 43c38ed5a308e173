"""No traffic leaves the machine: opt-out switches of libraries that phone home.

Flower reads ``FLWR_TELEMETRY_ENABLED`` and Ray ``RAY_USAGE_STATS_ENABLED`` when they are first
imported, so setting them inside a function that runs later is too late. ``import dnnkit`` calls
:func:`disable_telemetry` before any dnnkit module imports such a library. A switch the user set
explicitly is respected (``setdefault``). Modules that add a library with telemetry add its
switch here.
"""

from __future__ import annotations

import os

__all__ = ["disable_telemetry", "TELEMETRY_SWITCHES"]

TELEMETRY_SWITCHES: dict[str, str] = {
    "FLWR_TELEMETRY_ENABLED": "0",       # Flower (flwr.supercore.telemetry)
    "RAY_USAGE_STATS_ENABLED": "0",      # Ray usage statistics (Flower's simulation engine)
    "HF_HUB_DISABLE_TELEMETRY": "1",     # Hugging Face hub
    "DO_NOT_TRACK": "1",                 # the consoledonottrack.com convention (gradio, ...)
}


def disable_telemetry() -> None:
    """Set every telemetry opt-out switch that the user has not set."""
    for key, value in TELEMETRY_SWITCHES.items():
        os.environ.setdefault(key, value)
