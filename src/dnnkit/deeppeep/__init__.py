"""DeepPeep: recovering a compact CNN's building blocks from execution-time traces, and the
hardened design.

Jha, Mittal, Kumar, Mattela, "DeepPeep: Exploiting Design Ramifications to Decipher the
Architecture of Compact DNNs", arXiv:2007.15248 (2020). An adversary observing a victim's
inference (operator trace and per-operator latency) identifies its building blocks (stage 1) and
their hyper-parameters (stage 2); replacing depthwise convolutions by grouped ones of constant
group width removes the depthwise signature (our reading of "Secure MobileNet-V1").

Example
-------
>>> from dnnkit.deeppeep import (random_compact_cnn, capture_trace, identify_blocks,
...                              ground_truth_blocks, score)
>>> model = random_compact_cnn(seed=0, n_blocks=3)
>>> trace = capture_trace(model, (2, 3, 16, 16), repeats=3)        # level "kernel"
>>> guess = identify_blocks(trace)                                  # names + glue only
>>> score(guess, ground_truth_blocks(model, (2, 3, 16, 16)))["block_type_acc"] >= 0.0
True
"""

from dnnkit.deeppeep.attack import ATTACK_GRID, deeppeep, identify_blocks, infer_hyperparameters
from dnnkit.deeppeep.latency import DEFAULT_GRID, LatencyModel, profile_latency_model
from dnnkit.deeppeep.trace import Trace, TraceEvent, capture_trace
from dnnkit.deeppeep.truth import BlockGuess, ground_truth_blocks, layer_table, score
from dnnkit.deeppeep.zoo import harden_depthwise, random_compact_cnn, secure_mobilenet_v1

__all__ = ["capture_trace", "Trace", "TraceEvent", "profile_latency_model", "LatencyModel",
           "identify_blocks", "infer_hyperparameters", "deeppeep", "BlockGuess",
           "ground_truth_blocks", "layer_table", "score", "random_compact_cnn",
           "secure_mobilenet_v1", "harden_depthwise", "ATTACK_GRID", "DEFAULT_GRID"]
