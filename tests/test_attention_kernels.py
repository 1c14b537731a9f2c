"""Float64 exactness does not depend on transformers' eager kernel: both models attend through the project's
own eager kernel (`nap_hf.models.attention.eager_attention`), which equals SDPA in float64 on padded batches,
forward and backward; half precision keeps its softmax in float32. The transformers behaviours this relies on
are each checked here by name, so a change of one fails loudly."""

from __future__ import annotations

import inspect

import pytest
import torch
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.llama import modeling_llama
from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer

from nap_hf import DreamModel, LLaDAModelLM
from nap_hf.models import attention
from nap_hf.models.attention import attention_function, eager_attention, softmax_dtype
from nap_hf.models.dream.modeling_dream import DreamAttention

from .conftest import random_prompt


def _load(which, llada_dir, dream_dir, attn, dtype=torch.float64):
    cls, path = (LLaDAModelLM, llada_dir) if which == "llada" else (DreamModel, dream_dir)
    return cls.from_pretrained(path, dtype=dtype, attn_implementation=attn)


def _padded_batch(model):
    pad = model.config.pad_token_id
    a, b = random_prompt(model, 9, seed=11), random_prompt(model, 6, seed=12)
    b = torch.cat([torch.full((1, 3), pad), b], 1)
    b[0, 5] = model.config.mask_token_id
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, :3] = 0
    return torch.cat([a, b]), mask


@pytest.mark.parametrize("which", ["llada", "dream"])
def test_eager_equals_sdpa_in_float64_forward_and_backward(which, llada_dir, dream_dir):
    """Every float64 exactness test (parity, batch vs single, padding, training split invariance) runs on SDPA;
    this makes them hold for eager too: the two kernels agree to 1e-12 on a padded batch, gradients included."""
    outs = {}
    for attn in ("sdpa", "eager"):
        model = _load(which, llada_dir, dream_dir, attn).train()
        ids, mask = _padded_batch(model)
        logits = model(ids, attention_mask=mask).logits
        (logits[mask.bool()].pow(2).mean()).backward()
        outs[attn] = (logits.detach(), model.get_input_embeddings().weight.grad.clone())
    real = _padded_batch(model)[1].bool()
    torch.testing.assert_close(outs["eager"][0][real], outs["sdpa"][0][real], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(outs["eager"][1], outs["sdpa"][1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("which", ["llada", "dream"])
def test_eager_runs_the_projects_kernel(which, llada_dir, dream_dir, monkeypatch):
    model = _load(which, llada_dir, dream_dir, "eager").eval()
    calls = []

    def counting(*args, **kwargs):
        calls.append(args[1].dtype)
        return eager_attention(*args, **kwargs)

    monkeypatch.setattr(attention, "eager_attention", counting)
    module = __import__(type(model).__module__, fromlist=["attention_function"])
    monkeypatch.setattr(module, "attention_function", lambda impl: counting if impl == "eager" else None)
    with torch.no_grad():
        model(random_prompt(model, 5))
    assert calls == [torch.float64] * model.config.num_hidden_layers


def test_softmax_dtype_keeps_float64_and_promotes_half_precision():
    assert softmax_dtype(torch.float64) == torch.float64
    assert softmax_dtype(torch.float32) == torch.float32
    assert softmax_dtype(torch.bfloat16) == torch.float32
    assert softmax_dtype(torch.float16) == torch.float32
    q = torch.randn(1, 2, 3, 4, dtype=torch.bfloat16)
    out, probs = eager_attention(torch.nn.Module(), q, q, q, None, scaling=0.5)
    assert out.dtype == probs.dtype == torch.bfloat16
    ref = torch.softmax((q.float() @ q.float().transpose(2, 3)) * 0.5, -1)
    torch.testing.assert_close(probs.float(), ref, rtol=1e-2, atol=1e-2)  # bf16 rounding of the result only


def test_half_precision_models_run_under_both_kernels(llada_dir, dream_dir):
    for which in ("llada", "dream"):
        eager = _load(which, llada_dir, dream_dir, "eager", torch.bfloat16).eval()
        sdpa = _load(which, llada_dir, dream_dir, "sdpa", torch.bfloat16).eval()
        ids = random_prompt(eager, 7, seed=3)
        with torch.no_grad():
            a, b = eager(ids).logits.float(), sdpa(ids).logits.float()
        torch.testing.assert_close(a, b, rtol=5e-2, atol=5e-2)


# --- the transformers behaviours the models rely on, each by name -------------------------------------------


def test_transformers_sdpa_kernel_keeps_float64():
    """We rely on: transformers' registered "sdpa" kernel computes in the inputs' dtype (float64 stays float64)."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 5, 4, dtype=torch.float64) for _ in range(3))
    module = torch.nn.Module()
    module.is_causal, module.num_key_value_groups = False, 1
    got, _ = ALL_ATTENTION_FUNCTIONS["sdpa"](module, q, k, v, None, scaling=0.5, dropout=0.0, is_causal=False)
    ref = torch.softmax(q @ k.transpose(2, 3) * 0.5, -1) @ v
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, ref.transpose(1, 2), rtol=1e-13, atol=1e-13)


def test_transformers_eager_kernel_still_rounds_through_float32():
    """Why the models own their eager kernel: transformers' `eager_attention_forward` takes the softmax in
    float32 whatever the activations' dtype (seen since 5.x). If this starts failing, transformers' kernel is
    float64-exact again; ours stays, and this test can go."""
    source = inspect.getsource(modeling_llama.eager_attention_forward)
    assert "dtype=torch.float32" in source


def test_qwen2_decoder_layer_calls_self_attn_with_keywords_we_accept():
    """We rely on: Qwen2DecoderLayer builds `self.self_attn` in `__init__` (we replace it by DreamAttention) and
    calls it with `hidden_states`, `position_embeddings`, `attention_mask` and the cache as keywords."""
    source = inspect.getsource(Qwen2DecoderLayer.forward)
    for name in ("hidden_states=hidden_states", "position_embeddings=position_embeddings", "attention_mask="):
        assert name in source, name
    accepted = inspect.signature(DreamAttention.forward).parameters
    assert {"hidden_states", "position_embeddings", "attention_mask", "cache", "past_key_values"} <= set(
        accepted
    )


def test_qwen2_model_builds_an_additive_float_mask_for_eager(dream_dir):
    """We rely on: under eager, Qwen2Model hands the attention an additive float mask in the activations'
    dtype (our kernel adds it); a boolean mask there would silently be wrong."""
    model = _load("dream", llada_dir=None, dream_dir=dream_dir, attn="eager").eval()
    seen = []
    layer = model.model.layers[0].self_attn
    handle = layer.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw["attention_mask"]), with_kwargs=True
    )
    try:
        ids, mask = _padded_batch(model)
        with torch.no_grad():
            model(ids, attention_mask=mask)
    finally:
        handle.remove()
    m = seen[0]
    assert m.dtype == torch.float64 and m.dim() == 4
    assert float(m[1, 0, 0, 0]) <= torch.finfo(torch.float64).min / 2 and float(m[1, 0, 0, 5]) == 0.0


def test_attention_function_dispatch():
    assert attention_function("eager") is eager_attention and attention_function(None) is eager_attention
    assert attention_function("sdpa") is ALL_ATTENTION_FUNCTIONS["sdpa"]
    with pytest.raises(KeyError):
        attention_function("no-such-kernel")
