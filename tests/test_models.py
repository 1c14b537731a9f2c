"""Hub compatibility of the LLaDA and Dream classes: loading the published formats without remote code,
saving the same names back, bidirectional attention, padding, dtypes and gradient checkpointing."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

from nap_hf import (
    DreamConfig,
    DreamModel,
    DreamTokenizer,
    LLaDAConfig,
    LLaDAModelLM,
    enable_diffusion_generate,
)
from nap_hf.alignment import align_predictions

from .conftest import random_prompt


def _keys(path):
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        return set(f.keys())


@pytest.mark.parametrize("which,cls", [("llada", LLaDAModelLM), ("dream", DreamModel)])
def test_auto_classes_load_hub_format_without_missing_keys(which, cls, llada_dir, dream_dir):
    path = llada_dir if which == "llada" else dream_dir
    config = AutoConfig.from_pretrained(path)  # config.json carries `auto_map`: local classes must win
    assert type(config).__module__.startswith("nap_hf.")
    for auto in (AutoModel, cls):
        model, info = auto.from_pretrained(path, output_loading_info=True)
        assert isinstance(model, cls)
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    if which == "llada":
        assert isinstance(AutoModelForCausalLM.from_pretrained(path), LLaDAModelLM)


@pytest.mark.parametrize("which", ["llada", "dream"])
def test_save_pretrained_writes_published_names(which, llada_dir, dream_dir, tmp_path):
    path = llada_dir if which == "llada" else dream_dir
    model = AutoModel.from_pretrained(path)
    model.save_pretrained(tmp_path)
    assert _keys(tmp_path) == _keys(path)
    saved = json.loads((tmp_path / "config.json").read_text())
    published = json.loads((path / "config.json").read_text())
    # the fields the original remote code reads are written back under their published names
    for field in (
        (
            "d_model",
            "n_heads",
            "n_layers",
            "mlp_hidden_size",
            "rope_theta",
            "mask_token_id",
            "vocab_size",
            "embedding_size",
        )
        if which == "llada"
        else (
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "rope_theta",
            "mask_token_id",
            "vocab_size",
            "tie_word_embeddings",
        )
    ):
        assert saved[field] == published[field], field
    reloaded = AutoModel.from_pretrained(tmp_path)
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), reloaded.state_dict().items(), strict=True):
        assert k1 == k2 and torch.equal(v1, v2)


def test_llada_keys_are_exactly_the_published_layout(llada_dir):
    n_layers = json.loads((llada_dir / "config.json").read_text())["n_layers"]
    per_layer = [
        "attn_norm",
        "ff_norm",
        "q_proj",
        "k_proj",
        "v_proj",
        "attn_out",
        "ff_proj",
        "up_proj",
        "ff_out",
    ]
    expected = {f"model.transformer.blocks.{i}.{n}.weight" for i in range(n_layers) for n in per_layer}
    expected |= {
        "model.transformer.wte.weight",
        "model.transformer.ln_f.weight",
        "model.transformer.ff_out.weight",
    }
    assert _keys(llada_dir) == expected


def test_dream_tokenizer_loads_without_remote_code(dream_dir):
    cfg = json.loads((dream_dir / "tokenizer_config.json").read_text())
    assert cfg["tokenizer_class"] == "DreamTokenizer" and "auto_map" in cfg
    tok = AutoTokenizer.from_pretrained(dream_dir)  # no trust_remote_code
    assert isinstance(tok, DreamTokenizer)
    assert tok.mask_token == "<|mask|>"
    assert tok.mask_token_id == json.loads((dream_dir / "config.json").read_text())["mask_token_id"]
    text = "Ann has 12 apples."
    assert tok.decode(tok(text)["input_ids"]) == text
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt.endswith("<|im_start|>assistant\n")


def test_llada_tokenizer_mask_and_chat_template(llada_dir):
    tok = AutoTokenizer.from_pretrained(llada_dir)
    assert tok.mask_token_id == json.loads((llada_dir / "config.json").read_text())["mask_token_id"]
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt.startswith("<|startoftext|><|start_header_id|>user") and prompt.endswith(
        "assistant<|end_header_id|>\n\n"
    )


def _reference_llada_logits(model: LLaDAModelLM, ids: torch.LongTensor) -> torch.Tensor:
    """LLaDA's forward written out by hand from the spec (float64, no transformers pieces)."""
    c = model.config
    sd = {k: v for k, v in model.state_dict().items()}
    t = "model.transformer."

    def rms(x, w):
        return w * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + c.rms_norm_eps)

    L, hd = ids.shape[1], c.d_model // c.n_heads
    pos = torch.arange(L, dtype=torch.float64)
    inv = 1.0 / (c.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    ang = torch.cat([pos[:, None] * inv, pos[:, None] * inv], -1)
    cos, sin = ang.cos(), ang.sin()

    def rope(x):  # (H, L, hd)
        x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    h = sd[t + "wte.weight"][ids[0]]
    for i in range(c.n_layers):
        b = f"{t}blocks.{i}."
        a = rms(h, sd[b + "attn_norm.weight"])
        q = (a @ sd[b + "q_proj.weight"].T).view(L, c.n_heads, hd).transpose(0, 1)
        k = (a @ sd[b + "k_proj.weight"].T).view(L, c.n_heads, hd).transpose(0, 1)
        v = (a @ sd[b + "v_proj.weight"].T).view(L, c.n_heads, hd).transpose(0, 1)
        w = torch.softmax(
            rope(q) @ rope(k).transpose(1, 2) / math.sqrt(hd), -1
        )  # bidirectional: no causal mask
        h = h + (w @ v).transpose(0, 1).reshape(L, -1) @ sd[b + "attn_out.weight"].T
        f = rms(h, sd[b + "ff_norm.weight"])
        up = torch.nn.functional.silu(f @ sd[b + "ff_proj.weight"].T) * (f @ sd[b + "up_proj.weight"].T)
        h = h + up @ sd[b + "ff_out.weight"].T
    return rms(h, sd[t + "ln_f.weight"]) @ sd[t + "ff_out.weight"].T


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_llada_forward_matches_hand_written_reference(llada_dir, attn):
    model = LLaDAModelLM.from_pretrained(llada_dir, dtype=torch.float64, attn_implementation=attn).eval()
    ids = random_prompt(model, 12, seed=1)
    ids[0, 5] = model.config.mask_token_id
    with torch.no_grad():
        got = model(ids).logits[0]
    # both kernels run in float64 (eager is the project's own kernel: nap_hf.models.attention.eager_attention)
    torch.testing.assert_close(got, _reference_llada_logits(model, ids), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_attention_is_bidirectional(model64, attn):
    model64.config._attn_implementation = attn
    try:
        ids = random_prompt(model64, 10, seed=2)
        other = ids.clone()
        other[0, -1] = (other[0, -1] + 1) % 200 + 3
        with torch.no_grad():
            a, b = model64(ids).logits, model64(other).logits
        assert not torch.allclose(a[0, 0], b[0, 0])  # position 0 sees the last token
    finally:
        model64.config._attn_implementation = "sdpa"


def test_dream_forward_returns_raw_logits_and_alignment_shifts_once(dream64):
    ids = random_prompt(dream64, 8, seed=3)
    with torch.no_grad():
        raw = dream64(ids).logits
        hidden = dream64.model(input_ids=ids).last_hidden_state
    torch.testing.assert_close(raw, dream64.lm_head(hidden))  # forward does not shift
    aligned = align_predictions(raw, shift=True)
    torch.testing.assert_close(aligned[:, 1:], raw[:, :-1])
    torch.testing.assert_close(aligned[:, 0], raw[:, 0])
    assert align_predictions(raw, shift=False) is raw


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_left_padding_gives_the_unpadded_result(model64, attn):
    model64.config._attn_implementation = attn
    try:
        ids = random_prompt(model64, 7, seed=4)
        pad = model64.config.pad_token_id
        padded = torch.cat([torch.full((1, 3), pad), ids], 1)
        mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 7, dtype=torch.long)], 1)
        with torch.no_grad():
            ref = model64(ids).logits
            got = model64(padded, attention_mask=mask).logits[:, 3:]
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-9)
    finally:
        model64.config._attn_implementation = "sdpa"


@pytest.mark.parametrize("which", ["llada", "dream"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_dtypes_load_and_run(which, dtype, llada_dir, dream_dir):
    path = llada_dir if which == "llada" else dream_dir
    model = AutoModel.from_pretrained(path, dtype=dtype).eval()
    assert next(model.parameters()).dtype == dtype
    ids = random_prompt(model, 6)
    out = model.generate(ids, steps=4, gen_length=4, return_dict_in_generate=True)
    assert out.sequences.shape == (1, 10) and not (out.sequences == model.config.mask_token_id).any()


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("which", ["llada", "dream"])
def test_gradient_checkpointing_gives_the_same_gradients(which, llada_dir, dream_dir):
    path = llada_dir if which == "llada" else dream_dir
    ids = random_prompt(AutoModel.from_pretrained(path), 9, seed=5)
    grads = []
    for checkpointing in (False, True):
        model = AutoModel.from_pretrained(path, dtype=torch.float64).train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            layers = [
                m
                for m in model.modules()
                if hasattr(m, "gradient_checkpointing") and hasattr(m, "_gradient_checkpointing_func")
            ]
            assert layers and all(m.gradient_checkpointing for m in layers)
        model(ids).logits.pow(2).mean().backward()
        grads.append(model.get_input_embeddings().weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="block_type"):
        LLaDAConfig(block_type="olmo")
    with pytest.raises(ValueError, match="n_heads"):
        LLaDAConfig(d_model=30, n_heads=4)
    assert DreamConfig(rope_theta=1234.0).rope_parameters["rope_theta"] == 1234.0


def test_enable_diffusion_generate_on_a_foreign_model(llada64):
    """A model loaded some other way (here a plain wrapper that only has `forward`) gets the same loop."""

    class Foreign(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.config = inner.config

        def forward(self, input_ids, attention_mask=None):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    foreign = enable_diffusion_generate(Foreign(llada64), mask_token_id=llada64.config.mask_token_id, steps=8)
    ids = random_prompt(llada64, 5)
    kw = dict(strategy="confidence", gen_length=8, block_length=4)
    assert torch.equal(foreign.generate(ids, **kw), llada64.generate(ids, steps=8, **kw))
    with pytest.raises(ValueError, match="mask_token_id"):
        enable_diffusion_generate(Foreign(llada64), mask_token_id=None)
