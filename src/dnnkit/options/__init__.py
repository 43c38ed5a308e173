"""Supervised DNN surrogates for pricing and calibrating vanilla and exotic options.

Karatas, Oskoui, Hirsa (2019), "Supervised Deep Neural Networks (DNNs) for Pricing/Calibration of
Vanilla/Exotic Options Under Various Different Processes", arXiv:1902.05810.

Declare a model and a parameter box, label samples with a reference pricer, train an MLP, then use
it for fast batched pricing and for calibration. Prices are per unit strike (``C/K``); contracts
are rows ``[K/S, tau, r, q]``; features are ``[model parameters..., K/S, tau, r, q]``.

Public API
----------
price_european
    Reference European prices (BS closed form, Heston/VGSA COS, VG gamma mixture, Carr-Madan FFT).
generate_dataset
    Sample a parameter box and label it.
SurrogatePricer
    The MLP surrogate: ``fit``, ``price`` (box-checked), ``save`` / ``load`` (safetensors).
calibrate
    Box-constrained multi-start calibration through any differentiable pricer.
InverseCalibrator
    Inverse network from a price grid to parameters.
Box
    Named parameter/feature box with samplers.

Submodules: ``processes`` (characteristic functions, checks), ``pricers`` (COS, FFT, BS),
``exotics`` (barrier closed form, Monte Carlo barrier/Asian), ``surrogate`` (``evaluate``,
``sweep``), ``calibration`` (``Quotes`` in ``data``), ``data`` (``load_quotes_csv``).

Examples
--------
>>> import torch
>>> from dnnkit.options import generate_dataset, SurrogatePricer, price_european
>>> ds = generate_dataset("heston", 2000, seed=0, n_terms=128, L=12.0)
>>> train, val, test = ds.split()
>>> net = SurrogatePricer(ds.feature_box, depth=2, width=32, baseline="heston_bs")
>>> _ = net.fit(train, val, epochs=3)
>>> net(test.X[:4]).shape
torch.Size([4])
"""

from dnnkit.options.calibration import InverseCalibrator, calibrate
from dnnkit.options.data import Box, generate_dataset
from dnnkit.options.pricers import price_european
from dnnkit.options.surrogate import SurrogatePricer

__all__ = [
           "Box",
           "InverseCalibrator",
           "SurrogatePricer",
           "calibrate",
           "generate_dataset",
           "price_european",
]
