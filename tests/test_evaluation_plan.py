"""The evaluation runner's parts: the frozen `RunPlan` (validation with clear errors, its summary entry),
the `Record` dataclass (its fields are the records' JSON keys), the pure `decode_batch` (same inputs, same
outputs, no file touched; the records `run_eval` writes are its records) and the one `is_stochastic` rule
(the runner's fingerprint and the toy evaluation's seed). On the tiny float64 LLaDA, with made-up examples."""

from __future__ import annotations

import builtins
import dataclasses
import io
import json
import os

import pytest

from nap_hf.evaluation.runner import (
    RESULT_FIELDS,
    DecodedBatch,
    EvalSettings,
    Record,
    RunPlan,
    RunSpec,
    build_prompt,
    decode_batch,
    is_stochastic,
    read_records,
    run_eval,
)
from nap_hf.evaluation.tasks import Example
from nap_hf.evaluation.toy import ToyDecoding

TINY = dict(path_length=8, summary_length=8, block_length=16)
EXAMPLES = [Example(f"toy-{i}", f"What is {i} + {i + 1}?", str(2 * i + 1)) for i in range(3)]


@pytest.fixture(scope="module")
def tok(llada_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(llada_dir)


def _plan(tok, strategy="ar", canvas=None, m=None, **settings) -> RunPlan:
    cfg = EvalSettings(family="llada", model_label="tiny", **{**TINY, **settings})
    return RunPlan.from_settings(cfg, RunSpec("gsm8k", strategy, canvas, 8, m), tok)


def _fields(plan: RunPlan, **change) -> dict:
    return {**{f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)}, **change}


# ------------------------------------------------------------------------------------------------ RunPlan


def test_run_plan_is_frozen(tok):
    source = {**_plan(tok).generate_kwargs}
    plan = RunPlan(**_fields(_plan(tok), generate_kwargs=source))
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.seed = 1
    with pytest.raises(TypeError):
        plan.generate_kwargs["steps"] = 1  # read-only keywords
    source["steps"] = 1  # the plan holds its own copy
    assert plan.generate_kwargs["steps"] == plan.steps_effective == 8
    nap = _plan(tok, "parallel_forced", "nap", 3)
    assert isinstance(nap.header_ids, tuple) and all(isinstance(h, tuple) for h in nap.header_ids)
    again = RunPlan(**_fields(nap))  # rebuilt from its fields: validation passes
    assert again == nap and hash(again) == hash(nap) and again != _plan(tok, "parallel_forced", "nap", 2)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"run": ("gsm8k", "ar", None, 8, None)}, TypeError, "`run` must be a RunSpec.*from_settings"),
        ({"generate_kwargs": [("strategy", "ar")]}, TypeError, "`generate_kwargs` must be a mapping"),
        ({"run": RunSpec("gsm8k", "random", None, 8, None)}, ValueError, "'ar' but run.strategy is 'random'"),
        ({"run": RunSpec("gsm8k", "ar", "nap", 8, 3)}, ValueError, "plain canvas but run.canvas is 'nap'"),
        ({"prompt_style": "auto"}, ValueError, "`prompt_style` must be 'question' or 'cot'"),
        ({"fingerprint": ""}, ValueError, "`fingerprint` must be a non-empty string"),
        ({"steps_effective": 0}, ValueError, "`steps_effective` must be an integer >= 1"),
        ({"steps_effective": 16}, ValueError, r"`steps_effective` \(16\) differs from generate_kwargs"),
        ({"slots": True}, ValueError, "`slots` must be an integer >= 1, got True"),
        ({"seed": 1.5}, ValueError, "`seed` must be an integer"),
        ({"answer_task": "mmlu"}, ValueError, r"`answer_task` must be one of \['gpqa', 'gsm8k', 'math500'\]"),
    ],
)
def test_run_plan_validation_names_the_field(tok, change, error, match):
    with pytest.raises(error, match=match):
        RunPlan(**_fields(_plan(tok), **change))


def test_run_plan_summary_entry(tok):
    plan = _plan(tok, "parallel_forced", "nap", 3)
    entry = plan.to_dict()
    assert entry["strategy"] == "parallel_forced" and entry["canvas"] == "nap" and entry["m"] == 3
    assert entry["generate_kwargs"] == dict(plan.generate_kwargs) and entry["slots"] == 3 * 8 + 8
    assert entry["header_ids"] == [list(h) for h in plan.header_ids] and len(entry["header_ids"]) == 4
    assert json.loads(json.dumps(entry)) == entry  # JSON as it stands
    assert _plan(tok).to_dict()["header_ids"] is None


# ---------------------------------------------------------------------------------- Record, decode_batch


@pytest.fixture(scope="module")
def written(tmp_path_factory, llada64, tok):
    """A small run_eval on the made-up examples: (out_dir, summary)."""
    out = tmp_path_factory.mktemp("eval_parts")
    summary = run_eval(
        llada64, tok, "gsm8k", ["ar", "parallel_forced"], [8], 3, out_dir=out, examples=EXAMPLES,
        batch_size=2, progress=False, model_label="tiny", **TINY,
    )  # fmt: skip
    return out, summary


def test_record_fields_are_the_json_keys(written):
    out, summary = written
    names = [f.name for f in dataclasses.fields(Record)]
    for run in summary["runs"].values():
        for line in read_records(out / run["records"]):
            assert list(line) == names  # the same keys, in field order
            assert Record.from_dict(line).to_dict() == line
    assert set(RESULT_FIELDS) < set(names) and "seconds" not in RESULT_FIELDS
    assert RESULT_FIELDS[0] == "id" and RESULT_FIELDS[-1] == "nfe"
    line = read_records(out / run["records"])[0]
    with pytest.raises(ValueError, match=r"missing \['seconds'\], unknown \['time'\]"):
        Record.from_dict({**{k: v for k, v in line.items() if k != "seconds"}, "time": 0.0})


def _recorded_plan(summary: dict, key: str, tok) -> RunPlan:
    """The plan of run ``key`` rebuilt from the settings ``summary.json`` records."""
    run = summary["runs"][key]
    spec = RunSpec(run["task"], run["decoding"], run["canvas"], run["steps"], run["m"])
    return RunPlan.from_settings(EvalSettings.from_dict(summary["settings"]), spec, tok)


def test_summary_entry_is_the_plan_plus_results(written, tok):
    _, summary = written
    for key, entry in summary["runs"].items():
        expected = _recorded_plan(summary, key, tok).to_dict()
        assert {k: entry[k] for k in expected} == expected  # the fingerprint included
        assert list(entry)[: len(expected)] == list(expected)
        assert list(entry)[len(expected) :][:3] == ["records", "complete", "n"]


def _no_files(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"decode_batch opened a file: {args[:1]}")

    for module, name in ((builtins, "open"), (io, "open"), (os, "open")):
        monkeypatch.setattr(module, name, refuse)


@pytest.mark.parametrize(("strategy", "canvas", "m"), [("ar", None, None), ("parallel_forced", "nap", 3)])
def test_decode_batch_is_pure(written, monkeypatch, llada64, tok, strategy, canvas, m):
    """Same inputs, same outputs, and no file touched; its records are the lines run_eval wrote."""
    out, summary = written
    key = RunSpec("gsm8k", strategy, canvas, 8, m).key
    plan = _recorded_plan(summary, key, tok)
    cfg = EvalSettings.from_dict(summary["settings"])
    prompts = [build_prompt(tok, e, plan.prompt_style, cfg.instruction, cfg) for e in EXAMPLES]
    ticks = iter(range(100))
    clock = lambda: float(next(ticks))  # noqa: E731 (1 s per call: seconds = 1 / batch size)
    with monkeypatch.context() as patch:
        _no_files(patch)
        first = decode_batch(llada64, tok, plan, EXAMPLES, prompts, [2], traces={2}, clock=clock)
        again = decode_batch(llada64, tok, plan, EXAMPLES, prompts, [2], traces={2}, clock=clock)
        pair = decode_batch(llada64, tok, plan, EXAMPLES, prompts, [0, 1], clock=clock)
    assert isinstance(first, DecodedBatch) and first == again
    assert [r.seconds for r in first.records + pair.records] == [1.0, 0.5, 0.5]
    assert first.nfe == first.records[0].nfe and not pair.traces
    (trace,) = first.traces
    assert trace["id"] == "toy-2" and trace["index"] == 2 and trace["prompt_length"] == len(prompts[2])
    lines = read_records(out / summary["runs"][key]["records"])
    decoded = [r.to_dict() for r in pair.records + first.records]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(decoded) == strip(lines)
    with pytest.raises(ValueError, match="`batch` is empty"):
        decode_batch(llada64, tok, plan, EXAMPLES, prompts, [])


# ------------------------------------------------------------------------------------------ is_stochastic


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"strategy": "random"}, True),
        ({"strategy": "ar", "temperature": 0.7}, True),
        ({"strategy": "parallel_forced", "temperature": 0.0}, False),
        ({"strategy": "confidence"}, False),
        ({"strategy": "dream", "alg": "origin"}, True),
        ({"strategy": "dream", "alg": "maskgit_plus"}, False),
        ({"strategy": "dream", "alg": "maskgit_plus", "alg_temp": 0.5}, True),
        ({"strategy": "confidence", "alg": "origin"}, False),  # alg is Dream's only
    ],
)
def test_is_stochastic(kwargs, expected):
    assert is_stochastic(kwargs) is expected


def test_one_rule_for_the_fingerprint_and_the_toy_seed(tok):
    """The runner fingerprints the batch size of a stochastic run only; the toy evaluation seeds it."""
    for strategy, settings in [("ar", {}), ("random", {}), ("ar", {"temperature": 0.5})]:
        one, two = (_plan(tok, strategy, batch_size=b, **settings) for b in (1, 2))
        assert one.stochastic is two.stochastic is is_stochastic(one.generate_kwargs)
        assert (one.fingerprint != two.fingerprint) is one.stochastic, (strategy, settings)
    for strategy, temperature in [("ar", 0.0), ("random", 0.0), ("confidence", 0.5)]:
        kwargs = ToyDecoding(strategy, layout="longcot", temperature=temperature).generate_kwargs(None)
        assert ("seed" in kwargs) is is_stochastic(kwargs) is (strategy == "random" or temperature > 0)
