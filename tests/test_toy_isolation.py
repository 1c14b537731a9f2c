"""Toy-scale measurements of path isolation (issue 17): ToyDecoding's fixed path length (Table 5 at toy scale),
Global-ARness over content positions, the independence probe of `benchmarks/toy_replication.py` (a committed
foreign path 1 cannot change isolated paths 2..m), per-path draws when sampling isolated paths, and the report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from tests.scripts import script_module

REPO = Path(__file__).resolve().parent.parent
NAP_TINY = REPO / "models" / "nap-tiny"


@pytest.fixture(scope="module")
def bench():
    return script_module("benchmarks/toy_replication.py")


@pytest.fixture(scope="module")
def tiny():
    from transformers import AutoModel, AutoTokenizer

    import nap_hf  # noqa: F401

    torch.set_num_threads(1)
    return AutoModel.from_pretrained(NAP_TINY).eval(), AutoTokenizer.from_pretrained(NAP_TINY)


@pytest.fixture(scope="module")
def problems():
    from nap_hf.data.toy_arithmetic import ToyArithmetic

    return [ToyArithmetic(seed=0).problem(i, "test") for i in range(2)]


def test_path_length_fixes_every_slot_and_is_checked():
    from nap_hf.evaluation.toy import ToyDecoding

    assert ToyDecoding(m=1).generate_kwargs(None)["path_length"] == 60  # the constant-budget rule
    for m in (1, 2, 5):
        kw = ToyDecoding(m=m, path_length=20).generate_kwargs(None)
        assert kw["m"] == m and kw["path_length"] == 20 and kw["steps"] == 20 * m + 12
    assert (
        ToyDecoding(m=5, path_length=20, path_isolation=True).name
        == "nap/parallel_forced m=5 L=20 isolated k=1"
    )
    for bad in (0, True, 2.5):
        with pytest.raises(ValueError, match="path_length"):
            ToyDecoding(path_length=bad)


def test_content_positions_are_the_digits(tiny):
    from nap_hf.evaluation.toy import content_positions

    _, tok = tiny
    text = "7-3=4\n4+4=8\n</think 1>The answer is \\boxed{18}.<|endoftext|>"
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    pieces = [tok.decode([i]) for i in ids[0].tolist()]
    got = [p for p, c in zip(pieces, content_positions(tok, ids)[0].tolist(), strict=True) if c]
    assert got == ["7", "3", "4", "4", "4", "8", "1", "8"]  # no `=`, operators, newlines, tags, wording, EOS


def test_content_arness_is_the_digits_subsequence(tiny, problems):
    """`evaluate_toy`'s per-problem content AR-ness equals Global-ARness@1 computed by hand over the digit positions
    of the same decode, and differs from the all-positions value."""
    from nap_hf.evaluation.toy import ToyDecoding, evaluate_toy, toy_prompts
    from nap_hf.metrics import global_arness

    model, tok = tiny
    decoding = ToyDecoding()
    res = evaluate_toy(model, tok, problems, decoding)
    inputs = toy_prompts(tok, problems)
    out = model.generate(**inputs, return_dict_in_generate=True, **decoding.generate_kwargs(tok))
    P = inputs["input_ids"].shape[1]
    digits = torch.tensor(
        [
            [bool(re.fullmatch(r"\d", tok.decode([i]).strip())) for i in row]
            for row in out.sequences[:, P:].tolist()
        ]
    )
    expect = global_arness(out.trace[:, P:], positions=digits).per_row
    assert [r["content_arness@1"] for r in res.records] == pytest.approx(expect)
    assert res.content_arness == pytest.approx(sum(expect) / len(expect))
    assert res.content_arness != pytest.approx(res.global_arness)


@pytest.mark.parametrize("isolated", [True, False])
def test_probe_cannot_change_isolated_paths(bench, tiny, problems, isolated):
    """Path 1's slot holding another problem's decoded path 1: the isolated decode of paths 2..3 is the normal
    decode's, token for token (they never see path 1); with full attention they see it and change."""
    from nap_hf.evaluation.toy import ToyDecoding

    model, tok = tiny
    r = bench.independence_probe(model, tok, problems, ToyDecoding(path_isolation=isolated), batch_size=1)
    assert r["n"] == len(problems) and [x["donor"] for x in r["records"]] == [
        p.id for p in problems[1:] + problems[:1]
    ]
    if isolated:
        assert r["paths_changed"] == 0.0
    else:
        assert r["paths_changed"] > 0.0
    with pytest.raises(ValueError, match="at least 2"):
        bench.independence_probe(model, tok, problems[:1], ToyDecoding())


def test_committed_path_holds_the_given_tokens(bench, tiny, problems):
    from nap_hf.evaluation.toy import ToyDecoding, toy_prompts

    model, tok = tiny
    decoding = ToyDecoding(path_isolation=True)
    kwargs = decoding.generate_kwargs(tok)
    inputs = toy_prompts(tok, problems[:2])
    path = tok("7-3=4\n4+4=8\n</think 1>", add_special_tokens=False)["input_ids"]
    path = torch.tensor([path + [tok.eos_token_id] * (20 - len(path))] * 2)
    out = bench.decode_with_committed_path(model, tok, inputs, kwargs, path)
    assert [p[0] for p in out.paths] == ["7-3=4\n4+4=8", "7-3=4\n4+4=8"]
    P = inputs["input_ids"].shape[1]
    assert bool((out.trace[:, P + 1 : P + 21] == -1).all())  # never committed by the loop
    assert not bool((out.sequences == tok.mask_token_id).any())
    with pytest.raises(ValueError, match="path_ids"):
        bench.decode_with_committed_path(model, tok, inputs, kwargs, path[:, :5])


def test_sampled_isolated_paths_get_their_own_draws(tiny, problems):
    """With the same header for every path, isolated paths are one computation: identical under argmax; sampled,
    each path position has its own draw, so the paths differ."""
    from nap_hf.data.format import build_layout
    from nap_hf.evaluation.toy import toy_prompts

    model, tok = tiny
    header = build_layout(tok, 3, 20, 12).header_ids
    same = [header[0]] * 3 + [header[-1]]
    inputs = toy_prompts(tok, problems)
    kw = dict(strategy="parallel_forced", m=3, path_length=20, summary_length=12, steps=72, tokenizer=tok)
    kw.update(header_ids=same, path_isolation=True, return_dict_in_generate=True)
    P = inputs["input_ids"].shape[1]
    spans = build_layout(tok, 3, 20, 12).path_spans

    def distinct_paths(out) -> list[int]:  # per problem, the distinct token sequences of its three path slots
        return [len({tuple(row[P + s.start : P + s.end].tolist()) for s in spans}) for row in out.sequences]

    assert distinct_paths(model.generate(**inputs, **kw)) == [1] * len(problems)
    assert max(distinct_paths(model.generate(**inputs, **kw, temperature=1.0, seed=0))) > 1


def test_configurations_keys_and_report(bench, tmp_path):
    from nap_hf.data.toy_arithmetic import ToyProblem
    from nap_hf.evaluation.toy import score_toy_records, toy_record

    keys = [bench._key(kind, kw) for kind, kw in bench.table5_configurations(20)]
    assert (
        "nap-parallel_forced-m3-k1" in keys and "iso-parallel_forced-m3-k1" in keys
    )  # the main table's runs
    assert "nap-parallel_forced-m5-L20-k1" in keys and "iso-parallel_forced-m1-L20-k1" in keys
    assert "iso-parallel_forced-m3-k8" in [bench._key(kind, kw) for kind, kw in bench.configurations([8])]

    p = ToyProblem("t", "Ann has 7 apples. She gives 3 to Ben. She finds 4 more. How many?", 7, (-3, 4))  # 8
    right, wrong = "7-3=4\n4+4=8", "7-4=3\n3+3=6"
    records = [
        toy_record(p, "8", [right, right, wrong]),  # follows the vote
        toy_record(p, "8", [wrong, wrong, right]),  # right where the vote is wrong
        toy_record(p, "6", [right, right, right]),  # wrong where the vote is right
    ]
    assert bench.summary_stats(records) == pytest.approx(
        {"summary_follows_vote": 1 / 3, "summary_fixes_vote": 1 / 3, "summary_breaks_vote": 1 / 3}
    )
    row = {**score_toy_records(records), "records": records, "model": "checkpoint-9 (step 9)"}
    row["content_arness"] = 0.5
    results = {"iso-parallel_forced-m2-L20-k1": row, "iso-parallel_forced-m3-k1": row}
    probes = {
        "iso": {
            "normal_accuracy": 1.0,
            "accuracy": 0.5,
            "vote_accuracy": 0.5,
            "other_paths_right": 1.0,
            "paths_changed": 0.0,
            "answer_changed": 0.5,
            "model": "checkpoint-9 (step 9)",
        }
    }
    md = bench.isolation_report(results, probes, [1], 3, {"iso": "checkpoint-9 (step 9)"})
    assert (
        "| nap-tiny-isolated [checkpoint-9 (step 9)] | 2 | 66.7 | 66.7 | 66.7 | 33.3 | 33.3 / 33.3 | 33 |"
        in md
    )
    assert (
        "| nap-tiny-isolated [checkpoint-9 (step 9)] | 100.0 | 50.0 | 50.0 | 100.0 | 0.0 | 50.0 | n/a |" in md
    )
    assert "| nap-tiny | 1 | n/a |" in md  # rows without a run say so

    ckpt = tmp_path / "checkpoint-9"
    ckpt.mkdir()
    assert bench.model_label(ckpt) == "checkpoint-9"
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 9}))
    assert bench.model_label(ckpt) == "checkpoint-9 (step 9)"
