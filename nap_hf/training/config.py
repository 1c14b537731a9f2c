"""`DiffusionSFTConfig`: TRL's `SFTConfig` plus the fields of the masked-diffusion objective
(docs/design.md §7)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from trl import SFTConfig

__all__ = ["DiffusionSFTConfig"]


@dataclass
class DiffusionSFTConfig(SFTConfig):
    r"""Configuration of :class:`DiffusionSFTTrainer`. Every `trl.SFTConfig` / `TrainingArguments` field
    applies; the fields below are the masked-diffusion ones. Differences from `SFTConfig`'s defaults: `bf16`
    defaults to True only where a GPU supports it (so the same config runs on a CPU), and the model's
    `forward` is never patched (the loss needs plain logits)."""

    # ---- objective
    diffusion_eps: float = field(
        default=1e-3,
        metadata={
            "help": "Minimum masking probability: p_mask = (1 - eps) t + eps with t ~ U(0, 1) per sequence."
        },
    )
    loss_weight: str = field(
        default="elbo",
        metadata={
            "help": "Weight of each masked position: 'elbo' (1 / p_mask, the ELBO), 'one_minus_t', 'cart' (CART "
            "weights over the unmasked neighbours, see `cart_p`) or 'uniform'.",
            "choices": ["elbo", "one_minus_t", "cart", "uniform"],
        },
    )
    cart_p: float = field(
        default=0.1, metadata={"help": "The geometric parameter p of the 'cart' weights (NAP code: 0.1)."}
    )
    loss_normalization: str = field(
        default="answer_length",
        metadata={
            "help": "'answer_length' (LLaDA: each row divided by its number of non-prompt positions, then the mean over "
            "the rows of the global batch) or 'masked_tokens' (NAP code: divided by the masked tokens of the global "
            "batch). Either way the loss of an optimizer step does not depend on how the batch is split over "
            "devices and accumulation steps.",
            "choices": ["answer_length", "masked_tokens"],
        },
    )
    structured_masking: bool = field(
        default=False,
        metadata={
            "help": "NAP code's structured masking for slot-aligned NAP instances: r = 0.9 t; paths masked with "
            "probability r; the summary fully masked when 1 - t < 0.8, else with probability r (1 + z), z ramping over "
            "the summary; headers never masked."
        },
    )
    mask_token_id: int | None = field(
        default=None,
        metadata={
            "help": "Mask token id; defaults to `model.config.mask_token_id`, then the tokenizer's mask token."
        },
    )
    # ---- NAP slot-aligned layout
    slot_aligned: bool = field(
        default=False,
        metadata={
            "help": "Lay NAP completions out exactly like the parallel-forced canvas: each path padded with EOS filler to "
            "`path_length` in its slot behind its header, the summary to `summary_length`. Completions must be NAP "
            "text (`nap_hf.data.render_instance`); instances whose paths do not fit are dropped and counted."
        },
    )
    nap_m: int = field(default=3, metadata={"help": "Paths per NAP instance in the slot-aligned layout."})
    path_length: int = field(
        default=330, metadata={"help": "Positions of each path slot (slot-aligned layout)."}
    )
    summary_length: int = field(
        default=32, metadata={"help": "Positions of the summary slot (slot-aligned layout)."}
    )
    path_isolation: bool = field(
        default=False,
        metadata={
            "help": "Train with isolated paths (docs/design.md §10): path j attends to the prompt and itself only, the "
            "summary to everything, and every path slot starts at the same position. The model is then decoded with "
            "`generate(path_isolation=True)` (set in its saved generation config). Needs `slot_aligned=True`; with "
            "`loss_weight='cart'` the distances are between positions that can see each other."
        },
    )
    # ---- evaluation
    eval_mc_samples: int = field(
        default=1,
        metadata={
            "help": "Monte-Carlo samples of t per evaluation example for the masked-diffusion NLL bound (`eval_loss`); "
            "drawn from a generator seeded with `seed`, so every evaluation sees the same noise."
        },
    )

    def __getstate__(self):
        """Pickled into `training_args.bin` of every checkpoint: never with the Hub token."""
        state = self.__dict__.copy()
        state["hub_token"] = None
        return state

    def __post_init__(self):
        if self.bf16 is None:
            self.bf16 = (not self.fp16) and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        super().__post_init__()
        if not 0 < self.diffusion_eps < 1:
            raise ValueError(f"diffusion_eps must be in (0, 1), got {self.diffusion_eps}.")
        if self.loss_weight not in ("elbo", "one_minus_t", "cart", "uniform"):
            raise ValueError(
                f"loss_weight={self.loss_weight!r} is unknown; choose 'elbo', 'one_minus_t', 'cart' or 'uniform'."
            )
        if self.loss_normalization not in ("answer_length", "masked_tokens"):
            raise ValueError(
                f"loss_normalization={self.loss_normalization!r} is unknown; choose 'answer_length' or 'masked_tokens'."
            )
        if self.packing or self.padding_free:
            raise ValueError(
                "packing / padding_free are not supported by the diffusion objective (bidirectional attention would "
                "mix packed examples); set packing=False and padding_free=False."
            )
        if self.structured_masking and not self.slot_aligned:
            raise ValueError(
                "structured_masking needs slot_aligned=True (it masks paths and summary differently)."
            )
        if self.path_isolation and not self.slot_aligned:
            raise ValueError(
                "path_isolation=True needs slot_aligned=True: the isolated mask and positions are built from the "
                "slot-aligned canvas layout (nap_m, path_length, summary_length)."
            )
        if self.eval_mc_samples < 1:
            raise ValueError(f"eval_mc_samples must be >= 1, got {self.eval_mc_samples}.")
