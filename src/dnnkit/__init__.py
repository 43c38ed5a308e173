"""dnnkit: fourteen deep-learning papers as tested, reusable PyTorch software.

Each paper lives in its own sub-package (``dnnkit.deep_taylor``, ``dnnkit.systolic``, ...);
shared pieces live in ``dnnkit.core``. Importing ``dnnkit`` imports nothing heavy; it sets the
telemetry opt-out switches (Flower, Ray, ...) before any sub-package can import those libraries
(see :mod:`dnnkit.core.telemetry`).
"""

from dnnkit.core.telemetry import disable_telemetry as _disable_telemetry

_disable_telemetry()

__version__ = "0.1.0"
