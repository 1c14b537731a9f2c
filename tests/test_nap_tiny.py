"""nap-tiny's recipe end to end on a shrunken run: prepare -> train (with the held-out accuracy callback) ->
resume -> export, and the toy evaluation's step budget."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from tests.scripts import run_script, script_module

REPO = Path(__file__).resolve().parent.parent
SHIPPED_PHASES = 4
"""Training phases of the shipped models: tiny_{kind}_cpu.yaml, then tiny_{kind}_cpu_phase2.yaml, ..."""


def phase_config(kind: str, n: int) -> str:
    """The file name of phase `n`'s config for `kind` (nap or longcot)."""
    return f"tiny_{kind}_cpu{'' if n == 1 else f'_phase{n}'}.yaml"


ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "NAP_TINY_THREADS": "1",
    "OMP_NUM_THREADS": "1",
}


def _run(args: list[str], timeout: int = 240) -> str:
    proc = run_script([sys.executable, str(REPO / "recipes" / "nap_tiny.py"), *args], ENV, timeout)
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nap-tiny")
    _run(["prepare", "--out_dir", str(out), "--n_train", "96", "--n_test", "20"])
    return out


def _train(prepared: Path, run: Path, kind: str, max_steps: int) -> str:
    return _run(
        [
            "train",
            "--config",
            str(REPO / "recipes" / "configs" / f"tiny_{kind}_cpu.yaml"),
            "--model_name_or_path",
            str(prepared / "init"),
            "--dataset_name",
            str(prepared / f"{kind}-train.jsonl"),
            "--output_dir",
            str(run),
            "--max_steps",
            str(max_steps),
            "--per_device_train_batch_size",
            "8",
            "--save_steps",
            "2",
            "--bf16",
            "false",
            "--eval_every",
            "2",
            "--eval_problems",
            "3",
        ]
    )


def test_prepare_writes_held_out_data_and_a_2m_model(prepared):
    stats = json.loads((prepared / "stats.json").read_text())
    assert stats["train"]["instances"] == 96 and stats["test"]["instances"] == 20
    test_q = {json.loads(line)["question"] for line in (prepared / "test.jsonl").read_text().splitlines()}
    train_rows = [json.loads(line) for line in (prepared / "nap-train.jsonl").read_text().splitlines()]
    assert not test_q & {r["prompt"][0]["content"] for r in train_rows}
    from transformers import AutoModel

    import nap_hf  # noqa: F401

    model = AutoModel.from_pretrained(prepared / "init")
    assert 1.5e6 < sum(p.numel() for p in model.parameters()) < 3e6


def test_train_resume_and_export(prepared, tmp_path):
    run = tmp_path / "run"
    _train(prepared, run, "nap", 2)
    curve = [json.loads(line) for line in (run / "learning_curve.jsonl").read_text().splitlines()]
    assert [r["step"] for r in curve] == [2]  # the end-of-training check is not repeated at the same step
    assert curve[0]["decoding"] == "nap/parallel_forced k=1" and 0.0 <= curve[0]["accuracy"] <= 1.0
    out = _train(prepared, run, "nap", 4)  # a longer run in the same directory resumes from checkpoint-2
    assert "resuming from" in out and "checkpoint-2" in out
    assert [json.loads(x)["step"] for x in (run / "learning_curve.jsonl").read_text().splitlines()] == [2, 4]

    dest = tmp_path / "exported"
    _run(["export", "--run", str(run), "--to", str(dest), "--kind", "nap"])
    from transformers import AutoModel, AutoTokenizer

    import nap_hf  # noqa: F401
    from nap_hf.data.toy_arithmetic import ToyArithmetic
    from nap_hf.evaluation.toy import LONGCOT_GEN_LENGTH, ToyDecoding, evaluate_toy

    model = AutoModel.from_pretrained(dest).eval()
    tok = AutoTokenizer.from_pretrained(dest)
    assert model.generation_config.strategy == "parallel_forced" and model.generation_config.m == 3
    problems = [ToyArithmetic(seed=0).problem(i, "test") for i in range(2)]
    torch.manual_seed(0)
    for k, nfe in [(1, 72), (4, 18)]:  # 3 x 20 + 12 slots; steps = slots / k
        res = evaluate_toy(model, tok, problems, ToyDecoding(tokens_per_step=k))
        assert res.nfe == nfe and res.n == 2 and len(res.records[0]["paths"]) == 3
    res = evaluate_toy(model, tok, problems, ToyDecoding(strategy="ar", layout="longcot", tokens_per_step=2))
    assert res.nfe == LONGCOT_GEN_LENGTH // 2 == 36 and res.global_arness == pytest.approx(1.0)
    assert 0.0 <= res.equation_accuracy <= 1.0 and res.vote_accuracy is None


@pytest.mark.parametrize("kind", ["nap", "longcot"])
@pytest.mark.parametrize("phase", range(2, SHIPPED_PHASES + 1))
def test_each_phase_config_continues_the_previous_one(kind, phase):
    """Phase N starts from phase N-1's output, on the same data and canvas, with its own output_dir, data order
    and a learning rate below phase 1's."""
    import yaml

    from nap_hf.data.toy_arithmetic import TOY_PATH_LENGTH, TOY_SUMMARY_LENGTH

    def load(n: int, model: str = kind) -> dict:
        return yaml.safe_load((REPO / "recipes" / "configs" / phase_config(model, n)).read_text())

    first, prev, this = load(1), load(phase - 1), load(phase)
    assert this["model_name_or_path"] == prev["output_dir"] != this["output_dir"]
    assert this["seed"] not in {load(n)["seed"] for n in range(1, phase)}
    assert this["learning_rate"] < first["learning_rate"]
    same = (
        "dataset_name",
        "slot_aligned",
        "loss_weight",
        "loss_normalization",
        "per_device_train_batch_size",
    )
    assert {k: first.get(k) for k in same} == {k: this.get(k) for k in same}
    if kind == "nap":
        assert (this["path_length"], this["summary_length"]) == (TOY_PATH_LENGTH, TOY_SUMMARY_LENGTH)
    other = load(phase, "longcot" if kind == "nap" else "nap")  # both models get the same budget
    assert (this["max_steps"], this["learning_rate"]) == (other["max_steps"], other["learning_rate"])


def test_isolated_config_fine_tunes_the_shipped_model_on_the_same_data_and_canvas():
    """nap-tiny-isolated starts from the shipped nap-tiny, on the data and canvas of its last phase, with
    `path_isolation: true` and a data order of its own; the YAML parses into a DiffusionSFTConfig."""
    import yaml

    from nap_hf import DiffusionSFTConfig

    def load(name: str) -> dict:
        return yaml.safe_load((REPO / "recipes" / "configs" / name).read_text())

    iso, last = load("tiny_nap_isolated_cpu.yaml"), load(phase_config("nap", SHIPPED_PHASES))
    assert iso["model_name_or_path"] == "models/nap-tiny" and iso["path_isolation"] is True
    same = ("dataset_name", "slot_aligned", "nap_m", "path_length", "summary_length", "loss_weight")
    assert {k: iso[k] for k in same} == {k: last[k] for k in same}
    assert iso["seed"] not in {load(phase_config("nap", n))["seed"] for n in range(1, SHIPPED_PHASES + 1)}
    keys = DiffusionSFTConfig.__dataclass_fields__
    args = DiffusionSFTConfig(**{k: v for k, v in iso.items() if k in keys})
    assert args.path_isolation and args.slot_aligned


@pytest.fixture(scope="module")
def recipe():
    """`recipes/nap_tiny.py` as a module."""
    return script_module("recipes/nap_tiny.py")


@pytest.mark.parametrize("kind", ["nap", "longcot"])
def test_training_phases_follow_the_chain_and_reach_the_card(kind, tmp_path, recipe):
    """`training_phases` walks model_name_or_path -> output_dir back to phase 1; the card names every phase."""
    configs = REPO / "recipes" / "configs"
    last = phase_config(kind, SHIPPED_PHASES)
    chain = recipe.training_phases(configs / last)
    assert [c.name for c, _ in chain] == [phase_config(kind, n) for n in range(1, SHIPPED_PHASES + 1)]
    assert [c.name for c, _ in recipe.training_phases(configs / f"tiny_{kind}_cpu.yaml")] == [
        f"tiny_{kind}_cpu.yaml"
    ]
    # a cycle (a config that continues its own output) ends the walk instead of looping
    (tmp_path / "a.yaml").write_text("model_name_or_path: out/b\noutput_dir: out/a\n")
    (tmp_path / "b.yaml").write_text("model_name_or_path: out/a\noutput_dir: out/b\n")
    assert [c.name for c, _ in recipe.training_phases(tmp_path / "b.yaml")] == ["a.yaml", "b.yaml"]

    from transformers import AutoModel

    import nap_hf  # noqa: F401

    model = AutoModel.from_pretrained(REPO / "models" / ("nap-tiny" if kind == "nap" else "nap-tiny-longcot"))
    card = recipe._card(model, kind, tmp_path, str(configs / last), None)
    steps = sum(cfg["max_steps"] for _, cfg in chain)
    assert f"{steps} steps in all" in card and all(f"--config {c}" in card for c, _ in chain)
    assert all(f"phase {n}: {cfg['max_steps']} steps" in card for n, (_, cfg) in enumerate(chain, 1))
    assert f"| `max_steps (all phases)` | {steps} |" in card  # not the last phase's own max_steps


def test_joined_learning_curve_counts_steps_across_phases(tmp_path, recipe):
    """The exported learning curve joins the phases' curves, with steps counted from the start of phase 1."""
    for name, parent, steps in (("one", "init", 30), ("two", "one", 20), ("three", "two", 10)):
        (tmp_path / f"{name}.yaml").write_text(
            f"model_name_or_path: {tmp_path / parent}\noutput_dir: {tmp_path / name}\nmax_steps: {steps}\n"
        )
    for name, points in (("one", [15, 30]), ("three", [5, 10])):  # phase two's curve is missing
        (tmp_path / name).mkdir()
        rows = "".join(json.dumps({"step": s, "accuracy": s / 100}) + "\n" for s in points)
        (tmp_path / name / "learning_curve.jsonl").write_text(rows)
    curve = recipe.joined_learning_curve(tmp_path / "three", tmp_path / "three.yaml")
    assert [(r["step"], r["phase"], r["phase_step"]) for r in curve] == [
        (15, 1, 15),
        (30, 1, 30),
        (55, 3, 5),
        (60, 3, 10),
    ]
    assert [r["step"] for r in recipe.joined_learning_curve(tmp_path / "three")] == [
        5,
        10,
    ]  # no config: one run


@pytest.mark.parametrize("name", ["nap-tiny", "nap-tiny-longcot", "nap-tiny-isolated"])
def test_shipped_models_load_offline_and_are_small(name):
    """The embedded checkpoints: at most 25 MB, loaded by path, with a card and the generation defaults."""
    from transformers import AutoModel, AutoTokenizer

    import nap_hf  # noqa: F401

    path = REPO / "models" / name
    if not (path / "model.safetensors").exists():
        pytest.skip(f"{path} is not in this checkout")
    assert sum(f.stat().st_size for f in path.iterdir()) < 25 * 2**20
    model = AutoModel.from_pretrained(path)
    AutoTokenizer.from_pretrained(path)
    expected = "confidence" if name == "nap-tiny-longcot" else "parallel_forced"
    assert model.generation_config.strategy == expected
    card = (path / "README.md").read_text()
    isolated = name == "nap-tiny-isolated"
    assert bool(model.generation_config.path_isolation) == isolated
    assert bool(getattr(model.config, "path_isolation", False)) == isolated
    origin = "fine-tuned on a 2-core cpu" if isolated else "trained from scratch"
    assert origin in card.lower() and "toy arithmetic" in card


def test_sampled_toy_decoding_is_seeded_and_reaches_the_benchmark_files():
    """`ToyDecoding(temperature=T)` samples tokens with a fixed seed (a rerun decodes the same text, unlike
    argmax it can differ), and the benchmark keeps sampled runs in their own files and table."""
    from transformers import AutoModel, AutoTokenizer

    import nap_hf  # noqa: F401
    from nap_hf.data.toy_arithmetic import ToyArithmetic
    from nap_hf.evaluation.toy import ToyDecoding, evaluate_toy

    with pytest.raises(ValueError, match="temperature"):
        ToyDecoding(temperature=-1)
    path = REPO / "models" / "nap-tiny"
    model, tok = AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    problems = [ToyArithmetic(seed=0).problem(i, "test") for i in range(4)]
    sampled = ToyDecoding(temperature=5.0)
    assert sampled.name == "nap/parallel_forced T=5 k=1" and ToyDecoding().name == "nap/parallel_forced k=1"
    assert "temperature" not in ToyDecoding().generate_kwargs(tok)
    runs = [evaluate_toy(model, tok, problems, d).records for d in (sampled, sampled, ToyDecoding())]
    paths = [[r["paths"] for r in records] for records in runs]
    assert paths[0] == paths[1] and paths[0] != paths[2]  # T = 5 flattens the softmax: not the argmax text

    bench = script_module("benchmarks/toy_replication.py")
    keys = [bench._key(kind, kw) for kind, kw in bench.configurations([1], 0.5)]
    assert "nap-parallel_forced-m3-T0.5-k1" in keys and all("-T0.5-" in k for k in keys)
    assert "nap-parallel_forced-m3-k1" in [bench._key(kind, kw) for kind, kw in bench.configurations([1])]
    row = {"accuracy": 0.9, "global_arness": 0.1}
    table = bench._table({"nap-parallel_forced-m3-T0.5-k1": row}, [1], None, 0.5)
    assert "| NAP | parallel-forced m=3 | 90.0 / 0.10 |" in table and "temperature 0.5" in table
