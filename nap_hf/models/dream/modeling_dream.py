"""Dream masked-diffusion model: transformers' Qwen2 trunk with bidirectional attention and the
published weight names (`model.embed_tokens`, `model.layers.N.*`, `model.norm`, `lm_head`).
Loads Dream-org/Dream-v0-*-7B without remote code."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel, Qwen2Model
from transformers.modeling_outputs import MaskedLMOutput
from transformers.models.qwen2.modeling_qwen2 import Qwen2Attention, apply_rotary_pos_emb

from ...alignment import align_predictions
from ...generation.cache import DiffusionCache
from ...generation.mixin import DiffusionGenerationMixin
from ..attention import attention_function, bidirectional_attention_mask
from ..partial import cache_position_ids, partial_forward_cache
from .configuration_dream import DreamConfig

__all__ = ["DreamAttention", "DreamModel", "DreamPreTrainedModel", "DreamBaseModel"]


class DreamPreTrainedModel(PreTrainedModel):
    config_class = DreamConfig
    config: DreamConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["Qwen2DecoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_attention_backend = True


class DreamAttention(Qwen2Attention):
    """Qwen2's attention (same modules and weight names) with bidirectional attention and the kernel chosen by
    :func:`nap_hf.models.attention.attention_function`: for `"eager"` the project's own kernel, in which a
    float64 model stays float64 (transformers' eager kernel rounds its softmax through float32)."""

    def __init__(self, config: DreamConfig, layer_idx: int):
        super().__init__(config, layer_idx)
        self.is_causal = False  # SDPA never falls back to its causal kernel when no mask is needed

    def forward(
        self,
        hidden_states: torch.Tensor,  # (B, L, D)
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None,
        cache=None,
        past_key_values=None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        cache = cache if cache is not None else past_key_values  # transformers renames it in 5.x
        shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        q = self.q_proj(hidden_states).view(shape).transpose(1, 2)  # (B, H, L, hd)
        k = self.k_proj(hidden_states).view(shape).transpose(1, 2)  # (B, H_kv, L, hd)
        v = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        cos, sin = position_embeddings
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        kwargs.pop("position_ids", None)
        kwargs.pop("use_cache", None)
        attn, probs = attention_function(self.config._attn_implementation)(
            self,
            q,
            k,
            v,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            sliding_window=self.sliding_window,
            **kwargs,
        )
        return self.o_proj(attn.reshape(*hidden_states.shape[:-1], -1)), probs


class DreamBaseModel(Qwen2Model):
    """Qwen2 trunk made bidirectional: the config says `is_causal=False` (so padding masks are built
    bidirectional) and every layer's attention is a :class:`DreamAttention` (bidirectional, float64-exact
    eager kernel). Positions skip left padding."""

    config_class = DreamConfig

    def __init__(self, config: DreamConfig):
        super().__init__(config)
        for i, layer in enumerate(self.layers):
            layer.self_attn = DreamAttention(config, i)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        inputs_embeds=None,
        cache: DiffusionCache | None = None,
        cache_position: torch.LongTensor | None = None,
        **kwargs,
    ):
        """Qwen2's forward with bidirectional attention. With `cache` (a
        :class:`~nap_hf.generation.cache.DiffusionCache`, also accepted as `past_key_values`): without
        `cache_position` a full forward that (re)writes every key and value; with `cache_position` (Q,) a
        partial forward over those canvas columns (`input_ids` (B, Q), `position_ids` (B, Q) their true RoPE
        positions, `attention_mask` (B, L) the whole canvas). The outputs are raw (unshifted): the prediction
        for column i is the output at column i - 1, so a partial forward must include that column."""
        ref = input_ids if input_ids is not None else inputs_embeds
        cache = partial_forward_cache(cache, kwargs.pop("past_key_values", None), cache_position, ref)
        if position_ids is None:
            position_ids = cache_position_ids(attention_mask, ref, cache_position)
        custom = (
            attention_mask is not None and not isinstance(attention_mask, dict) and attention_mask.dim() == 4
        )
        if (
            cache is not None or custom
        ):  # one mask for every layer: padding over the cached canvas, or 4D (isolation)
            dtype = inputs_embeds.dtype if inputs_embeds is not None else self.embed_tokens.weight.dtype
            mask = bidirectional_attention_mask(attention_mask, dtype, self.config._attn_implementation)
            attention_mask = dict.fromkeys(set(self.config.layer_types), mask)
        if cache is not None:
            kwargs["cache"] = cache
        elif (
            not custom
            and attention_mask is not None
            and attention_mask.dim() == 2
            and bool(attention_mask.all())
        ):
            attention_mask = None
        kwargs["use_cache"] = False
        return super().forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )


class DreamModel(DiffusionGenerationMixin, DreamPreTrainedModel):
    """Dream with its LM head. `forward` returns RAW logits exactly as the published code does (the
    prediction for position i sits at i-1); :func:`nap_hf.alignment.align_predictions` is the one
    place that shifts them, for both decoding and the training loss.

    Example:
    ```python
    >>> from nap_hf import DreamModel
    >>> model = DreamModel.from_pretrained("Dream-org/Dream-v0-Instruct-7B", dtype="bfloat16")  # doctest: +SKIP
    >>> out = model.generate(input_ids, strategy="dream", alg="entropy", steps=256, gen_length=256,
    ...                      return_dict_in_generate=True)  # doctest: +SKIP
    ```
    """

    shift_logits = True
    _supports_diffusion_cache = True  # the trunk takes a DiffusionCache and a partial forward

    def __init__(self, config: DreamConfig):
        super().__init__(config)
        self.model = DreamBaseModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self._tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def get_decoder(self) -> DreamBaseModel:
        return self.model

    def diffusion_generate(self, inputs: torch.LongTensor | None = None, generation_config=None, **kwargs):
        """Dream's own entry point, for code written against `Dream-org/Dream-v0-*`: the same as
        `generate(strategy="dream", ...)`, taking Dream's arguments (`max_new_tokens`, `steps`, `temperature`,
        `top_p`, `top_k`, `alg`, `alg_temp`, `output_history`, `return_dict_in_generate`). Without `alg`,
        Dream's default `"origin"` is used."""
        kwargs.setdefault("strategy", "dream")
        kwargs.setdefault("alg", "origin")
        input_ids = kwargs.pop("input_ids", inputs)
        return self.generate(input_ids, generation_config=generation_config, **kwargs)

    # Same shape as LLaDAModelLM.forward, on purpose: each model file stands alone, as in transformers, and
    # calls its own head (`lm_head` here; LLaDA's `ff_out` or tied embedding), named as in the hub weights.
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
        """Raw (unshifted) logits (B, L, V), as Dream's published `forward`. With `prediction_mask` (B, L), only the
        ALIGNED predictions at those positions, (N, V) (the training loss asks for the masked positions only).
        `cache` / `cache_position`: a KV cache and a partial forward, as :meth:`DreamBaseModel.forward`."""
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
            logits = self.lm_head(align_predictions(hidden, self.shift_logits)[prediction_mask])
        else:
            logits = self.lm_head(hidden)
        return MaskedLMOutput(logits=logits, hidden_states=out.hidden_states)
