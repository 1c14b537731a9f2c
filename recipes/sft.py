"""Masked-diffusion SFT of LLaDA / Dream on NAP (or Long-CoT) data with `DiffusionSFTTrainer`
(docs/design.md §7).

Every field of `trl.ScriptArguments` (dataset), `nap_hf.DiffusionSFTConfig` (training and objective) and
`trl.ModelConfig` (model, LoRA) can be set in the YAML given with `--config` or on the command line; the
command line wins. Run from the repository root.

# One GPU, full fine-tuning (LLaDA-8B-Instruct, NAP data)
```bash
accelerate launch --config_file recipes/accelerate_configs/single_gpu.yaml \
    recipes/sft.py --config recipes/configs/nap_llada_full.yaml
```

# One GPU, LoRA
```bash
accelerate launch --config_file recipes/accelerate_configs/single_gpu.yaml \
    recipes/sft.py --config recipes/configs/nap_llada_lora.yaml
```

# 8 GPUs, DeepSpeed ZeRO-3 (the paper's setup: global batch 4 x 8 accumulation x 8 GPUs = 256)
```bash
accelerate launch --config_file recipes/accelerate_configs/zero3.yaml \
    recipes/sft.py --config recipes/configs/nap_llada_full.yaml
```
(`zero2.yaml`, `ddp.yaml` and `fsdp.yaml` launch the same way; Dream: `nap_dream_full.yaml`; the Long-CoT
baselines: `longcot_llada_full.yaml`, `longcot_dream_full.yaml`.)

# CPU smoke run (a tiny random model and 64 tiny NAP rows, about a minute)
```bash
python -m nap_hf.testing tiny-llada outputs/tiny-llada
python -m nap_hf.testing tiny-nap-data outputs/tiny-nap.jsonl
python recipes/sft.py --config recipes/configs/tiny_cpu.yaml
```
The same smoke run on 2 CPU processes (gloo): accelerate's `--multi_gpu` selects the torchrun launcher, and
`use_cpu: true` in `tiny_cpu.yaml` makes each process join a gloo group on the CPU:
```bash
accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \
    recipes/sft.py --config recipes/configs/tiny_cpu.yaml
```

# Overriding any field
Command-line flags override the YAML, e.g.
```bash
accelerate launch --config_file recipes/accelerate_configs/zero3.yaml recipes/sft.py \
    --config recipes/configs/nap_dream_full.yaml \
    --dataset_name data/nap-gsm8k.jsonl --output_dir outputs/my-run \
    --learning_rate 1e-6 --report_to wandb --push_to_hub --hub_model_id me/dream-nap
```
`--dataset_name` takes a Hub dataset id, a local dataset directory (`load_dataset` or `save_to_disk`
layout) or a `.json` / `.jsonl` / `.csv` / `.parquet` file. The data is either conversational (`messages`)
or prompt-completion (`prompt`, `completion`); NAP configs (`slot_aligned: true`) need NAP completions
(`nap_hf.data.render_instance`), as written by `recipes/build_data.py`.
"""

from __future__ import annotations

import os
import sys

_INSTALL_HINT = "pip install 'nap-hf[train]'  (trl, peft, datasets)"


def _require_training_extra() -> None:
    """Exit with a clear message (not a traceback) when the training extra is missing."""
    missing = []
    for module in ("datasets", "trl", "yaml", "nap_hf"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        sys.exit(f"recipes/sft.py needs {', '.join(missing)}: {_INSTALL_HINT}")


# file suffix -> `datasets` packaged builder for local data files
_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


def load_data(script_args):
    """The dataset named by `script_args.dataset_name` as a `DatasetDict`: a local data file, a directory
    written by `save_to_disk`, or anything `datasets.load_dataset` takes (a Hub id, a local dataset dir)."""
    from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

    name = script_args.dataset_name
    if not name:
        raise ValueError(
            "no dataset: set `dataset_name` (a Hub id, a local directory or a .json/.jsonl file)."
        )
    if script_args.dataset_streaming:
        raise ValueError(
            "dataset_streaming is not supported: DiffusionSFTTrainer tokenizes and lays out the whole dataset "
            "up front (and counts what it drops)."
        )
    suffix = next((s for s in _FILE_BUILDERS if name.endswith(s) or name.endswith(s + ".gz")), None)
    if suffix is not None and os.path.isfile(name):
        data = load_dataset(_FILE_BUILDERS[suffix], data_files={script_args.dataset_train_split: name})
    elif os.path.isdir(name) and (
        os.path.isfile(os.path.join(name, "dataset_dict.json"))
        or os.path.isfile(os.path.join(name, "state.json"))
    ):
        data = load_from_disk(name)
    else:
        data = load_dataset(name, name=script_args.dataset_config)
    if isinstance(data, Dataset):
        data = DatasetDict({script_args.dataset_train_split: data})
    if script_args.dataset_train_split not in data:
        raise ValueError(
            f"the dataset {name!r} has no split {script_args.dataset_train_split!r} (it has {sorted(data)}); "
            "set `dataset_train_split`."
        )
    return data


def load_model_and_tokenizer(model_args, training_args):
    """The model through the Auto classes of `nap_hf` (local code for LLaDA / Dream, no remote code unless
    `trust_remote_code` is set), in `model_args.dtype`, and its tokenizer."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    import nap_hf  # noqa: F401  (registers LLaDA and Dream with the Auto classes)

    if not model_args.model_name_or_path:
        raise ValueError("no model: set `model_name_or_path`.")
    dtype = model_args.dtype
    if dtype not in (None, "auto"):
        dtype = getattr(torch, dtype)
    kwargs = dict(
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,  # False unless the user set it
        dtype=dtype,
    )
    if model_args.attn_implementation is not None:
        kwargs["attn_implementation"] = model_args.attn_implementation
    if isinstance(training_args.model_init_kwargs, dict):
        kwargs.update(training_args.model_init_kwargs)
    model = AutoModel.from_pretrained(model_args.model_name_or_path, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
    )
    return model, tokenizer


def build_peft_config(model_args):
    """The LoRA config of `model_args` (None without `use_peft`), as a plain (task-free) PEFT config.

    With `lora_target_modules` unset, DiffusionSFTTrainer picks targets that never hit LLaDA's LM head
    (`nap_hf.training.default_lora_target_modules`), and it refuses a list with a bare 'ff_out'."""
    from trl import get_peft_config

    peft_config = get_peft_config(model_args)
    if peft_config is not None and peft_config.task_type == "CAUSAL_LM":
        # ModelConfig's default task type wraps the model in PeftModelForCausalLM, which needs the
        # autoregressive generation hooks (`prepare_inputs_for_generation`) a masked-diffusion model does not
        # have; the plain PeftModel keeps the model's own forward and its diffusion `generate`.
        peft_config.task_type = None
    return peft_config


def main(script_args, training_args, model_args, callbacks=None) -> None:
    """Train (resuming from `training_args.resume_from_checkpoint` if set), save, and push if asked;
    `callbacks` are extra `TrainerCallback`s (e.g. `recipes/nap_tiny.py`'s periodic accuracy check)."""
    from nap_hf.training import DiffusionSFTTrainer

    data = load_data(script_args)
    model, tokenizer = load_model_and_tokenizer(model_args, training_args)

    eval_dataset = None
    if training_args.eval_strategy != "no":
        if script_args.dataset_test_split not in data:
            raise ValueError(
                f"eval_strategy={training_args.eval_strategy!r} but the dataset has no split "
                f"{script_args.dataset_test_split!r} (it has {sorted(data)}); set `dataset_test_split` or "
                "`eval_strategy: no`."
            )
        eval_dataset = data[script_args.dataset_test_split]

    trainer = DiffusionSFTTrainer(
        model,
        args=training_args,
        train_dataset=data[script_args.dataset_train_split],
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=build_peft_config(model_args),
        callbacks=callbacks,
    )
    for split, stats in trainer.dataset_stats.items():
        trainer.accelerator.print(f"{split} dataset: {stats}")

    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.accelerator.print("Training completed.")

    trainer.save_model(training_args.output_dir)
    trainer.accelerator.print(f"Model saved to {training_args.output_dir}.")
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
        trainer.accelerator.print(f"Model pushed to the Hub as {trainer.hub_model_id}.")
    release_distributed_model(trainer)
    if hasattr(trainer, "end"):  # transformers >= 5.18: end the trackers, destroy the process group
        trainer.end()


def release_distributed_model(trainer) -> None:
    """Drop the DDP wrapper while every process is still here. Its reducer holds the process group; left to
    the interpreter's exit, it is destroyed after `trainer.end()` has destroyed the group, and with gloo (torch
    2.13, CPU) its destructor can wait forever for worker threads talking to a peer that has already exited."""
    import gc

    trainer.accelerator.wait_for_everyone()
    trainer.model_wrapped = trainer.model
    trainer.accelerator.free_memory()  # accelerate's references to the prepared (wrapped) model
    gc.collect()
    trainer.accelerator.wait_for_everyone()


def make_parser():
    from trl import ModelConfig, ScriptArguments, TrlParser

    from nap_hf.training import DiffusionSFTConfig

    return TrlParser((ScriptArguments, DiffusionSFTConfig, ModelConfig))


if __name__ == "__main__":
    _require_training_extra()
    script_args, training_args, model_args = make_parser().parse_args_and_config()
    main(script_args, training_args, model_args)
