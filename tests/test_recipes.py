"""The SFT recipe: training configs carry the paper's hyperparameters and parse through the recipe's parser;
accelerate configs parse and name the right options (checked down to the plugins accelerate builds from them);
the CPU smoke run works end to end; a real 2-process (gloo) run matches a 1-process run step for step."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.scripts import run_script

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
CONFIGS = RECIPES / "configs"
ACCELERATE_CONFIGS = RECIPES / "accelerate_configs"


def _load_recipe():
    spec = importlib.util.spec_from_file_location("nap_recipe_sft", RECIPES / "sft.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sft = _load_recipe()


def _parse(path: Path, *overrides: str):
    return sft.make_parser().parse_args_and_config(["--config", str(path), *overrides])


def _env(tmp_path: Path) -> dict[str, str]:
    """Subprocess environment: one thread per process, nothing downloaded, no user accelerate config."""
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf-home"),
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    return env


def _run(cmd: list[str], tmp_path: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return run_script(cmd, _env(tmp_path), timeout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- training configs

# config -> (model id, NAP slot layout?, GPUs the global batch of 256 is computed for)
PAPER_CONFIGS = {
    "nap_llada_full.yaml": ("GSAI-ML/LLaDA-8B-Instruct", True, 8),
    "nap_dream_full.yaml": ("Dream-org/Dream-v0-Instruct-7B", True, 8),
    "longcot_llada_full.yaml": ("GSAI-ML/LLaDA-8B-Instruct", False, 8),
    "longcot_dream_full.yaml": ("Dream-org/Dream-v0-Instruct-7B", False, 8),
    "nap_llada_lora.yaml": ("GSAI-ML/LLaDA-8B-Instruct", True, 1),
}


def test_every_config_is_covered():
    from tests.test_nap_tiny import SHIPPED_PHASES, phase_config

    tiny = {"tiny_cpu.yaml", "tiny_nap_isolated_cpu.yaml"} | {
        phase_config(kind, n) for kind in ("nap", "longcot") for n in range(1, SHIPPED_PHASES + 1)
    }  # tiny_*: tested in test_nap_tiny.py
    assert {p.name for p in CONFIGS.glob("*.yaml")} == set(PAPER_CONFIGS) | tiny
    assert {p.name for p in ACCELERATE_CONFIGS.glob("*.yaml")} == {
        "single_gpu.yaml",
        "ddp.yaml",
        "zero2.yaml",
        "zero3.yaml",
        "fsdp.yaml",
    }


@pytest.mark.parametrize("name", sorted(PAPER_CONFIGS))
def test_paper_configs_parse_and_hold_the_papers_hyperparameters(name):
    model_id, nap, gpus = PAPER_CONFIGS[name]
    # bf16 needs a GPU or use_cpu to pass TrainingArguments' checks on this machine; nothing else is overridden
    script, train, model = _parse(CONFIGS / name, "--use_cpu", "true")
    assert model.model_name_or_path == model_id
    assert train.per_device_train_batch_size * train.gradient_accumulation_steps * gpus == 256
    assert train.num_train_epochs == 3 and train.max_steps == -1
    assert (train.adam_beta1, train.adam_beta2, train.weight_decay) == (0.9, 0.95, 0.01)
    assert train.optim == "adamw_torch"
    assert train.warmup_steps == 0.1 and train.lr_scheduler_type == "cosine"
    assert train.max_grad_norm == 1.0 and train.bf16 and not train.fp16
    assert train.max_length == 2048
    assert train.activation_checkpointing and train.gradient_checkpointing
    assert train.loss_weight == "elbo" and train.loss_normalization == "answer_length"
    assert train.diffusion_eps == 1e-3 and not train.structured_masking
    assert train.report_to == [] and train.eval_strategy == "no" and not train.push_to_hub
    assert train.slot_aligned is nap
    assert script.dataset_name.startswith("nap-hf/" + ("nap-" if nap else "longcot-"))
    if nap:
        assert (train.nap_m, train.path_length, train.summary_length) == (3, 330, 32)
    if name.endswith("_lora.yaml"):
        assert model.use_peft and model.lora_r == 64 and model.dtype == "bfloat16"
        assert model.lora_target_modules is None  # the trainer's safe default applies
    else:
        assert not model.use_peft and model.dtype == "float32" and train.learning_rate == 2e-6


def test_command_line_overrides_the_config():
    script, train, model = _parse(
        CONFIGS / "nap_dream_full.yaml",
        "--use_cpu",
        "true",
        "--learning_rate",
        "1e-6",
        "--dataset_name",
        "data/x.jsonl",
        "--path_length",
        "256",
    )
    assert (train.learning_rate, script.dataset_name, train.path_length) == (1e-6, "data/x.jsonl", 256)
    assert train.num_train_epochs == 3  # the rest still from the YAML


def test_unknown_config_keys_are_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((CONFIGS / "tiny_cpu.yaml").read_text() + "learning_rat: 1.0\n")
    with pytest.raises(ValueError, match="learning_rat"):
        _parse(bad)


def test_tiny_cpu_config():
    script, train, model = _parse(CONFIGS / "tiny_cpu.yaml")
    assert (
        model.model_name_or_path == "outputs/tiny-llada" and script.dataset_name == "outputs/tiny-nap.jsonl"
    )
    assert train.use_cpu and not train.bf16 and not train.activation_checkpointing
    assert train.slot_aligned and (train.nap_m, train.path_length, train.summary_length) == (3, 24, 24)
    assert train.output_dir == "outputs/tiny-sft" and train.save_strategy == "no" and train.max_steps == 50


def test_docstring_holds_the_launch_commands():
    doc = sft.__doc__
    for cmd in (
        "accelerate launch --config_file recipes/accelerate_configs/single_gpu.yaml",
        "recipes/sft.py --config recipes/configs/nap_llada_full.yaml",
        "recipes/sft.py --config recipes/configs/nap_llada_lora.yaml",
        "accelerate launch --config_file recipes/accelerate_configs/zero3.yaml",
        "python -m nap_hf.testing tiny-llada outputs/tiny-llada",
        "python -m nap_hf.testing tiny-nap-data outputs/tiny-nap.jsonl",
        "python recipes/sft.py --config recipes/configs/tiny_cpu.yaml",
    ):
        assert cmd in " ".join(doc.replace("\\\n", " ").split()), cmd


# ----------------------------------------------------------------------------- accelerate configs


def _launch_env(name: str) -> tuple[object, dict[str, str]]:
    """What `accelerate launch --config_file NAME` would put in the environment of the training processes,
    computed by accelerate's own launcher code (nothing is launched)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import DistributedType
    from accelerate.utils.launch import (
        prepare_deepspeed_cmd_env,
        prepare_multi_gpu_env,
        prepare_simple_launcher_cmd_env,
    )

    args = launch_command_parser().parse_args(
        ["--config_file", str(ACCELERATE_CONFIGS / name), str(RECIPES / "sft.py")]
    )
    args, defaults, mp_from_config = _validate_launch_command(args)
    if defaults.distributed_type == DistributedType.DEEPSPEED:
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if mp_from_config else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)  # as launch_command does
        _, env = prepare_deepspeed_cmd_env(args)
    elif defaults.distributed_type == DistributedType.NO:
        _, env = prepare_simple_launcher_cmd_env(args)
    else:
        env = prepare_multi_gpu_env(args)
    return defaults, {k: v for k, v in env.items() if os.environ.get(k) != v}


def _launch_option_names() -> set[str]:
    from accelerate.commands.launch import launch_command_parser

    return {a.dest for a in launch_command_parser()._actions}


@pytest.mark.parametrize("name", sorted(p.name for p in ACCELERATE_CONFIGS.glob("*.yaml")))
def test_accelerate_configs_parse_with_known_options(name):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    config = load_config_from_file(str(ACCELERATE_CONFIGS / name))  # refuses unknown top-level keys
    assert isinstance(config, ClusterConfig)
    assert config.mixed_precision == "bf16" and not config.use_cpu
    known = _launch_option_names()
    raw = yaml.safe_load((ACCELERATE_CONFIGS / name).read_text())
    for section in ("deepspeed_config", "fsdp_config"):
        for key in raw.get(section) or {}:
            flag = key if section != "fsdp_config" or key.startswith("fsdp") else "fsdp_" + key
            assert flag in known, f"{name}: {section}.{key} is not an `accelerate launch` option"


def test_single_gpu_and_ddp_configs():
    from accelerate.utils import DistributedType

    single, env = _launch_env("single_gpu.yaml")
    assert single.distributed_type == DistributedType.NO and single.num_processes == 1
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    ddp, env = _launch_env("ddp.yaml")
    assert ddp.distributed_type == DistributedType.MULTI_GPU and ddp.num_processes == 8
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16" and "ACCELERATE_USE_DEEPSPEED" not in env


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_configs_build_the_deepspeed_plugin(stage):
    from accelerate.utils import DeepSpeedPlugin, DistributedType, patch_environment

    config, env = _launch_env(f"zero{stage}.yaml")
    assert config.distributed_type == DistributedType.DEEPSPEED and config.num_processes == 8
    assert config.deepspeed_config["zero_stage"] == stage
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true" and env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == str(stage)
    with patch_environment(**env):
        plugin = DeepSpeedPlugin()  # what the training processes build (deepspeed itself is not needed)
    ds = plugin.deepspeed_config
    assert ds["zero_optimization"]["stage"] == stage
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "none"
    assert ds["zero_optimization"]["offload_param"]["device"] == "none"
    # clipping and accumulation are left to the Trainer (max_grad_norm, gradient_accumulation_steps)
    assert ds["gradient_clipping"] == "auto" and ds["gradient_accumulation_steps"] == "auto"
    assert plugin.zero3_init_flag is (stage == 3)
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is (stage == 3)


def test_fsdp_config_wraps_the_decoder_blocks_of_llada_and_dream(llada64, dream64):
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin, patch_environment
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy
    from torch.distributed.fsdp import StateDictType

    config, env = _launch_env("fsdp.yaml")
    assert config.distributed_type == DistributedType.FSDP and config.num_processes == 8
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"

    def plugin(**extra):
        with patch_environment(**env, **extra):
            return FullyShardedDataParallelPlugin()

    p = plugin()
    assert p.fsdp_version == 2 and p.reshard_after_forward is True
    assert p.state_dict_type == StateDictType.FULL_STATE_DICT
    assert p.cpu_ram_efficient_loading and not p.activation_checkpointing
    # no class list: each model's `_no_split_modules` is wrapped
    for model, block in ((llada64, "LLaDABlock"), (dream64, "Qwen2DecoderLayer")):
        policy = fsdp2_prepare_auto_wrap_policy(plugin(), model)
        wrapped = [m for m in model.modules() if policy(m)]
        assert {type(m).__name__ for m in wrapped} == {block}
        assert len(wrapped) == model.config.num_hidden_layers
    # why the config names no classes: accelerate insists that every listed class exists in the model
    both = plugin(FSDP_TRANSFORMER_CLS_TO_WRAP="LLaDABlock,Qwen2DecoderLayer")
    with pytest.raises(ValueError, match="Could not find the transformer layer class Qwen2DecoderLayer"):
        fsdp2_prepare_auto_wrap_policy(both, llada64)


# ----------------------------------------------------------------------------- recipe pieces


def test_load_data_from_files_and_saved_datasets(tmp_path):
    from datasets import Dataset, DatasetDict
    from trl import ScriptArguments

    rows = [{"prompt": "1 + 1 =", "completion": " 2"}, {"prompt": "2 + 2 =", "completion": " 4"}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "d.json").write_text(json.dumps(rows))
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    DatasetDict({"train": Dataset.from_list(rows), "test": Dataset.from_list(rows[:1])}).save_to_disk(
        str(tmp_path / "saved_dict")
    )
    for name in ("d.jsonl", "d.json", "saved", "saved_dict"):
        data = sft.load_data(ScriptArguments(dataset_name=str(tmp_path / name)))
        assert data["train"].to_list() == rows, name
    assert len(sft.load_data(ScriptArguments(dataset_name=str(tmp_path / "saved_dict")))["test"]) == 1
    with pytest.raises(ValueError, match="no split 'sft'"):
        sft.load_data(ScriptArguments(dataset_name=str(tmp_path / "saved_dict"), dataset_train_split="sft"))
    with pytest.raises(ValueError, match="streaming"):
        sft.load_data(ScriptArguments(dataset_name=str(tmp_path / "d.jsonl"), dataset_streaming=True))


def test_lora_config_of_the_recipe_misses_llada_head(llada_dir, tmp_path):
    from datasets import Dataset
    from peft import PeftModel, PeftModelForCausalLM
    from transformers import AutoTokenizer

    from nap_hf import DiffusionSFTConfig, DiffusionSFTTrainer, LLaDAModelLM
    from nap_hf.testing import _tiny_nap_rows

    _, _, model_args = _parse(CONFIGS / "nap_llada_lora.yaml", "--use_cpu", "true")
    peft_config = sft.build_peft_config(model_args)
    assert peft_config.r == 64 and peft_config.lora_alpha == 128 and peft_config.task_type is None
    trainer = DiffusionSFTTrainer(
        LLaDAModelLM.from_pretrained(llada_dir),
        args=DiffusionSFTConfig(
            output_dir=str(tmp_path),
            use_cpu=True,
            bf16=False,
            report_to="none",
            activation_checkpointing=False,
        ),
        train_dataset=Dataset.from_list(_tiny_nap_rows(2)),
        processing_class=AutoTokenizer.from_pretrained(llada_dir),
        peft_config=peft_config,
    )
    assert isinstance(trainer.model, PeftModel) and not isinstance(trainer.model, PeftModelForCausalLM)
    adapted = {n.split(".lora_A")[0] for n, _ in trainer.model.named_parameters() if ".lora_A" in n}
    assert not any(n.endswith("transformer.ff_out") for n in adapted)  # the LM head is untouched
    assert sum(n.endswith(".ff_out") for n in adapted) == 2  # the MLP down projection of each block
    assert len(adapted) == 2 * 7  # q, k, v, attn_out, ff_proj, up_proj, ff_out in each of the 2 blocks


def test_tiny_nap_data_fits_the_tiny_slots(llada_dir, dream_dir, tmp_path):
    from transformers import AutoTokenizer

    from nap_hf.data import build_layout, parse_instance, render_slot_aligned
    from nap_hf.testing import main

    out = tmp_path / "nap.jsonl"
    main(["tiny-nap-data", str(out), "--n", "40"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 40
    for model_dir in (llada_dir, dream_dir):
        tok = AutoTokenizer.from_pretrained(model_dir)
        layout = build_layout(tok, 3, 24, 24)
        for row in rows:
            parsed = parse_instance(row["completion"][0]["content"])
            assert len(parsed.paths) == 3 and parsed.answer is not None
            assert (
                render_slot_aligned(tok, parsed.paths, parsed.summary, layout, tok.eos_token_id) is not None
            )


# ----------------------------------------------------------------------------- end to end


def test_cpu_smoke_run_writes_a_loadable_model(tmp_path):
    from safetensors.torch import load_file

    from nap_hf import LLaDAModelLM

    model_dir, data, out = tmp_path / "tiny-llada", tmp_path / "tiny-nap.jsonl", tmp_path / "tiny-sft"
    _run([sys.executable, "-m", "nap_hf.testing", "tiny-llada", str(model_dir)], tmp_path)
    _run([sys.executable, "-m", "nap_hf.testing", "tiny-nap-data", str(data)], tmp_path)
    proc = _run(
        [
            sys.executable,
            "recipes/sft.py",
            "--config",
            "recipes/configs/tiny_cpu.yaml",
            "--model_name_or_path",
            str(model_dir),
            "--dataset_name",
            str(data),
            "--output_dir",
            str(out),
            "--max_steps",
            "10",
            "--logging_steps",
            "5",
        ],
        tmp_path,
    )
    assert "train dataset: {'kept': 64}" in proc.stdout
    assert "Model saved to" in proc.stdout
    model = LLaDAModelLM.from_pretrained(out)
    before = load_file(model_dir / "model.safetensors")
    after = model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k in after)  # it trained


def test_two_cpu_processes_match_one_process_step_for_step(llada_dir, tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2` on a CPU-only machine: accelerate's torchrun
    launcher starts 2 processes and `use_cpu=True` makes them a gloo group (MULTI_CPU). (`--cpu` would run
    ONE process; a MULTI_CPU accelerate config needs mpirun.) Same global batch, same data order: the
    trainer keys the noise by example content and step, so losses and parameters agree."""
    script = str(ROOT / "tests" / "ddp_train.py")
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, script, str(llada_dir), str(one), "--per_device_train_batch_size", "4"], tmp_path)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["--main_process_port", str(_free_port())]
    _run([*launch, script, str(llada_dir), str(two), "--per_device_train_batch_size", "2"], tmp_path)
    for norm in ("answer_length", "masked_tokens"):
        a = json.loads((one / f"{norm}.json").read_text())
        b = json.loads((two / f"{norm}.json").read_text())
        assert a["world_size"] == 1 and b["world_size"] == 2
        assert b["distributed_type"] == "DistributedType.MULTI_CPU" and b["backend"] == "gloo"
        assert len(a["losses"]) == len(b["losses"]) == 2
        assert b["losses"] == pytest.approx(a["losses"], rel=1e-6)  # logged in float32
        pa, pb = torch.load(one / f"{norm}.pt"), torch.load(two / f"{norm}.pt")
        assert pa.dtype == torch.float64
        torch.testing.assert_close(pb, pa, rtol=1e-9, atol=1e-12)
        assert b["param_dot"] == pytest.approx(a["param_dot"], rel=1e-9)


def test_recipe_runs_on_two_cpu_processes(tmp_path):
    """The recipe itself under a 2-process gloo launch: trains, and the main process saves a loadable model."""
    from nap_hf import LLaDAModelLM
    from nap_hf.testing import main, write_tiny_llada

    model_dir, data, out = tmp_path / "tiny-llada", tmp_path / "tiny-nap.jsonl", tmp_path / "tiny-sft"
    write_tiny_llada(model_dir)
    main(["tiny-nap-data", str(data)])
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["--main_process_port", str(_free_port())]
    proc = _run(
        [
            *launch,
            "recipes/sft.py",
            "--config",
            "recipes/configs/tiny_cpu.yaml",
            "--model_name_or_path",
            str(model_dir),
            "--dataset_name",
            str(data),
            "--output_dir",
            str(out),
            "--max_steps",
            "6",
            "--logging_steps",
            "3",
        ],
        tmp_path,
    )
    assert proc.stdout.count("Model saved to") == 1  # printed by the main process only
    LLaDAModelLM.from_pretrained(out)


def test_cpu_smoke_run_with_lora_and_checkpointing(tmp_path):
    """The LoRA path of the recipe with activation checkpointing (frozen embeddings need input grads)."""
    from peft import PeftModel

    from nap_hf import LLaDAModelLM
    from nap_hf.testing import main, write_tiny_llada

    model_dir, data, out = tmp_path / "tiny-llada", tmp_path / "tiny-nap.jsonl", tmp_path / "tiny-lora"
    write_tiny_llada(model_dir)
    main(["tiny-nap-data", str(data)])
    _run(
        [
            sys.executable,
            "recipes/sft.py",
            "--config",
            "recipes/configs/tiny_cpu.yaml",
            "--model_name_or_path",
            str(model_dir),
            "--dataset_name",
            str(data),
            "--output_dir",
            str(out),
            "--max_steps",
            "6",
            "--use_peft",
            "--lora_r",
            "8",
            "--lora_alpha",
            "16",
            "--activation_checkpointing",
        ],
        tmp_path,
    )
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["task_type"] is None and "blocks" in adapter["target_modules"]
    PeftModel.from_pretrained(LLaDAModelLM.from_pretrained(model_dir), out)


def test_missing_training_extra_exits_with_a_clear_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` now raises ImportError
    with pytest.raises(SystemExit, match=r"needs datasets.*pip install 'nap-hf\[train\]'"):
        sft._require_training_extra()
