"""Device resolution: ``"auto"`` picks CUDA when present, else CPU."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda" | "cuda:N" | torch.device | None`` into a ``torch.device``.

    Raises ``ValueError`` for an unknown string or a CUDA device that is not available.
    """
    if isinstance(device, torch.device):
        dev = device
    elif device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif isinstance(device, str):
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise ValueError(
                f"The 'device' parameter must be 'auto', 'cpu' or 'cuda[:N]'. Got {device!r} instead."
            ) from None
    else:
        raise TypeError(f"The 'device' parameter must be a str or torch.device. "
                        f"Got {type(device).__name__} instead.")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"Device {str(dev)!r} was requested but CUDA is not available here; "
                             "use 'cpu' or 'auto'.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"Device {str(dev)!r} does not exist: "
                             f"{torch.cuda.device_count()} CUDA device(s) visible.")
    return dev
