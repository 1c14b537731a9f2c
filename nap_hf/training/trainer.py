"""`DiffusionSFTTrainer`: TRL's `SFTTrainer` with the masked-diffusion objective (docs/design.md §7) for LLaDA,
Dream and any masked-diffusion model: prompt never noised, response + EOS padding trained, t once per sequence,
ELBO / CART / ... weights, and a loss per optimizer step independent of how the batch is split."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, PreTrainedTokenizerBase, TrainingArguments
from transformers.utils import logging
from trl import SFTTrainer

from .. import hub as _hub
from ..alignment import model_shifts_logits
from ..data.format import build_layout, encode_segment, parse_instance, render_slot_aligned
from ..isolation import IsolatedInputs, isolated_inputs
from .config import DiffusionSFTConfig
from .lora import check_lora_targets, default_lora_target_modules
from .noise import (
    SEG_HEADER,
    SEG_PROMPT,
    SEG_RESPONSE,
    SEG_SUMMARY,
    SEG_THINK,
    NoisedBatch,
    diffusion_loss_terms,
    masked_predictions,
    position_weights,
    row_seeds,
    sample_noise,
)

logger = logging.get_logger(__name__)

__all__ = ["DiffusionSFTTrainer", "DiffusionDataCollator"]

ACCEPTED_FORMATS = (
    "conversational: a 'messages' column (list of {'role', 'content'}, the last one the assistant's answer); "
    "prompt-completion: 'prompt' and 'completion' columns (strings, or lists of messages)"
)


@dataclass
class DiffusionDataCollator:
    """Right-pads `input_ids` with EOS to the longest row of the micro-batch; the padding is trained (it is
    part of the response, LLaDA's guideline). `segments` marks prompt / response / path / summary / header."""

    pad_token_id: int

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        L = max(len(e["input_ids"]) for e in examples)
        ids = torch.full((len(examples), L), self.pad_token_id, dtype=torch.long)
        seg = torch.full((len(examples), L), SEG_RESPONSE, dtype=torch.int8)
        for i, e in enumerate(examples):
            n = len(e["input_ids"])
            ids[i, :n] = torch.as_tensor(e["input_ids"], dtype=torch.long)
            seg[i, :n] = torch.as_tensor(e["segments"], dtype=torch.int8)
        return {"input_ids": ids, "segments": seg}


class DiffusionSFTTrainer(SFTTrainer):
    r"""Supervised fine-tuning of masked-diffusion LMs with the masked-diffusion objective.

    Takes what `trl.SFTTrainer` takes: a model id/path, a `PreTrainedModel` or a `PeftModel` (plus `peft_config`
    for LoRA), a dataset in conversational (`messages`) or prompt-completion form, and a
    :class:`DiffusionSFTConfig`. The model's plain `forward` is called (TRL's forward patches are not used);
    Dream's shifted logits are aligned by the one shared function.

    Example:
    ```python
    >>> from datasets import Dataset
    >>> from nap_hf import DiffusionSFTConfig, DiffusionSFTTrainer
    >>> data = Dataset.from_list([{"prompt": "2 + 3 =", "completion": " 5"}] * 64)
    >>> trainer = DiffusionSFTTrainer(
    ...     "GSAI-ML/LLaDA-8B-Instruct",
    ...     args=DiffusionSFTConfig(output_dir="llada-sft", learning_rate=2e-6),
    ...     train_dataset=data,
    ... )  # doctest: +SKIP
    >>> trainer.train()  # doctest: +SKIP
    ```
    """

    _tag_names = ["trl", "sft", "nap-hf", "diffusion"]
    _name = "DiffusionSFT"

    def __init__(
        self,
        model,
        args: DiffusionSFTConfig | TrainingArguments | None = None,
        data_collator=None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        **kwargs,
    ):
        if args is None:
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "model")
            args = DiffusionSFTConfig(f"{str(name).rstrip('/').split('/')[-1]}-DiffusionSFT")
        elif not isinstance(args, DiffusionSFTConfig):
            data = args.to_dict()
            data["hub_token"] = args.hub_token
            args = DiffusionSFTConfig(
                **{k: v for k, v in data.items() if k in DiffusionSFTConfig.__dataclass_fields__}
            )
        for unsupported in ("formatting_func", "compute_loss_func"):
            if kwargs.get(unsupported) is not None:
                raise ValueError(
                    f"DiffusionSFTTrainer does not take `{unsupported}`: the loss is the diffusion objective."
                )
        peft_config = kwargs.get("peft_config")
        if peft_config is not None:
            if getattr(peft_config, "task_type", None) == "CAUSAL_LM":
                # PeftModelForCausalLM needs autoregressive generation hooks (prepare_inputs_for_generation) that
                # masked-diffusion models lack; the plain PeftModel keeps their forward and diffusion generate.
                peft_config.task_type = None
            target = model if not isinstance(model, str) else None
            config = target.config if target is not None else AutoConfig.from_pretrained(model)
            if getattr(peft_config, "target_modules", None) is None:
                peft_config.target_modules = default_lora_target_modules(config)
            check_lora_targets(config, peft_config.target_modules)
        self.dataset_stats: dict[str, dict[str, int]] = {}
        self._mask_token_id_arg = args.mask_token_id
        self._pending_collator = data_collator
        super().__init__(
            model,
            args=args,
            data_collator=data_collator or _DeferredCollator(),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            **kwargs,
        )
        if isinstance(self.data_collator, _DeferredCollator):
            self.data_collator = DiffusionDataCollator(pad_token_id=self._eos_id())
        self.loss_is_scaled_for_ga = True  # the loss is divided by the global item count (see compute_loss)
        self.mask_token_id = self._resolve_mask_token_id()
        self.shift_logits = model_shifts_logits(self.accelerator.unwrap_model(self.model))
        self.isolation_layout = (
            build_layout(self._tokenizer, args.nap_m, args.path_length, args.summary_length)
            if args.path_isolation
            else None
        )
        if (
            args.path_isolation
        ):  # saved with the weights: generate() then knows the model was trained isolated
            base = self.accelerator.unwrap_model(self.model)
            base = getattr(base, "get_base_model", lambda: base)()
            base.config.path_isolation = True

    # ------------------------------------------------------------------ ids
    def _eos_id(self) -> int:
        tok = self._tokenizer
        eos = tok.eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no EOS token; the response padding (and slot filler) is EOS.")
        return int(eos)

    def _resolve_mask_token_id(self) -> int:
        base = self.accelerator.unwrap_model(self.model)
        candidates = [
            self._mask_token_id_arg,
            getattr(getattr(base, "config", None), "mask_token_id", None),
            getattr(self._tokenizer, "mask_token_id", None),
        ]
        for c in candidates:
            if c is not None:
                return int(c)
        raise ValueError(
            "no mask token: set `mask_token_id` in DiffusionSFTConfig, or use a model whose config has "
            "`mask_token_id`, or a tokenizer with a mask token."
        )

    # ------------------------------------------------------------------ data
    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["input_ids", "segments"]

    def _prepare_dataset(self, dataset, processing_class, args, packing, formatting_func, dataset_name):
        """Tokenize into `input_ids` + `segments` (prompt, response, or the slot-aligned NAP layout), truncating
        or dropping what does not fit `max_length`, and record the counts in `self.dataset_stats`."""
        tok = processing_class.tokenizer if hasattr(processing_class, "tokenizer") else processing_class
        if not isinstance(tok, PreTrainedTokenizerBase):
            raise TypeError("DiffusionSFTTrainer needs a tokenizer as `processing_class`.")
        columns = set(dataset.column_names or [])
        if "input_ids" in columns and "segments" in columns:
            return dataset  # already prepared
        if "messages" not in columns and not {"prompt", "completion"} <= columns:
            raise ValueError(
                f"the {dataset_name} dataset has no usable columns ({sorted(columns)}). Accepted formats: "
                f"{ACCEPTED_FORMATS}."
            )
        eos = tok.eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no EOS token; the response padding (and slot filler) is EOS.")
        layout = (
            build_layout(tok, args.nap_m, args.path_length, args.summary_length)
            if args.slot_aligned
            else None
        )

        def prepare(example):
            prompt_ids, completion = _prompt_and_completion(tok, example)
            if layout is None:
                body = encode_segment(tok, completion) + [eos]
                segs = [SEG_RESPONSE] * len(body)
            else:
                parsed = parse_instance(completion)
                if len(parsed.paths) != layout.m or parsed.summary is None:
                    return {"input_ids": [], "segments": [], "status": "not_nap_instance"}
                body = render_slot_aligned(tok, parsed.paths, parsed.summary, layout, filler_id=eos)
                if body is None:
                    return {"input_ids": [], "segments": [], "status": "paths_do_not_fit_slots"}
                segs = []
                for span in layout.spans:
                    code = {"header": SEG_HEADER, "path": SEG_THINK, "summary": SEG_SUMMARY}[span.kind]
                    segs += [code] * len(span)
            status = "kept"
            if args.max_length is not None and len(prompt_ids) + len(body) > args.max_length:
                room = args.max_length - len(prompt_ids)
                if layout is not None or room < 1:
                    return {"input_ids": [], "segments": [], "status": "longer_than_max_length"}
                body, segs, status = body[:room], segs[:room], "truncated"
            return {
                "input_ids": prompt_ids + body,
                "segments": [SEG_PROMPT] * len(prompt_ids) + segs,
                "status": status,
            }

        prepared = dataset.map(
            prepare, remove_columns=list(columns), desc=f"Tokenizing {dataset_name} dataset"
        )
        stats = Counter(prepared["status"])
        self.dataset_stats[dataset_name] = dict(stats)
        dropped = {k: v for k, v in stats.items() if k not in ("kept", "truncated")}
        if dropped or stats.get("truncated"):
            logger.warning(
                "%s dataset: %d kept, %d truncated to max_length=%s (response cut), dropped: %s",
                dataset_name,
                stats.get("kept", 0),
                stats.get("truncated", 0),
                args.max_length,
                dropped or "none",
            )
        prepared = prepared.filter(lambda e: e["status"] in ("kept", "truncated")).remove_columns("status")
        if len(prepared) == 0:
            raise ValueError(f"the {dataset_name} dataset is empty after preparation: {dict(stats)}.")
        return prepared

    # ------------------------------------------------------------------ loss
    def _noise(self, inputs: dict, *keys: int) -> NoisedBatch:
        """Noise keyed by each row's content, the run seed and `keys` (the optimizer step, or the evaluation
        sample): independent of how the batch is split, and restored exactly on resume."""
        seeds = row_seeds(inputs["input_ids"], self.data_collator.pad_token_id, self.args.seed, *keys)
        return sample_noise(
            inputs["input_ids"],
            inputs["segments"],
            self.mask_token_id,
            eps=self.args.diffusion_eps,
            structured=self.args.structured_masking,
            row_seeds=seeds,
        )

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device):
        """Noise every micro-batch of the optimizer step up front and count the step's items (rows for
        `answer_length`, masked tokens for `masked_tokens`), summed over processes."""
        count = 0
        for batch in batch_samples:
            noised = self._noise(batch, self.state.global_step)
            batch["_noised"] = noised
            if self.args.loss_normalization == "answer_length":
                count += batch["input_ids"].shape[0]
            else:
                count += int(noised.masked.sum())
        total = torch.tensor(float(count), device=device)
        if self.args.world_size > 1:
            total = self.accelerator.gather(total).sum()
        return total

    def isolated_inputs(self, inputs: dict, dtype: torch.dtype = torch.float32) -> IsolatedInputs:
        """The isolated attention mask and positions of a slot-aligned micro-batch (`path_isolation=True`): the
        same function the decoder calls (`nap_hf.isolation.isolated_inputs`). Every column is real (the EOS
        padding after the summary is trained response); the layout starts after each row's prompt."""
        segments = inputs["segments"]
        body_start = (segments == SEG_PROMPT).sum(-1)
        real = torch.ones_like(segments, dtype=torch.bool)
        return isolated_inputs(self.isolation_layout, real, body_start, dtype=dtype)

    def _loss_sum(self, model, inputs: dict, noised: NoisedBatch) -> torch.Tensor:
        masked = noised.masked
        extra: dict[str, torch.Tensor] = {}
        isolated = None
        if self.isolation_layout is not None:
            isolated = self.isolated_inputs(inputs, self._activation_dtype(model))
            extra = {"attention_mask": isolated.attention_mask, "position_ids": isolated.position_ids}
        out = (
            model(input_ids=noised.noisy_input_ids, prediction_mask=masked, **extra)
            if self._takes_prediction_mask(model)
            else None
        )
        logits = (
            out.logits
            if out is not None
            else masked_predictions(
                model(input_ids=noised.noisy_input_ids, **extra).logits, masked, self.shift_logits
            )
        )
        weights = position_weights(
            self.args.loss_weight,
            noised,
            eps=self.args.diffusion_eps,
            cart_p=self.args.cart_p,
            visible=isolated.visible if isolated is not None else None,
            positions=isolated.position_ids if isolated is not None else None,
        )
        return diffusion_loss_terms(
            logits,
            inputs["input_ids"],
            noised,
            weights.to(logits.device),
            inputs["segments"],
            normalization=self.args.loss_normalization,
        )

    def _activation_dtype(self, model) -> torch.dtype:
        """The dtype of the additive mask: the parameters' floating dtype (under autocast float32 masks are fine,
        the kernel adds them in the scores' dtype)."""
        for p in self.accelerator.unwrap_model(model).parameters():
            if p.is_floating_point():
                return p.dtype
        return torch.float32

    def _takes_prediction_mask(self, model) -> bool:
        base = self.accelerator.unwrap_model(model)
        base = getattr(base, "get_base_model", lambda: base)()
        import inspect

        return "prediction_mask" in inspect.signature(base.forward).parameters

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Masked-diffusion loss of this micro-batch, already divided by the optimizer step's item count (so the
        Trainer does not divide by the accumulation steps again), times the number of processes (DDP averages
        gradients)."""
        noised = inputs.pop("_noised", None)
        if noised is None:  # called outside the training loop: a self-contained micro-batch
            noised = self._noise(inputs, self.state.global_step)
        total = self._loss_sum(model, inputs, noised)
        if num_items_in_batch is None:
            n = (
                inputs["input_ids"].shape[0]
                if self.args.loss_normalization == "answer_length"
                else noised.masked.sum()
            )
            loss = total / max(float(n), 1.0)
        else:
            loss = total / num_items_in_batch.clamp(min=1) * self.accelerator.num_processes
        return (loss, None) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation: the masked-diffusion NLL bound, Monte-Carlo over t (`eval_mc_samples`), with noise keyed by
        the example and the sample index only, so every evaluation sees the same noise and is comparable."""
        inputs = self._prepare_inputs(inputs)
        losses = []
        with torch.no_grad(), self.compute_loss_context_manager():
            for k in range(self.args.eval_mc_samples):
                noised = self._noise(inputs, -1, k)
                total = self._loss_sum(model, inputs, noised)
                n = (
                    inputs["input_ids"].shape[0]
                    if self.args.loss_normalization == "answer_length"
                    else noised.masked.sum()
                )
                losses.append(total / max(float(n), 1.0))
        return torch.stack(losses).mean().detach(), None, None

    # ------------------------------------------------------------------ hub (nap_hf.hub)
    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """Offline (`HF_HUB_OFFLINE=1`) no repo is created: `push_to_hub` writes the upload folder instead."""
        if not _hub.is_hub_offline():
            return super().init_hf_repo(token=token, private=private)
        self.hub_model_id = self.args.hub_model_id or Path(self.args.output_dir).absolute().name
        self.push_in_progress = None

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        if not _hub.is_hub_offline():  # offline: nothing is sent during training
            super()._push_from_checkpoint(checkpoint_folder)

    def create_model_card(self, model_name=None, dataset_name=None, tags=None, eval_results=None, **kwargs):
        """Write `output_dir/README.md` from `model_cards/model_card.md` (`nap_hf.hub.model_card_from_trainer`):
        base model (`base_model=` or `finetuned_from=` when training from a local copy), dataset, every objective
        field and hyperparameter, decoding settings, `eval_results` when known, tags and citations."""
        if not self.is_world_process_zero():
            return
        card = _hub.model_card_from_trainer(
            self,
            model_name=model_name,
            dataset_name=dataset_name or kwargs.get("dataset"),
            tags=tags,
            eval_results=eval_results,
            base_model=kwargs.get("base_model") or kwargs.get("finetuned_from"),
            license=kwargs.get("license"),
        )
        _hub.write_text_atomic(Path(self.args.output_dir) / "README.md", card)

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        dataset_name=None,
        eval_results=None,
        upload_dir=None,
        **kwargs,
    ):
        """Save the model (or LoRA adapter) and tokenizer, write the card, build the exact upload folder
        (`nap_hf.hub.prepare_upload_folder`: tokens removed) and upload it to `args.hub_model_id`. Offline
        (`HF_HUB_OFFLINE=1`) nothing is contacted and the folder's path is returned (`upload_dir`, else
        `output_dir/_hub_upload/<repo name>`). `kwargs` go to `create_model_card` (`base_model`, `tags`, ...)."""
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        token = token if token is not None else self.args.hub_token
        offline = _hub.is_hub_offline()
        if self.hub_model_id is None:
            self.init_hf_repo(token=token, private=private)
        self.save_model(_internal_call=True)
        if not self.is_world_process_zero():
            return None
        model_name = kwargs.pop("model_name", None) or self.hub_model_id.split("/")[-1]
        self.create_model_card(model_name, dataset_name, eval_results=eval_results, **kwargs)
        readme = (Path(self.args.output_dir) / "README.md").read_text(encoding="utf-8")
        base_model = kwargs.get("base_model") or kwargs.get("finetuned_from")
        folder = _hub.prepare_upload_folder(
            self.args.output_dir,
            upload_dir or _hub.default_upload_dir(self.args.output_dir, self.hub_model_id),
            readme=readme,
            training_args=self.args,
            secrets=[token, self.args.hub_token],
            base_model=base_model,
            link=not offline,
        )
        if offline:
            logger.info("HF_HUB_OFFLINE is set: the upload folder for %s is %s", self.hub_model_id, folder)
            return str(folder)
        self._finish_current_push()
        return _hub.push_folder(
            folder,
            self.hub_model_id,
            token=token,
            private=private if private is not None else self.args.hub_private_repo,
            commit_message=commit_message or "End of training",
            revision=revision if revision is not None else self.args.hub_revision,
            offline=False,
            run_as_future=not blocking,
        )


class _DeferredCollator:
    """Placeholder so that `SFTTrainer.__init__` does not build its own collator; replaced once the tokenizer
    (and its EOS id) is known."""

    def __call__(self, examples):  # pragma: no cover - never called
        raise RuntimeError("DiffusionSFTTrainer's collator was not initialised.")


def _prompt_and_completion(tok, example: dict) -> tuple[list[int], str]:
    """Prompt ids and completion text of one example, in either accepted format. Conversational prompts go
    through the model's chat template with the generation prompt (docs/design.md §6); plain prompts are
    tokenized as is."""
    if "messages" in example and example["messages"] is not None:
        messages = list(example["messages"])
        if not messages or messages[-1].get("role") != "assistant":
            raise ValueError("a 'messages' example must end with the assistant's answer (role 'assistant').")
        prompt_ids = _chat_ids(tok, messages[:-1])
        return prompt_ids, messages[-1]["content"]
    prompt, completion = example["prompt"], example["completion"]
    if isinstance(prompt, list):
        prompt_ids = _chat_ids(tok, prompt)
    else:
        prompt_ids = list(tok(prompt)["input_ids"])
    if isinstance(completion, list):
        completion = "".join(m["content"] for m in completion)
    return prompt_ids, completion


def _chat_ids(tok, messages: list[dict]) -> list[int]:
    if tok.chat_template is None:
        raise ValueError(
            "conversational data needs a tokenizer with a chat template (`tokenizer.chat_template`)."
        )
    out = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return [int(i) for i in out]
