"""NetLLM: adapting a pre-trained language model to networking tasks.

D. Wu, X. Wang, Y. Qiao, Z. Wang, J. Jiang, S. Cui, F. Wang, "NetLLM: Adapting Large Language
Models for Networking", ACM SIGCOMM 2024 (arXiv:2402.02338).

Independent, typed parts: feature encoders and a :class:`MultimodalEncoder` that turn task
inputs into token embeddings, any transformers backbone that accepts ``inputs_embeds``
(:func:`load_backbone`, offline only) with peft LoRA (:func:`add_lora`), a
:class:`NetworkingHead` that answers in one pass and always validly, and offline RL as
return-conditioned sequence modelling (:class:`ExperiencePool`,
:class:`ReturnConditionedDataset`, :class:`NetLLMPolicy`, :func:`train_offline_rl`). Substrates:
an ABR simulator with Pensieve/Genet semantics and its baselines, and viewport prediction.

Example
-------
>>> import torch
>>> from dnnkit.netllm import (load_backbone, add_lora, MultimodalEncoder, MLPEncoder,
...                            NetworkingHead, NetLLMPolicy)
>>> backbone, d = load_backbone(None, config={"n_layer": 1, "n_embd": 32, "n_head": 2})
>>> backbone = add_lora(backbone, rank=4)
>>> enc = MultimodalEncoder({"state": MLPEncoder(21, 32)}, d, max_steps=64)
>>> policy = NetLLMPolicy(backbone, enc, NetworkingHead.categorical(d, 6), window=4).eval()
>>> a = policy.act({"state": torch.zeros(21)}, return_to_go=1.0, timestep=0)
>>> 0 <= a < 6
True
"""

from dnnkit.netllm.abr import (
    BBA,
    ABREnv,
    RandomPolicy,
    RateBased,
    RobustMPC,
    Trace,
    VideoSizes,
    evaluate_abr,
    linear_qoe,
    load_traces,
    synthetic_traces,
)
from dnnkit.netllm.backbone import OfflineError, add_lora, load_backbone
from dnnkit.netllm.model import (
    MLPEncoder,
    MultimodalEncoder,
    NetLLMPolicy,
    NetworkingHead,
    PrecomputedEmbedding,
    ScalarEncoder,
    SeriesConv1dEncoder,
)
from dnnkit.netllm.rl import (
    ExperiencePool,
    NetLLMAgent,
    ReturnConditionedDataset,
    Trajectory,
    discount_returns,
    train_offline_rl,
)
from dnnkit.netllm.textgen import TextAnswerPolicy, train_text_answers
from dnnkit.netllm.viewport import (
    LinearRegressionPredictor,
    NetLLMPredictor,
    VelocityPredictor,
    synthetic_viewports,
    train_supervised,
    viewport_mae,
    viewport_windows,
)

__all__ = [
    # parts of the adapted model
    "ScalarEncoder", "SeriesConv1dEncoder", "MLPEncoder", "PrecomputedEmbedding",
    "MultimodalEncoder", "NetworkingHead", "load_backbone", "add_lora", "OfflineError",
    # offline RL
    "Trajectory", "ExperiencePool", "discount_returns", "ReturnConditionedDataset",
    "NetLLMPolicy", "NetLLMAgent", "train_offline_rl",
    # ABR substrate
    "Trace", "VideoSizes", "synthetic_traces", "load_traces", "ABREnv", "BBA", "RobustMPC",
    "RateBased", "RandomPolicy", "evaluate_abr", "linear_qoe",
    # viewport prediction
    "synthetic_viewports", "viewport_windows", "viewport_mae", "VelocityPredictor",
    "LinearRegressionPredictor", "NetLLMPredictor", "train_supervised",
    # text-answer baseline
    "TextAnswerPolicy", "train_text_answers",
]
