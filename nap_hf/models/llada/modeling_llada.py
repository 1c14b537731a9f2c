"""LLaDA masked-diffusion model with the published module and weight names
(`model.transformer.{wte,blocks.N.*,ln_f,ff_out}`), built from transformers' Llama pieces with
bidirectional attention. Loads GSAI-ML/LLaDA-8B-* without remote code."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from ...alignment import align_predictions
from ...generation.cache import DiffusionCache
from ...generation.mixin import DiffusionGenerationMixin
from ..attention import attention_function, bidirectional_attention_mask
from ..partial import cache_position_ids, partial_forward_cache
from .configuration_llada import LLaDAConfig

__all__ = ["LLaDAModel", "LLaDAModelLM", "LLaDAPreTrainedModel"]


class LLaDARMSNorm(nn.Module):
    """RMS norm as LLaDA's: normalise in float32 (float64 stays float64), scale by `weight`, cast back."""

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        h = x if dtype == torch.float64 else x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)


class LLaDARope(nn.Module):
    """Rotary position embedding (rotate-half layout, as Llama). With `rope_full_precision` (as published)
    the angles and the rotation of q and k are computed in float32 (float64 for a float64 model) and cast
    back, like LLaDA's own code; otherwise in the activations' dtype."""

    def __init__(self, config: LLaDAConfig):
        super().__init__()
        self.head_dim = config.head_dim
        self.theta = config.rope_theta
        self.full_precision = config.rope_full_precision

    def compute_dtype(self, dtype: torch.dtype) -> torch.dtype:
        if dtype == torch.float64 or not self.full_precision:
            return dtype
        return torch.float32

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = self.compute_dtype(x.dtype)
        angle_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        exponent = torch.arange(0, self.head_dim, 2, device=x.device, dtype=angle_dtype) / self.head_dim
        inv_freq = 1.0 / (self.theta**exponent)
        freqs = position_ids[..., None].to(angle_dtype) * inv_freq  # (B, L, D/2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


class LLaDABlock(GradientCheckpointingLayer):
    """One LLaDA ("llama") block: pre-norm bidirectional attention and a SiLU-gated MLP,
    `ff_out(silu(ff_proj(x)) * up_proj(x))`."""

    def __init__(self, config: LLaDAConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_key_value_groups = config.n_heads // config.n_kv_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        d, qkv_bias = config.d_model, config.include_bias or config.include_qkv_bias
        self.attn_norm = LLaDARMSNorm(d, eps=config.rms_norm_eps)
        self.ff_norm = LLaDARMSNorm(d, eps=config.rms_norm_eps)
        self.q_proj = nn.Linear(d, config.n_heads * self.head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(d, config.n_kv_heads * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(d, config.n_kv_heads * self.head_dim, bias=qkv_bias)
        self.attn_out = nn.Linear(d, d, bias=config.include_bias)
        self.ff_proj = nn.Linear(d, config.mlp_hidden_size, bias=config.include_bias)
        self.up_proj = nn.Linear(d, config.mlp_hidden_size, bias=config.include_bias)
        self.ff_out = nn.Linear(config.mlp_hidden_size, d, bias=config.include_bias)
        self.act = ACT2FN[config.activation_type]

    def forward(
        self,
        hidden_states: torch.Tensor,  # (B, L, D)
        attention_mask: torch.Tensor | None = None,  # additive (B, 1, 1, L) or None
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: DiffusionCache | None = None,
    ) -> torch.Tensor:
        """With `cache`, `hidden_states` (B, Q, D) are Q canvas positions: their keys and values are written to
        the cache, and their queries attend to the whole cached canvas (L keys)."""
        bsz, seq_len, _ = hidden_states.shape
        x = self.attn_norm(hidden_states)
        q = self.q_proj(x).view(bsz, seq_len, -1, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(bsz, seq_len, -1, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(bsz, seq_len, -1, self.head_dim).transpose(1, 2)
        cos, sin = position_embeddings  # in the rope's compute dtype (float32 for bf16 activations)
        q, k = apply_rotary_pos_emb(q.to(cos.dtype), k.to(cos.dtype), cos, sin)
        q, k = q.to(v.dtype), k.to(v.dtype)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)  # (B, H_kv, L, hd)
        attention = attention_function(self.config._attn_implementation)  # eager: float64 stays float64
        attn, _ = attention(
            self,
            q,
            k,
            v,
            attention_mask,
            dropout=self.config.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            is_causal=False,
        )
        hidden_states = hidden_states + self.attn_out(attn.reshape(bsz, seq_len, -1))
        x = self.ff_norm(hidden_states)
        return hidden_states + self.ff_out(self.act(self.ff_proj(x)) * self.up_proj(x))


class LLaDAPreTrainedModel(PreTrainedModel):
    config_class = LLaDAConfig
    config: LLaDAConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LLaDABlock"]
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_attention_backend = True

    def _init_weights(self, module):
        std = self.config.init_std
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, LLaDARMSNorm):
            nn.init.ones_(module.weight)


class LLaDAModel(LLaDAPreTrainedModel):
    """The LLaDA trunk: `transformer.wte`, `transformer.blocks`, `transformer.ln_f`, and (unless
    `weight_tying`) the LM head `transformer.ff_out`, kept here so the weight names match the hub."""

    def __init__(self, config: LLaDAConfig):
        super().__init__(config)
        modules = {
            "wte": nn.Embedding(config.padded_vocab_size, config.d_model),
            "blocks": nn.ModuleList([LLaDABlock(config, i) for i in range(config.n_layers)]),
            "ln_f": LLaDARMSNorm(config.d_model, eps=config.rms_norm_eps),
        }
        if not config.weight_tying:
            modules["ff_out"] = nn.Linear(config.d_model, config.padded_vocab_size, bias=config.include_bias)
        self.transformer = nn.ModuleDict(modules)
        self.rope = LLaDARope(config)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.transformer.wte = value

    # The transformers forward keywords; LLaDAModelLM.forward repeats them and passes them through.
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        cache: DiffusionCache | None = None,
        cache_position: torch.LongTensor | None = None,
        **kwargs,
    ) -> BaseModelOutput:
        """The trunk over (B, L) ids. With `cache` (a :class:`~nap_hf.generation.cache.DiffusionCache`, also
        accepted as `past_key_values`): without `cache_position` a full forward that (re)writes every key and
        value; with `cache_position` (Q,) a partial forward over those canvas columns only (`input_ids` (B, Q),
        `position_ids` (B, Q) their true RoPE positions, `attention_mask` (B, L) the whole canvas)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("LLaDAModel.forward: pass exactly one of `input_ids` or `inputs_embeds`.")
        hidden_states = self.transformer.wte(input_ids) if inputs_embeds is None else inputs_embeds
        cache = partial_forward_cache(
            cache, kwargs.pop("past_key_values", None), cache_position, hidden_states
        )
        if position_ids is None:
            position_ids = cache_position_ids(attention_mask, hidden_states, cache_position)
        mask = bidirectional_attention_mask(
            attention_mask, hidden_states.dtype, self.config._attn_implementation
        )
        rope = self.rope(hidden_states, position_ids)
        all_hidden = [] if output_hidden_states else None
        for block in self.transformer.blocks:
            if all_hidden is not None:
                all_hidden.append(hidden_states)
            hidden_states = block(hidden_states, attention_mask=mask, position_embeddings=rope, cache=cache)
        hidden_states = self.transformer.ln_f(hidden_states)
        if all_hidden is not None:
            all_hidden.append(hidden_states)
        return BaseModelOutput(
            last_hidden_state=hidden_states,
            hidden_states=tuple(all_hidden) if all_hidden is not None else None,
        )


class LLaDAModelLM(DiffusionGenerationMixin, LLaDAPreTrainedModel):
    """LLaDA with its LM head: `forward` returns logits whose position i predicts the token at i
    (no shift). `generate` is the diffusion decoding loop of :class:`DiffusionGenerationMixin`.

    Example:
    ```python
    >>> from nap_hf import LLaDAModelLM
    >>> model = LLaDAModelLM.from_pretrained("GSAI-ML/LLaDA-8B-Instruct", dtype="bfloat16")  # doctest: +SKIP
    >>> out = model.generate(input_ids, strategy="confidence", steps=128, gen_length=128, block_length=32,
    ...                      return_dict_in_generate=True)  # doctest: +SKIP
    >>> out.sequences, out.trace, out.nfe  # doctest: +SKIP
    ```
    """

    _tied_weights_keys: dict[str, str] = {}
    shift_logits = False
    _supports_diffusion_cache = True  # the trunk takes a DiffusionCache and a partial forward

    def __init__(self, config: LLaDAConfig):
        super().__init__(config)
        self.model = LLaDAModel(config)
        if config.weight_tying:
            self._tied_weights_keys = {"model.transformer.ff_out.weight": "model.transformer.wte.weight"}
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.transformer.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.transformer.wte = value

    def get_output_embeddings(self) -> nn.Module:
        if self.config.weight_tying:
            return _TiedHead(self.model.transformer.wte)
        return self.model.transformer.ff_out

    def set_output_embeddings(self, value: nn.Linear) -> None:
        if self.config.weight_tying:
            raise ValueError("LLaDAModelLM: this config has weight_tying=True; the LM head is the embedding.")
        self.model.transformer.ff_out = value

    def get_decoder(self) -> LLaDAModel:
        return self.model

    # Same shape as DreamModel.forward, on purpose: each model file stands alone, as in transformers, and
    # calls its own head (`ff_out` or the tied embedding here; Dream's `lm_head`), named as in the hub weights.
    # Its signature repeats LLaDAModel.forward's: the transformers forward keywords, passed through.
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        prediction_mask: torch.BoolTensor | None = None,
        cache: DiffusionCache | None = None,
        cache_position: torch.LongTensor | None = None,
        **kwargs,
    ) -> MaskedLMOutput:
        """Full-vocabulary logits (B, L, V) for every position (position i predicts token i). With
        `prediction_mask` (B, L), only the predictions at those positions, (N, V): the training loss asks for the
        masked positions only. The decoding loop runs `self.model` and the LM head on committable rows itself.
        `cache` / `cache_position`: a KV cache and a partial forward, as :meth:`LLaDAModel.forward`."""
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
            cache=cache if cache is not None else kwargs.get("past_key_values"),
            cache_position=cache_position,
        )
        hidden = out.last_hidden_state
        if prediction_mask is not None:  # (N, V): aligned predictions at the selected positions only
            logits = self.get_output_embeddings()(
                align_predictions(hidden, self.shift_logits)[prediction_mask]
            )
        else:
            logits = self.get_output_embeddings()(hidden)
        return MaskedLMOutput(logits=logits, hidden_states=out.hidden_states)


class _TiedHead(nn.Module):
    """LM head that reuses the input embedding (only for configs with `weight_tying=True`)."""

    def __init__(self, wte: nn.Embedding):
        super().__init__()
        self.weight = wte.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight)
