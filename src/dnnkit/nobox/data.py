"""The paper's data protocol on real image folders (ImageNet validation layout); nothing downloaded.

ImageNet protocol of the official code: a random permutation of the first 500 class folders, 10
images per class (5000 images), consecutive classes form the two-class groups of 20 images;
images resized (shorter side 256), centre-cropped to 224 and scaled to [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dnnkit.core.seeding import make_rng
from dnnkit.core.validation import (
    Int,
    PathArg,
    Seed,
    check_memory,
    param_error,
    validate_params,
)

__all__ = ["load_image_folder"]

_EXT = {".jpeg", ".jpg", ".png", ".bmp", ".ppm", ".webp"}


@validate_params({"root": PathArg(must_exist=True, kind="dir"), "n_classes": Int(2, 100_000),
                  "per_class": Int(1, 100_000), "size": Int(8, 4096), "resize": Int(8, 8192),
                  "seed": Seed()})
def load_image_folder(root: str | Path, *, n_classes: int = 500, per_class: int = 10,
                      size: int = 224, resize: int = 256,
                      seed: int | None = 0) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Read ``root/<class>/<image>`` folders the way the paper samples ImageNet.

    The first ``n_classes`` class folders (sorted by name) are put in a seeded random order;
    ``per_class`` random images are drawn from each; each image is resized so its shorter side is
    ``resize`` (bilinear), centre-cropped to ``size`` x ``size`` and scaled to [0, 1] (RGB).
    Consecutive classes in the returned order are the paper's two-class groups, so
    ``nobox_attack(images, labels, group_size=2 * per_class)`` follows the protocol up to its own
    seeded pairing.

    Returns
    -------
    images : torch.Tensor
        ``(n_classes * per_class, 3, size, size)`` float32 in [0, 1].
    labels : torch.Tensor
        ``(N,)`` int64, the index of the class folder in sorted order.
    class_names : list of str
        Sorted class-folder names (``labels`` index into it).

    Raises
    ------
    ValueError
        Fewer class folders than ``n_classes``, a class with fewer than ``per_class`` images,
        ``size > resize``, or more than 8 GiB of pixels.
    """
    from PIL import Image

    where = "nobox.load_image_folder"
    if size > resize:
        raise ValueError(param_error("size", where, f"<= resize = {resize}", size))
    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(classes) < n_classes:
        raise ValueError(param_error("n_classes", where,
                                     f"at most the {len(classes)} class folders in {str(root)!r}",
                                     n_classes))
    check_memory(4.0 * n_classes * per_class * 3 * size * size, "n_classes", where)
    rng = make_rng(seed if not isinstance(seed, torch.Generator) else seed.initial_seed())
    order = rng.permutation(n_classes)
    images, labels = [], []
    for c in order:
        files = sorted(p for p in (root / classes[c]).iterdir()
                       if p.is_file() and p.suffix.lower() in _EXT)
        if len(files) < per_class:
            raise ValueError(param_error("per_class", where,
                                         f"at most the {len(files)} images of class "
                                         f"{classes[c]!r}", per_class))
        for i in np.sort(rng.choice(len(files), per_class, replace=False)):
            with Image.open(files[i]) as im:
                im = im.convert("RGB")
                w, h = im.size
                s = resize / min(w, h)
                im = im.resize((max(size, round(w * s)), max(size, round(h * s))),
                               Image.BILINEAR)
                w, h = im.size
                left, top = (w - size) // 2, (h - size) // 2
                im = im.crop((left, top, left + size, top + size))
                arr = np.asarray(im, dtype=np.float32) / 255.0
            images.append(torch.from_numpy(arr).permute(2, 0, 1).contiguous())
            labels.append(int(c))
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64), classes
