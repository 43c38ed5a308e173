"""Readers for the paper's real datasets, for users who have the files (never downloaded here).

- :func:`load_dsprites_npz`: DeepMind's ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``
  (``imgs``, ``latents_classes``, ``latents_values``), read with ``allow_pickle=False``.
- :func:`load_utkface`: a UTKFace folder of ``age_gender_race_date*.jpg`` images, resized.

Both return a :class:`~dnnkit.shortcut.sources.FactorDataset` ready for
:func:`~dnnkit.shortcut.make_wcst_ml`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from dnnkit.core.validation import check_int, param_error
from dnnkit.shortcut.sources import FactorDataset

__all__ = ["DSPRITES_NPZ_FACTORS", "UTKFACE_ETHNICITIES", "load_dsprites_npz", "load_utkface"]

log = logging.getLogger("dnnkit")

DSPRITES_NPZ_FACTORS = ("color", "shape", "scale", "orientation", "pos_x", "pos_y")
_NPZ_SIZES = (1, 3, 6, 40, 32, 32)
_NPZ_KINDS = {"color": "categorical", "shape": "categorical", "scale": "ordinal",
              "orientation": "ordinal", "pos_x": "ordinal", "pos_y": "ordinal"}
UTKFACE_ETHNICITIES = ("white", "black", "asian", "indian", "others")
_UTK_NAME = re.compile(r"^(\d+)_(\d+)_(\d+)_\d+.*\.jpe?g$", re.IGNORECASE)


def load_dsprites_npz(path: str | Path) -> FactorDataset:
    """Read the real dSprites ``.npz`` into a :class:`FactorDataset` (images (N, 1, 64, 64) uint8).

    Factors: color (1 value: white; not usable as a cue), shape, scale, orientation, pos_x,
    pos_y with the file's latent sizes (1, 3, 6, 40, 32, 32). Pixels are {0, 1}
    (``pixel_scale = 1``). The file is read with ``allow_pickle=False``; its pickled
    ``metadata`` entry is never touched.

    Raises
    ------
    FileNotFoundError
        Missing file.
    ValueError
        Missing arrays or shapes that do not match the dSprites layout.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dSprites file {str(path)!r} does not exist.")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ("imgs", "latents_classes") if k not in z.files]
        if missing:
            raise ValueError(f"{str(path)!r} is not a dSprites .npz: missing arrays {missing} "
                             f"(found {z.files}).")
        imgs = z["imgs"]
        classes = z["latents_classes"]
        values = z["latents_values"] if "latents_values" in z.files else None
    if imgs.ndim != 3 or classes.ndim != 2 or classes.shape != (imgs.shape[0], 6):
        raise ValueError(f"{str(path)!r}: expected imgs (N, H, W) and latents_classes (N, 6); got "
                         f"{imgs.shape} and {classes.shape}.")
    if not np.issubdtype(classes.dtype, np.integer):
        raise ValueError(f"{str(path)!r}: latents_classes must be integers, got {classes.dtype}.")
    sizes = tuple(max(int(s), int(m) + 1) for s, m in zip(_NPZ_SIZES, classes.max(0)))
    labels = None
    if values is not None and values.shape == classes.shape:
        labels = {}
        for j, name in enumerate(DSPRITES_NPZ_FACTORS):
            v = np.full(sizes[j], np.nan)
            v[classes[:, j]] = values[:, j]
            labels[name] = [f"{x:.4g}" for x in v]
    is_binary = imgs.size == 0 or int(imgs.max()) <= 1
    return FactorDataset(imgs, classes.astype(np.int64), DSPRITES_NPZ_FACTORS, kinds=_NPZ_KINDS,
                         sizes=sizes, value_labels=labels,
                         pixel_scale=1.0 if is_binary else 1.0 / 255.0)


def load_utkface(folder: str | Path, *, size: int = 64, max_images: int | None = None
                 ) -> FactorDataset:
    """Read a UTKFace folder (``age_gender_race_date*.jpg``) into a :class:`FactorDataset`.

    Images are converted to RGB and resized to ``size`` x ``size`` (uint8, (N, 3, size, size)).
    Factors: ``age`` (ordinal, value index = age in years), ``gender`` (0 male, 1 female) and
    ``ethnicity`` (:data:`UTKFACE_ETHNICITIES`). Files whose names do not follow the pattern
    (a few in the public release) are skipped and counted in the log.

    Raises
    ------
    FileNotFoundError
        Missing folder.
    ValueError
        No parsable image in the folder.
    """
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"UTKFace folder {str(folder)!r} does not exist.")
    check_int(size, "size", 8, 1024, where="load_utkface")
    if max_images is not None:
        check_int(max_images, "max_images", 1, where="load_utkface")
    rows, images, skipped = [], [], 0
    for p in sorted(folder.iterdir()):
        m = _UTK_NAME.match(p.name)
        if not p.is_file() or m is None:
            skipped += p.is_file()
            continue
        age, gender, eth = (int(g) for g in m.groups())
        if gender > 1 or eth >= len(UTKFACE_ETHNICITIES):
            skipped += 1
            continue
        with Image.open(p) as im:
            arr = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR))
        images.append(arr.transpose(2, 0, 1))
        rows.append((age, gender, eth))
        if max_images is not None and len(rows) >= max_images:
            break
    if skipped:
        log.info("load_utkface: skipped %d files whose names are not age_gender_race_date",
                 skipped)
    if not rows:
        raise ValueError(param_error("folder", "load_utkface", "a folder with "
                                     "age_gender_race_date*.jpg images", str(folder)))
    fac = np.asarray(rows, dtype=np.int64)
    sizes = (int(fac[:, 0].max()) + 1, 2, len(UTKFACE_ETHNICITIES))
    return FactorDataset(np.stack(images).astype(np.uint8), fac, ("age", "gender", "ethnicity"),
                         kinds={"age": "ordinal", "gender": "categorical",
                                "ethnicity": "categorical"}, sizes=sizes,
                         value_labels={"gender": ["male", "female"],
                                       "ethnicity": list(UTKFACE_ETHNICITIES)})
