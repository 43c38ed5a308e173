"""dnnkit: fourteen deep-learning papers as tested, reusable PyTorch software.

Each paper lives in its own sub-package (``dnnkit.deep_taylor``, ``dnnkit.systolic``, ...);
shared pieces live in ``dnnkit.core``. Importing ``dnnkit`` imports nothing heavy.
"""

__version__ = "0.1.0"
