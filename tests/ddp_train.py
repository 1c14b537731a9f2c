"""Two optimizer steps of `DiffusionSFTTrainer` on a tiny float64 LLaDA, for the multi-process test in
`tests/test_recipes.py`: run once on one process and once under `accelerate launch` on two CPU processes
(gloo), with the same global batch, and compare the per-step losses and the parameters.

    python tests/ddp_train.py MODEL_DIR OUT_DIR --per_device_train_batch_size 4
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \
        --dynamo_backend no tests/ddp_train.py MODEL_DIR OUT_DIR --per_device_train_batch_size 2

Writes OUT_DIR/{normalization}.json (losses, parameter checksums, world size) and OUT_DIR/{normalization}.pt
(the flat parameter vector), from the main process.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoTokenizer

from nap_hf import DiffusionSFTConfig, DiffusionSFTTrainer, LLaDAModelLM


def rows(n: int) -> Dataset:
    # equal-length rows: no micro-batch gets more EOS padding in one split than in another
    return Dataset.from_list(
        [{"prompt": f"{a} plus {a} is", "completion": f" {2 * a:03d}"} for a in range(10, 10 + n)]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--per_device_train_batch_size", type=int, required=True)
    parser.add_argument("--max_steps", type=int, default=2)
    parser.add_argument("--normalizations", nargs="+", default=["answer_length", "masked_tokens"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out_dir)
    tok = AutoTokenizer.from_pretrained(args.model_dir)
    for norm in args.normalizations:
        config = DiffusionSFTConfig(
            output_dir=str(out / f"run-{norm}"),
            use_cpu=True,  # under a multi-process launch: a gloo process group on the CPU
            bf16=False,
            activation_checkpointing=False,
            per_device_train_batch_size=args.per_device_train_batch_size,
            gradient_accumulation_steps=1,
            max_steps=args.max_steps,
            learning_rate=1e-2,
            lr_scheduler_type="constant",
            max_grad_norm=1.0,
            loss_normalization=norm,
            shuffle_dataset=False,
            dataloader_drop_last=True,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            seed=0,
        )
        model = LLaDAModelLM.from_pretrained(args.model_dir, dtype=torch.float64)
        trainer = DiffusionSFTTrainer(model, args=config, train_dataset=rows(16), processing_class=tok)
        trainer.train()
        params = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
        if trainer.accelerator.is_main_process:
            g = torch.Generator().manual_seed(0)
            probe = torch.randn(params.numel(), generator=g, dtype=torch.float64)
            result = {
                "world_size": trainer.accelerator.num_processes,
                "distributed_type": str(trainer.accelerator.distributed_type),
                "backend": str(trainer.accelerator.state.backend),
                "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
                "param_sum": params.sum().item(),
                "param_dot": (params * probe).sum().item(),
            }
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{norm}.json").write_text(json.dumps(result, indent=2))
            torch.save(params, out / f"{norm}.pt")
        trainer.accelerator.wait_for_everyone()


if __name__ == "__main__":
    main()
