"""Hub integration without the Hub: `--push_to_hub --hub_model_id user/name` on a tiny LLaDA (full model and LoRA
adapter) with HF_HUB_OFFLINE=1 writes the exact upload folder; it reloads with `from_pretrained`, its card has
the metadata, decoding settings and citations, and the token is nowhere (files, logs, stdout, errors). The
online path is checked against a fake `HfApi`; any real network access fails the test."""

from __future__ import annotations

import logging
import re
import socket
import types
from pathlib import Path

import huggingface_hub
import pytest
import torch
import yaml
from datasets import Dataset
from transformers import AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

from nap_hf import DiffusionSFTConfig, DiffusionSFTTrainer, LLaDAModelLM, hub

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

SECRET = "hf_SECRETTOKEN123"
REPO = "user/nap-tiny-test"
BASE = "nap-hf-test/tiny-llada"  # declared Hub id of the (local) base checkpoint
HUB_METHODS = (
    "create_repo",
    "upload_folder",
    "upload_file",
    "create_commit",
    "whoami",
    "repo_info",
    "model_info",
)


# ----------------------------------------------------------------------------- fixtures
def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the test tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture()
def offline(monkeypatch):
    """HF_HUB_OFFLINE=1, every Hub call and every socket connection refused."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("NAP_HF_HUB_UPLOAD_DIR", raising=False)
    for name in HUB_METHODS:

        def refuse(*args, _name=name, **kwargs):
            raise AssertionError(f"HfApi.{_name} called while offline")

        monkeypatch.setattr(huggingface_hub.HfApi, name, refuse)
    _no_network(monkeypatch)


@pytest.fixture()
def logs(caplog):
    """Every log record (transformers' included) at DEBUG level, captured by caplog."""
    level = hf_logging.get_verbosity()
    hf_logging.enable_propagation()
    hf_logging.set_verbosity_debug()
    caplog.set_level(logging.DEBUG)
    yield caplog
    hf_logging.set_verbosity(level)
    hf_logging.disable_propagation()


@pytest.fixture()
def tok(llada_dir):
    return AutoTokenizer.from_pretrained(llada_dir)


def _data():
    return Dataset.from_list(
        [{"prompt": f"{a} plus {a} is", "completion": f" {2 * a:03d}"} for a in range(10, 18)]
    )


def _trainer(llada_dir, tok, tmp_path, peft_config=None, **kw):
    args = dict(
        output_dir=str(tmp_path / "out"),
        report_to="none",
        gradient_checkpointing=False,
        save_strategy="no",
        max_steps=2,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        disable_tqdm=True,
        seed=0,
        push_to_hub=True,
        hub_model_id=REPO,
        hub_token=SECRET,
        hub_private_repo=True,
    )
    args.update(kw)
    torch.manual_seed(0)
    extra = {"peft_config": peft_config} if peft_config is not None else {}
    model = LLaDAModelLM.from_pretrained(llada_dir, dtype=torch.float32)
    return DiffusionSFTTrainer(
        model, args=DiffusionSFTConfig(**args), train_dataset=_data(), processing_class=tok, **extra
    )


def _front_matter(card: str) -> dict:
    match = re.match(r"^---\n(.*?)\n---\n", card, re.S)
    assert match, "no YAML front matter"
    return yaml.safe_load(match.group(1))


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _assert_no_secret(folder: Path, logs, capfd):
    for name, data in _files(folder).items():
        assert SECRET.encode() not in data, f"the token is in {name}"
    out, err = capfd.readouterr()
    assert SECRET not in out and SECRET not in err
    assert SECRET not in logs.text


# ----------------------------------------------------------------------------- offline push, full model
def test_offline_push_writes_the_exact_folder_full_model(offline, logs, capfd, llada_dir, tok, tmp_path):
    tr = _trainer(llada_dir, tok, tmp_path)
    tr.train()
    gc = tr.model.generation_config  # small parallel-forced defaults, so the card's snippet runs in a second
    gc.strategy, gc.m, gc.path_length, gc.summary_length, gc.steps = "parallel_forced", 2, 6, 4, 8
    evals = {"GSM8K": {"256 steps": 60.9, "512 steps": 79.2}, "MATH-500": {"512 steps": 43.0}}
    folder = Path(tr.push_to_hub(dataset_name="user/nap-data", base_model=BASE, eval_results=evals))

    assert folder == Path(tr.args.output_dir).resolve() / "_hub_upload" / "nap-tiny-test"
    files = _files(folder)
    for name in ("README.md", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json"):
        assert name in files
    assert str(folder) in logs.text  # where the folder was written is logged
    _assert_no_secret(folder, logs, capfd)
    args = torch.load(folder / "training_args.bin", weights_only=False)
    assert args.hub_token is None and args.hub_model_id == REPO and tr.args.hub_token == SECRET

    # reloads, with the trained weights and the decoding defaults
    model = LLaDAModelLM.from_pretrained(folder)
    AutoTokenizer.from_pretrained(folder)
    trained = tr.accelerator.unwrap_model(tr.model).state_dict()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, trained[k])
    assert model.generation_config.strategy == "parallel_forced" and model.generation_config.m == 2

    card = files["README.md"].decode()
    assert card == (Path(tr.args.output_dir) / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["library_name"] == "transformers" and meta["base_model"] == BASE
    assert meta["datasets"] == ["user/nap-data"] and meta["pipeline_tag"] == "text-generation"
    for tag in ("nap-hf", "diffusion-lm", "masked-diffusion", "llada", "parallel-reasoning"):
        assert tag in meta["tags"]
    assert "lora" not in meta["tags"]
    for text in (
        "| `strategy` | parallel_forced |",
        "| `path_length` | 6 |",
        "| `loss_weight` | elbo |",
        "| `loss_normalization` | answer_length |",
        "| `diffusion_eps` | 0.001 |",
        "| `structured_masking` | false |",
        "| `learning_rate` | 0.01 |",
        "| `global_batch_size` | 4 |",
        "| `world_size` | 1 |",
        "| `precision` | fp32 |",
        "| GSM8K | 60.9 | 79.2 |",
        "| MATH-500 | - | 43.0 |",
        "Why Diffusion Language Models Struggle with Truly Parallel (Non-Autoregressive) Decoding?",
        "Large Language Diffusion Models",
        "arXiv:2502.09992",
    ):
        assert text in card, text
    assert "Dream 7B" not in card and "Not evaluated yet" not in card

    # the card's snippet runs as written (repo id -> the folder)
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    assert 'strategy="parallel_forced"' in snippet and "m=2" in snippet and "steps=8" in snippet
    scope: dict = {}
    exec(snippet.replace(REPO, str(folder)), scope)
    assert (
        isinstance(scope["model"], LLaDAModelLM)
        and scope["out"].shape[1] > scope["inputs"]["input_ids"].shape[1]
    )
    assert isinstance(AutoModel.from_pretrained(folder), LLaDAModelLM)


# ----------------------------------------------------------------------------- offline push, LoRA adapter
def test_offline_push_lora_adapter_loads_and_generates(offline, logs, capfd, llada_dir, tok, tmp_path):
    from peft import LoraConfig, PeftModel

    tr = _trainer(llada_dir, tok, tmp_path, peft_config=LoraConfig(r=4, lora_alpha=8))
    tr.train()
    folder = Path(tr.push_to_hub(dataset_name="user/nap-data", base_model=BASE))

    files = _files(folder)
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md"} <= set(files)
    assert "model.safetensors" not in files
    _assert_no_secret(folder, logs, capfd)
    assert '"base_model_name_or_path": "nap-hf-test/tiny-llada"' in files["adapter_config.json"].decode()

    card = files["README.md"].decode()
    meta = _front_matter(card)
    assert meta["library_name"] == "peft" and meta["base_model"] == BASE
    assert {"lora", "peft", "nap-hf", "llada"} <= set(meta["tags"])
    assert "LoRA adapter" in card and "PeftModel.from_pretrained(base" in card
    assert "`r` = `4`" in card and "`lora_alpha` = `8`" in card

    base = LLaDAModelLM.from_pretrained(llada_dir, dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, folder).eval()
    trained = {k: v for k, v in tr.model.state_dict().items() if "lora_" in k}
    loaded = {k: v for k, v in peft_model.state_dict().items() if "lora_" in k}
    assert trained.keys() == loaded.keys() and trained
    for k, v in loaded.items():
        torch.testing.assert_close(v, trained[k])
    assert any(v.abs().sum() > 0 for k, v in loaded.items() if "lora_B" in k)  # trained, not the zero init

    ids = torch.tensor([tok("12 plus 12 is")["input_ids"]])
    out = peft_model.generate(ids, steps=4, gen_length=4)
    merged = peft_model.merge_and_unload()
    assert isinstance(merged, LLaDAModelLM)
    assert out.shape == (1, ids.shape[1] + 4)
    assert torch.equal(out, merged.generate(ids, steps=4, gen_length=4))


# ----------------------------------------------------------------------------- online path (fake HfApi)
def test_online_push_uploads_the_same_folder(monkeypatch, logs, capfd, llada_dir, tok, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    _no_network(monkeypatch)
    calls = []

    def create_repo(self, repo_id, *, token=None, private=None, exist_ok=False, **kw):
        calls.append(("create_repo", repo_id, token, private, exist_ok))
        return types.SimpleNamespace(repo_id=repo_id)

    def upload_folder(
        self, *, repo_id, folder_path, token=None, commit_message=None, run_as_future=False, **kw
    ):
        calls.append(
            ("upload_folder", repo_id, token, _files(Path(folder_path)), commit_message, run_as_future)
        )
        return "commit"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)

    tr = _trainer(llada_dir, tok, tmp_path)  # push_to_hub=True: the repo is created at init, as in Trainer
    assert calls == [("create_repo", REPO, SECRET, True, True)]
    assert tr.push_to_hub(dataset_name="user/nap-data", base_model=BASE) == "commit"
    (_, repo, token, uploaded, message, future) = calls[-1]
    assert calls[-2][0] == "create_repo" and (repo, token, message, future) == (
        REPO,
        SECRET,
        "End of training",
        False,
    )
    assert {"README.md", "config.json", "model.safetensors", "training_args.bin"} <= set(uploaded)
    assert not any(SECRET.encode() in data for data in uploaded.values())
    out, err = capfd.readouterr()
    assert SECRET not in logs.text + out + err

    # offline, the same code path writes exactly what was uploaded
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = Path(tr.push_to_hub(dataset_name="user/nap-data", base_model=BASE))
    offline_files = _files(folder)
    assert offline_files.keys() == uploaded.keys()
    for name in ("README.md", "config.json", "model.safetensors", "tokenizer.json"):
        assert offline_files[name] == uploaded[name], name


def test_push_folder_offline_contacts_nothing_and_errors_never_quote_the_token(
    monkeypatch, tmp_path, logs, capfd
):
    _no_network(monkeypatch)
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert hub.push_folder(folder, REPO, token=SECRET, offline=True) == str(folder)

    def create_repo(self, repo_id, **kw):
        raise ValueError(f"401 Unauthorized for token {kw['token']}")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    with pytest.raises(RuntimeError) as info:
        hub.push_folder(folder, REPO, token=SECRET, offline=False)
    assert SECRET not in str(info.value) and "<HUB_TOKEN>" in str(info.value)
    assert info.value.__context__ is None and info.value.__cause__ is None
    out, err = capfd.readouterr()
    assert SECRET not in logs.text + out + err


def test_prepare_upload_folder_drops_files_holding_a_token(tmp_path, logs):
    src = tmp_path / "src"
    (src / "checkpoint-5").mkdir(parents=True)
    (src / "runs").mkdir()
    (src / "config.json").write_text("{}")
    (src / "notes.txt").write_text(f"token={SECRET}")
    (src / "checkpoint-5" / "x.bin").write_text("x")
    (src / "runs" / "events").write_text("x")
    (src / "_private").write_text("x")
    folder = hub.prepare_upload_folder(src, src / "_hub_upload" / "name", readme="# card\n", secrets=[SECRET])
    assert set(_files(folder)) == {"config.json", "README.md"}
    assert "notes.txt" in logs.text and SECRET not in logs.text
    # re-running replaces the folder as a whole
    (src / "config.json").write_text('{"a": 1}')
    hub.prepare_upload_folder(src, folder, readme="# card 2\n", secrets=[SECRET])
    assert (folder / "config.json").read_text() == '{"a": 1}' and (
        folder / "README.md"
    ).read_text() == "# card 2\n"
    assert [p.name for p in folder.parent.iterdir()] == ["name"]  # no staging leftovers


# ----------------------------------------------------------------------------- rendering
def test_model_card_local_base_and_no_evaluation():
    card = hub.render_model_card(
        model_name="x",
        repo_id="me/x",
        base_model="/tmp/local/llada",
        model_type="Dream",
        datasets="/data/local",
    )
    meta = _front_matter(card)
    assert "base_model" not in meta and "datasets" not in meta and "dream" in meta["tags"]
    assert "/tmp/local" not in card and "a local base checkpoint" in card and "Not evaluated yet." in card
    assert (
        "Dream 7B: Diffusion Large Language Models" in card and "Large Language Diffusion Models" not in card
    )
    assert "\n\n\n" not in card


def test_dataset_card():
    info = {
        "name": "NAP math P=3",
        "sources": {"open-r1/OpenR1-Math-220k": 34000, "gsm8k-train": 7473},
        "teacher": "Qwen/Qwen2.5-7B-Instruct",
        "P": 3,
        "temperature": 1.0,
        "counts": {"questions": 41473, "instances": 41000, "dropped (path too long)": 473},
        "correctness": {"paths correct": "81.2%", "instances with all paths correct": "60.3%"},
        "decontamination": "13-gram overlap against GSM8K test, MATH-500 and GPQA: 12 questions removed.",
        "license": "apache-2.0",
        "size_category": "10K<n<100K",
    }
    card = hub.render_dataset_card(info)
    meta = _front_matter(card)
    assert meta["license"] == "apache-2.0" and meta["pretty_name"] == "NAP math P=3"
    assert meta["size_categories"] == "10K<n<100K" and "parallel-reasoning" in meta["tags"]
    for text in (
        "| teacher | Qwen/Qwen2.5-7B-Instruct |",
        "| paths per question (P) | 3 |",
        "| temperature | 1.0 |",
        "| open-r1/OpenR1-Math-220k | 34000 |",
        "| instances | 41000 |",
        "| paths correct | 81.2% |",
        "12 questions removed",
        "<think 1>",
        "@misc{li2026nap",
    ):
        assert text in card, text
    bare = hub.render_dataset_card({})
    assert "Not recorded." in bare and "Not performed." in bare and "Not specified." in bare


def test_a_new_config_field_appears_in_the_card(llada_dir, tok, tmp_path):
    """The objective table is read from `dataclasses.fields` of the config: a field added by a subclass (as a
    new `DiffusionSFTConfig` field would be) shows up in the card without being listed anywhere."""
    import dataclasses

    from trl import SFTConfig

    @dataclasses.dataclass
    class ConfigWithAKnob(DiffusionSFTConfig):
        brand_new_knob: float = 0.25

    args = ConfigWithAKnob(
        output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True, bf16=False, loss_weight="cart"
    )
    model = LLaDAModelLM.from_pretrained(llada_dir, dtype=torch.float32)
    tr = DiffusionSFTTrainer(model, args=args, train_dataset=_data(), processing_class=tok)
    card = hub.model_card_from_trainer(tr)
    assert "| `brand_new_knob` | 0.25 |" in card and "| `cart_p` | 0.1 |" in card
    objective = hub.objective_settings(args)
    own = [f.name for f in dataclasses.fields(DiffusionSFTConfig) if f.name not in {
        g.name for g in dataclasses.fields(SFTConfig)}]  # fmt: skip
    expected = {*own, "brand_new_knob", "max_length"} - {"nap_m", "path_length", "summary_length"}
    assert set(objective) == expected  # slot sizes only with slot_aligned=True
    assert {"nap_m", "path_length"} <= set(
        hub.objective_settings(dataclasses.replace(args, slot_aligned=True))
    )
    # the metadata is huggingface_hub's ModelCardData, read back by the Hub's own parser
    meta = huggingface_hub.ModelCard(card).data
    assert meta.library_name == "transformers" and "nap-hf" in meta.tags
