"""LLaDA configuration, field-for-field compatible with the published `config.json` of
GSAI-ML/LLaDA-8B-Instruct and LLaDA-8B-Base (`model_type: "llada"`), loaded without remote code."""

from __future__ import annotations

from transformers import PreTrainedConfig

__all__ = ["LLaDAConfig"]


class LLaDAConfig(PreTrainedConfig):
    r"""Configuration of a LLaDA masked-diffusion model (a Llama block with bidirectional attention).

    Field names are those of the published checkpoints, so a hub `config.json` loads as is and
    `save_pretrained` writes a file the original remote code still reads. Standard transformers
    names (`hidden_size`, `num_attention_heads`, ...) are aliases of the LLaDA names.

    Args:
        d_model: hidden size (4096 for LLaDA-8B).
        n_heads: attention heads.
        n_kv_heads: key/value heads (`None` means `n_heads`).
        n_layers: transformer blocks.
        mlp_hidden_size: width of the gated MLP (12288 for LLaDA-8B).
        rope_theta: RoPE base.
        max_sequence_length: longest canvas the model was trained on.
        vocab_size / embedding_size: logical vocabulary and rows of the embedding / LM head
            (`embedding_size` may be larger than the tokenizer; it is never shrunk).
        rms_norm_eps: epsilon of the RMS norms.
        weight_tying: share the embedding and the LM head.
        include_bias / include_qkv_bias: biases on all linears / on q, k, v only.
        mask_token_id: the `[MASK]` id the diffusion process writes (126336 for LLaDA).

    Example:
    ```python
    >>> from nap_hf import LLaDAConfig, LLaDAModelLM
    >>> config = LLaDAConfig(d_model=64, n_heads=4, n_layers=2, mlp_hidden_size=128, vocab_size=300,
    ...                      embedding_size=300, mask_token_id=299, eos_token_id=1, pad_token_id=1)
    >>> model = LLaDAModelLM(config)
    ```
    """

    model_type = "llada"
    keys_to_ignore_at_inference = ["past_key_values"]
    attribute_map = {
        "hidden_size": "d_model",
        "num_attention_heads": "n_heads",
        "num_hidden_layers": "n_layers",
        "intermediate_size": "mlp_hidden_size",
        "max_position_embeddings": "max_sequence_length",
    }

    d_model: int = 4096
    n_heads: int = 32
    n_kv_heads: int | None = None
    n_layers: int = 32
    mlp_hidden_size: int = 12288
    mlp_ratio: int = 4
    activation_type: str = "silu"
    block_type: str = "llama"
    layer_norm_type: str = "rms"
    rms_norm_eps: float = 1e-5
    rope: bool = True
    rope_theta: float = 500000.0
    rope_full_precision: bool = True
    alibi: bool = False
    max_sequence_length: int = 4096
    vocab_size: int = 126464
    embedding_size: int | None = 126464
    weight_tying: bool = False
    include_bias: bool = False
    include_qkv_bias: bool = False
    attention_dropout: float = 0.0
    residual_dropout: float = 0.0
    embedding_dropout: float = 0.0
    init_std: float = 0.02
    mask_token_id: int | None = 126336
    eos_token_id: int | list[int] | None = 126081
    pad_token_id: int | None = 126081
    bos_token_id: int | None = None
    use_cache: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        # LLaDA is bidirectional; transformers' mask utilities read this flag.
        self.is_causal = False
        problems = []
        if self.alibi:
            problems.append("alibi=True (LLaDA uses RoPE)")
        if not self.rope:
            problems.append("rope=False")
        if self.block_type not in ("llama",):
            problems.append(f"block_type={self.block_type!r} (only 'llama' is published)")
        if self.layer_norm_type not in ("rms",):
            problems.append(f"layer_norm_type={self.layer_norm_type!r} (only 'rms' is published)")
        if problems:
            raise ValueError(
                "LLaDAConfig: unsupported settings "
                + ", ".join(problems)
                + "; the published LLaDA checkpoints use "
                "block_type='llama', layer_norm_type='rms', rope=True, alibi=False."
            )
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"LLaDAConfig: d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})."
            )
        if self.n_heads % self.n_kv_heads != 0:
            raise ValueError(
                f"LLaDAConfig: n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})."
            )

    @property
    def num_key_value_heads(self) -> int:
        return self.n_kv_heads

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the embedding and the LM head (`embedding_size`, or `vocab_size` if unset)."""
        return self.embedding_size or self.vocab_size
