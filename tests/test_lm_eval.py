"""The lm-evaluation-harness model `nap_hf` (`nap_hf.evaluation.lm_eval_model`) on nap-tiny.

Fast: devices, dtypes, settings precedence, the chat-template warning, common random numbers, and a quick
in-process run of the local toy task (these skip when lm-eval is absent). Slow (`make test-slow`): lm-eval's
command line as a subprocess, single process and two processes (torchrun, gloo, CPU), against the toy
evaluation `benchmarks/toy_replication.py` runs on the same held-out problems.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nap_hf.evaluation.lm_eval_model import (
    LM_EVAL_AVAILABLE,
    _mask_draws,
    _resolve_dtype,
    content_seed,
    resolve_device,
)

ROOT = Path(__file__).resolve().parent.parent
NAP_TINY = ROOT / "models" / "nap-tiny"
needs_lm_eval = pytest.mark.skipif(
    not LM_EVAL_AVAILABLE, reason="lm-eval not installed (pip install nap-hf[harness])"
)


class _Records(logging.Handler):
    """The records of the model's logger (lm-eval's CLI shows only the `lm_eval` loggers; not propagated)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)

    def messages(self, level: int = logging.WARNING) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.fixture
def log():
    logger = logging.getLogger("lm_eval.nap_hf")
    handler, old = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


# ------------------------------------------------------------------------------------ devices, dtypes


def test_resolve_device(log):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="'gpu' is not a device"):
        resolve_device("gpu")
    bad = (
        f"cuda:{max(1, torch.cuda.device_count())}"  # one past the last GPU, or a second one on a CPU machine
    )
    with pytest.raises(ValueError, match=f"device='{bad}'"):
        resolve_device(bad)
    if not torch.cuda.is_available():
        assert resolve_device("cuda:0") == torch.device("cpu")  # lm-eval's CLI default: falls back
        assert any("running on the CPU" in m for m in log.messages())
        with pytest.raises(ValueError, match="no CUDA device; use --device cpu"):
            resolve_device("cuda")  # asked for by name: an error, not a silent fallback
    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match="no mps device"):
            resolve_device("mps")


def test_dtype_auto():
    class Config:
        def __init__(self, dtype):
            self.dtype = dtype

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert _resolve_dtype("auto", cpu, Config("bfloat16")) == torch.float32
    assert _resolve_dtype("auto", cuda, Config("bfloat16")) == torch.bfloat16
    assert _resolve_dtype("auto", cuda, Config("float32")) == torch.float32  # the checkpoint's (nap-tiny)
    assert _resolve_dtype("auto", cuda, Config(None)) == torch.bfloat16
    assert _resolve_dtype("float64", cpu, None) == torch.float64
    with pytest.raises(ValueError, match="dtype='fp77' is not a torch dtype"):
        _resolve_dtype("fp77", cpu, None)


# ------------------------------------------------------------------------------ common random numbers


def test_mask_draws_are_common_across_continuations():
    """Equally seeded draws share their common positions, whatever the continuation's length; the seed
    comes from the content."""
    for sampler in ("tokens", "time"):
        a, wa = _mask_draws(16, 9, sampler, torch.Generator().manual_seed(3), "cpu")
        b, wb = _mask_draws(16, 9, sampler, torch.Generator().manual_seed(3), "cpu")
        assert torch.equal(a, b) and torch.equal(wa, wb)
    short, _ = _mask_draws(16, 5, "time", torch.Generator().manual_seed(3), "cpu")
    long, _ = _mask_draws(16, 9, "time", torch.Generator().manual_seed(3), "cpu")
    assert torch.equal(short, long[:, :5])
    assert content_seed(0, [1, 2]) == content_seed(0, [1, 2]) != content_seed(0, [1, 3])
    assert content_seed(0, [1, 2]) != content_seed(1, [1, 2])
    assert content_seed(0, [1, 2], [3]) != content_seed(0, [1], [2, 3]) < 2**63


# ----------------------------------------------------------------------------------------- the model


def _toy_problems(n: int):
    from nap_hf.data.toy_arithmetic import ToyArithmetic

    return [ToyArithmetic(seed=0).problem(i, "test") for i in range(n)]


def _instance(kind: str, args: tuple, doc_id: int = 0):
    from lm_eval.api.instance import Instance

    return Instance(kind, {}, args, doc_id, metadata=("t", doc_id, 1))


@pytest.fixture(scope="module")
def nap_lm():
    if not LM_EVAL_AVAILABLE:
        pytest.skip("lm-eval not installed")
    from nap_hf.evaluation.lm_eval_model import NapHFLM

    return NapHFLM(pretrained=str(NAP_TINY), mc_num=32, mc_batch_size=32)


@needs_lm_eval
def test_registered():
    from lm_eval.api.registry import get_model

    from nap_hf.evaluation.lm_eval_model import NapHFLM, register

    register()  # a second registration (the module imported again, e.g. as __main__) keeps the first
    assert get_model("nap_hf") is NapHFLM
    assert get_model("hf").__name__ == "HFLM"  # lm-eval's own models are still there


@needs_lm_eval
def test_no_arguments_decode_the_checkpoint_setting(nap_lm):
    """nap-tiny with no model arguments: its generation config (parallel-forced, 3 x 20 + 12), float32 on
    the CPU."""
    plan, until = nap_lm._plan({"until": ["\n\n"]})
    assert nap_lm.options == {} and until == ["\n\n"]
    assert plan.structured and plan.slots == 72 and plan.kwargs == {"steps": 72} and not plan.notes
    assert nap_lm.model.dtype == torch.float32  # auto: float32 on the CPU, and nap-tiny's own dtype
    assert (nap_lm.rank, nap_lm.world_size) == (0, 1)


@needs_lm_eval
def test_precedence_and_one_warning(nap_lm, log):
    """checkpoint < model_args < gen_kwargs; the steps clamp is logged once, not once per batch."""
    from nap_hf.evaluation.lm_eval_model import NapHFLM

    lm = NapHFLM(
        pretrained=nap_lm.model, tokenizer=nap_lm.tokenizer, steps=256, temperature=0.5, batch_size=1
    )
    assert [m for m in log.messages() if "clamped" in m] == [
        "nap_hf: steps=256 exceeds the 72 slot positions of the canvas; clamped to 72."
    ]
    options, _ = lm.generate_options({"steps": 36, "do_sample": False, "max_gen_toks": 256})
    assert options == {"steps": 36, "temperature": 0.0}  # gen_kwargs win; do_sample=False is greedy
    assert lm.generate_options({})[0] == {"steps": 256, "temperature": 0.5}
    prompts = [lm.apply_chat_template([{"role": "user", "content": p.question}]) for p in _toy_problems(2)]
    reqs = [
        _instance("generate_until", (p, {"until": ["\n\n"], "max_gen_toks": 64}), i)
        for i, p in enumerate(prompts)
    ]
    texts = lm.generate_until(reqs, disable_tqdm=True)
    assert all("\\boxed" in t for t in texts)  # the NAP canvas is returned whole, not cut at "\n\n"
    assert len([m for m in log.messages() if "clamped" in m]) == 1  # two batches, no second warning
    assert len([m for m in log.messages(logging.INFO) if "max_gen_toks=" in m]) == 1  # said once
    with pytest.raises(ValueError, match=r"unknown gen_kwargs \['num_beams'\]"):
        lm.generate_options({"num_beams": 2})
    with pytest.raises(ValueError, match=r"unknown model argument\(s\) \['stepz'\]"):
        NapHFLM(pretrained=nap_lm.model, tokenizer=nap_lm.tokenizer, stepz=3)


@needs_lm_eval
def test_a_strategy_defined_in_the_tests_runs(nap_lm):
    """The model passes strategy names on to `generate`: one written in the tests (left to right, one
    position per step; tests/strategies_for_tests.py) runs through lm-eval's `generate_until` with nothing in
    nap_hf naming it, and decodes as `ar` does with one position per step."""
    from nap_hf.evaluation.lm_eval_model import NapHFLM

    from .strategies_for_tests import LeftToRight, registered

    prompts = [
        nap_lm.apply_chat_template([{"role": "user", "content": p.question}]) for p in _toy_problems(2)
    ]
    reqs = [_instance("generate_until", (p, {"until": ["</think>"]}), i) for i, p in enumerate(prompts)]
    texts = {}
    with registered():
        for name in (LeftToRight.name, "ar"):
            lm = NapHFLM(
                pretrained=nap_lm.model, tokenizer=nap_lm.tokenizer, strategy=name, gen_length=16, steps=16
            )
            texts[name] = lm.generate_until(reqs, disable_tqdm=True)
    assert texts[LeftToRight.name] == texts["ar"] and any(texts["ar"])


@needs_lm_eval
def test_chat_template_warning(nap_lm, log):
    nap_lm._once.discard("chat")
    chat = nap_lm.apply_chat_template([{"role": "user", "content": "Ben owns 9 pencils."}])
    nap_lm._begin("generate_until", [], [chat])
    assert not [m for m in log.messages() if "chat template" in m]
    for _ in range(2):
        nap_lm._begin("generate_until", [], ["Ben owns 9 pencils."])
    warned = [m for m in log.messages() if "chat template" in m]
    assert len(warned) == 1 and "--apply_chat_template" in warned[0]


@needs_lm_eval
def test_choice_ranking_is_stable_under_a_change_of_seed(nap_lm):
    """Multiple choice on nap-tiny: its own decoded canvas against the same canvas with another boxed answer.
    With common random numbers per context, the chosen answer does not move with the seed (with draws of
    their own per continuation, 0.125 of such problems kept their choice over 3 seeds at mc_num 16, vs 0.75)."""
    from nap_hf.evaluation.toy import ToyDecoding, toy_prompts

    tok, problems = nap_lm.tokenizer, _toy_problems(3)
    inputs = toy_prompts(tok, problems)
    seqs = nap_lm.model.generate(**inputs, **ToyDecoding().generate_kwargs(tok))
    P = inputs["input_ids"].shape[1]
    digits = [tok.convert_tokens_to_ids(str(d)) for d in range(10)]
    reqs = []
    for i in range(len(problems)):
        canvas = seqs[i, P:].tolist()
        pos = max(j for j, t in enumerate(canvas) if t in digits)  # the summary's boxed answer
        context = tok.decode(inputs["input_ids"][i][inputs["attention_mask"][i].bool()])
        for d in (0, 3, 6):
            choice = list(canvas)
            choice[pos] = digits[(digits.index(canvas[pos]) + d) % 10]
            reqs.append(_instance("loglikelihood", (context, tok.decode(choice)), i))
    rankings = []
    for seed in (0, 1):
        nap_lm.seed = seed
        lls = [ll for ll, _ in nap_lm.loglikelihood(reqs, disable_tqdm=True)]
        rankings.append([max(range(3), key=lambda c: lls[3 * i + c]) for i in range(len(problems))])
    nap_lm.seed = 0
    assert rankings == [[0] * len(problems)] * 2  # the model's own answer is the choice, under both seeds


@needs_lm_eval
def test_loglikelihood_rolling_is_seeded_by_content(nap_lm):
    first, second = (p.question for p in _toy_problems(2))
    alone = nap_lm.loglikelihood_rolling([_instance("loglikelihood_rolling", (second,))])
    after = nap_lm.loglikelihood_rolling([_instance("loglikelihood_rolling", (t,)) for t in (first, second)])
    assert after[1] == alone[0] < 0  # another position in the request list, the same estimate


@needs_lm_eval
def test_quick_run_matches_the_toy_evaluation(tmp_path):
    """lm-eval in-process on 4 held-out toy problems, nap-tiny with no model arguments and the chat
    template: the same per-problem verdicts as `evaluate_toy` (what `toy_replication.py` reports)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from nap_hf.evaluation.lm_eval_toy import TOY_TASK, write_toy_task

    task_dir = write_toy_task(tmp_path / "task", 4)
    results = lm_eval.simple_evaluate(
        model="nap_hf",
        model_args=f"pretrained={NAP_TINY}",
        tasks=[TOY_TASK],
        task_manager=TaskManager(include_path=str(task_dir)),
        apply_chat_template=True,
        log_samples=True,
        batch_size=4,
    )
    verdicts = {s["doc"]["id"]: s["acc"] for s in results["samples"][TOY_TASK]}
    toy = _toy_result(4)
    assert verdicts == {r["id"]: float(r["correct"]) for r in toy.records}
    assert results["results"][TOY_TASK]["acc,none"] == pytest.approx(toy.accuracy)


def _toy_result(n: int):
    from transformers import AutoModel, AutoTokenizer

    from nap_hf.evaluation.toy import ToyDecoding, evaluate_toy

    model, tok = AutoModel.from_pretrained(NAP_TINY).eval(), AutoTokenizer.from_pretrained(NAP_TINY)
    return evaluate_toy(model, tok, _toy_problems(n), ToyDecoding(), batch_size=100)


# ------------------------------------------------------------------------- the command line (slow)

N_CLI = 30  # held-out problems of the command-line runs


def _cli(*launcher: str) -> list[str]:
    """The command a user runs: the console script when installed, else the module."""
    script = shutil.which("nap-hf-eval-harness", path=str(Path(sys.executable).parent))
    if launcher:
        return [*launcher, "-m", "nap_hf.evaluation.lm_eval_model"]
    return [script] if script else [sys.executable, "-m", "nap_hf.evaluation.lm_eval_model"]


def _run(cmd: list[str], out: Path, task_dir: Path, extra_env: dict | None = None) -> tuple[dict, str]:
    args = [
        "--model", "nap_hf", "--model_args", f"pretrained={NAP_TINY}", "--include_path", str(task_dir),
        "--tasks", "nap_tiny_toy", "--apply_chat_template", "--batch_size", "16",
        "--log_samples", "--output_path", str(out),
    ]  # fmt: skip
    if torch.cuda.is_available():
        args += ["--device", "cpu"]  # the same device as the toy evaluation below
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.update(TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", **(extra_env or {}))
    res = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    (samples,) = out.glob("*/samples_nap_tiny_toy_*.jsonl")
    (results,) = out.glob("*/results_*.json")
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    return {"results": json.loads(results.read_text()), "samples": rows}, res.stderr


@pytest.fixture(scope="module")
def cli_task(tmp_path_factory):
    if not LM_EVAL_AVAILABLE:
        pytest.skip("lm-eval not installed")
    from nap_hf.evaluation.lm_eval_toy import write_toy_task

    return write_toy_task(tmp_path_factory.mktemp("toy-task"), N_CLI)


@pytest.fixture(scope="module")
def single_run(cli_task, tmp_path_factory):
    return _run(_cli(), tmp_path_factory.mktemp("single"), cli_task)


@pytest.mark.slow
def test_cli_reports_the_toy_replication_accuracy(single_run):
    """The plain command line, no --model_args but the checkpoint and no --device: the accuracy that
    `benchmarks/toy_replication.py` reports for the same problems (parallel-forced m=3, 1 token/step)."""
    run, stderr = single_run
    toy = _toy_result(N_CLI)
    acc = run["results"]["results"]["nap_tiny_toy"]["acc,none"]
    assert acc == pytest.approx(toy.accuracy)
    assert {s["doc"]["id"]: s["acc"] for s in run["samples"]} == {
        r["id"]: float(r["correct"]) for r in toy.records
    }
    assert "clamped" not in stderr and "chat template, but" not in stderr
    if not torch.cuda.is_available():
        assert "running on the CPU" in stderr  # lm-eval's default device "cuda:0" fell back


@pytest.mark.slow
def test_two_processes_split_the_requests(single_run, cli_task, tmp_path):
    """torchrun, 2 CPU processes (gloo): each rank serves its own requests, together all of them once, and
    the merged answers are the single-process ones."""
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
    ]
    run, stderr = _run(_cli(*launcher), tmp_path / "out", cli_task, {"LMEVAL_LOG_LEVEL": "DEBUG"})
    docs = {}
    for line in stderr.splitlines():
        if "generate_until docs:" in line:
            rank = int(line.split("nap_hf rank ")[1].split()[0])
            docs[rank] = [d for _, d in json.loads(line.split("docs: ", 1)[1])]
    assert sorted(docs) == [0, 1]
    assert not set(docs[0]) & set(docs[1]) and sorted(docs[0] + docs[1]) == list(range(N_CLI))
    single = {s["doc_id"]: s["resps"] for s in single_run[0]["samples"]}
    assert {s["doc_id"]: s["resps"] for s in run["samples"]} == single
    acc = [r["results"]["results"]["nap_tiny_toy"]["acc,none"] for r in (run, single_run[0])]
    assert acc[0] == pytest.approx(acc[1])
