"""The nap-tiny toy task: correct arithmetic (single digits by default, two digits LSD-first as the harder
variant), one slip per noisy path, distinct methods, held-out test problems (neither question nor numbers in
train), NAP and Long-CoT variants of the same traces that fit the nap-tiny canvas."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nap_hf.data import parse_instance, parse_longcot, render_slot_aligned
from nap_hf.data.format import build_layout
from nap_hf.data.toy_arithmetic import (
    TOY_PATH_LENGTH,
    TOY_SUMMARY_LENGTH,
    ToyArithmetic,
    build_toy_tokenizer,
    data_stats,
    equation_is_right,
    from_lsd,
    majority_answer,
    numbers_key,
    parse_equations,
    run_program,
    solution_methods,
    to_lsd,
    toy_path_length,
)


def _equations(path: str, digits: int) -> list[tuple[int, str, int, int]]:
    eqs = parse_equations(path, digits)
    assert eqs and all(eq is not None for eq in eqs), f"not equations of {digits}-digit numbers: {path!r}"
    return eqs


def test_lsd_round_trip_and_range():
    assert to_lsd(23) == "32" and to_lsd(7) == "70" and to_lsd(0) == "00"
    assert all(from_lsd(to_lsd(v)) == v for v in range(100))
    with pytest.raises(ValueError, match=r"\[0, 99\]"):
        to_lsd(100)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), index=st.integers(0, 10**6), digits=st.sampled_from([1, 2]))
def test_paths_are_correct_arithmetic_except_one_slip(seed, index, digits):
    inst = ToyArithmetic(seed=seed, slip_rate=0.5, digits=digits).instance(index)
    p = inst.problem
    low, high = (1, 9) if digits == 1 else (10, 99)
    assert 2 <= len(p.events) <= 3 and low <= p.start <= high and all(low <= abs(e) <= high for e in p.events)
    assert str(p.start) in p.question
    assert len(set(solution_methods(p.start, p.events, high))) >= 2  # genuinely different methods exist
    for path, slipped, answer in zip(inst.paths, inst.slipped, inst.path_answers, strict=True):
        eqs = _equations(path, digits)
        wrong = [(a, op, b, c) for a, op, b, c in eqs if (a + b if op == "+" else a - b) != c]
        assert len(wrong) == (1 if slipped else 0)
        assert [not equation_is_right(eq) for eq in eqs].count(True) == len(wrong)
        assert all(0 <= v <= high for eq in eqs for v in (eq[0], eq[2], eq[3]))
        assert eqs[-1][3] == answer
        if not slipped:
            assert answer == p.answer
    assert f"\\boxed{{{p.answer}}}" in inst.summary  # the summary is written from the gold answer


def test_methods_are_distinct_and_reach_the_answer():
    methods = solution_methods(50, (20, -30, 15), max_value=99)
    eqs = [run_program(m) for m in methods]
    assert len(set(eqs)) == len(eqs) >= 4  # 6 orders minus those out of range, plus grouped / net methods
    assert all(e[-1][3] == 55 for e in eqs)
    small = [run_program(m) for m in solution_methods(5, (2, -3, 1), max_value=9)]
    assert len(set(small)) == len(small) >= 6 and all(e[-1][3] == 5 for e in small)
    assert all(0 <= v <= 9 for e in small for eq in e for v in (eq[0], eq[2], eq[3]))
    inst = ToyArithmetic(seed=0).instance(0)
    assert len(set(inst.paths) | {None}) >= 2


def test_deterministic_and_seed_dependent():
    a, b = ToyArithmetic(seed=3), ToyArithmetic(seed=3)
    assert [a.instance(i).rows() for i in range(5)] == [b.instance(i).rows() for i in range(5)]
    assert [ToyArithmetic(seed=4).problem(i).question for i in range(5)] != [
        a.problem(i).question for i in range(5)
    ]


def test_held_out_test_problems_never_in_train():
    task = ToyArithmetic(seed=0)
    test = task.test_questions(200)
    train = task.train_instances(3000, test_size=200)
    assert not {inst.problem.question for inst in train} & test
    held_numbers = task.test_numbers(200)
    assert not {numbers_key(inst.problem) for inst in train} & held_numbers
    assert len({inst.problem.id for inst in train}) == len(train)


def test_nap_and_longcot_rows_share_traces():
    for inst in ToyArithmetic(seed=1).instances(20):
        rows = inst.rows()
        nap, cot = parse_instance(rows["nap"]["completion"]), parse_longcot(rows["longcot"]["completion"])
        assert nap.paths == inst.paths
        assert nap.answer == cot.answer == str(inst.problem.answer)
        assert (
            rows["nap"]["prompt"]
            == rows["longcot"]["prompt"]
            == [{"role": "user", "content": inst.problem.question}]
        )
        assert rows["nap"]["path_correct"] == [a == inst.problem.answer for a in inst.path_answers]


@pytest.mark.parametrize("digits", [1, 2])
def test_every_instance_fits_the_nap_tiny_canvas(digits):
    from transformers import PreTrainedTokenizerFast

    from nap_hf.testing import LLADA_SPECIALS

    task = ToyArithmetic(seed=0, digits=digits)
    insts = task.instances(400)
    corpus = [t for inst in insts[:300] for t in (inst.problem.question, inst.rows()["nap"]["completion"])]
    tok = PreTrainedTokenizerFast(tokenizer_object=build_toy_tokenizer(corpus, specials=LLADA_SPECIALS))
    assert task.path_length == toy_path_length(digits) == (TOY_PATH_LENGTH if digits == 1 else 32)
    layout = build_layout(tok, 3, task.path_length, TOY_SUMMARY_LENGTH)
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    for inst in insts:
        assert render_slot_aligned(tok, inst.paths, inst.summary, layout, filler_id=eos) is not None
    ids = tok("12+34=56", add_special_tokens=False)["input_ids"]
    assert [tok.decode([i]) for i in ids[:2]] == ["1", "2"]  # every digit is its own token
    assert len(tok("<think 2>", add_special_tokens=False)["input_ids"]) == 1


def test_data_stats_and_majority():
    assert majority_answer([3, 5, 5]) == 5 and majority_answer([1, 2, 3]) == 1
    stats = data_stats(ToyArithmetic(seed=0, slip_rate=0.12).instances(1000))
    assert 0.09 < stats["slip_rate"] < 0.15
    assert (
        stats["majority_vote_ceiling"] > 0.9 and stats["any_path_correct"] >= stats["majority_vote_ceiling"]
    )
    clean = data_stats(ToyArithmetic(seed=0, slip_rate=0.0).instances(100))
    assert clean["paths_correct"] == clean["majority_vote_ceiling"] == 1.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="slip_rate"):
        ToyArithmetic(slip_rate=1.5)
    with pytest.raises(ValueError, match="max_ops"):
        ToyArithmetic(max_ops=4)
    with pytest.raises(ValueError, match="digits"):
        ToyArithmetic(digits=3)
    with pytest.raises(ValueError, match="digits=2"):
        ToyArithmetic(question_numbers="lsd")


def test_parse_equations():
    assert parse_equations("7-3=4\n\n4+4=8\n") == [(7, "-", 3, 4), (4, "+", 4, 8)]
    assert parse_equations("32+51=83", digits=2) == [(23, "+", 15, 38)]
    assert parse_equations("7-3=\n12+1=13\nfoo") == [None, None, None]  # malformed / wrong width
    assert [equation_is_right(eq) for eq in parse_equations("7-3=4\n5+1=7\nx")] == [True, False, False]


def test_lsd_question_numbers_are_copied_verbatim_by_the_paths():
    dec, lsd = ToyArithmetic(seed=2, digits=2), ToyArithmetic(seed=2, question_numbers="lsd", digits=2)
    for i in range(20):
        a, b = dec.instance(i), lsd.instance(i)
        assert a.paths == b.paths and a.problem.answer == b.problem.answer  # same task, other notation
        assert to_lsd(b.problem.start) in b.problem.question
        first = b.paths[0].split("\n")[0]
        for operand in re.findall(r"\d\d", first)[:2]:
            if from_lsd(operand) in (b.problem.start, *map(abs, b.problem.events)):
                assert operand in b.problem.question
    with pytest.raises(ValueError, match="question_numbers"):
        ToyArithmetic(question_numbers="roman")


@pytest.mark.parametrize("digits,path_length", [(1, 20), (2, 32)])
def test_toy_decoding_follows_the_number_width(digits, path_length):
    from nap_hf.evaluation.toy import ToyDecoding

    kw = ToyDecoding(digits=digits, tokens_per_step=2).generate_kwargs(tokenizer=None)
    assert kw["path_length"] == path_length == ToyArithmetic(digits=digits).path_length
    assert kw["steps"] == (3 * path_length + TOY_SUMMARY_LENGTH) // 2
    m1 = ToyDecoding(digits=digits, m=1).generate_kwargs(tokenizer=None)
    assert m1["path_length"] == 3 * path_length  # same total budget at m = 1


def test_error_breakdown_separates_misreads_from_slips():
    """`score_toy_records`: a wrong path with right arithmetic is a misread, a wrong path with a wrong equation a
    slip; identical paths and the vote are counted per problem."""
    from nap_hf.data.toy_arithmetic import ToyProblem
    from nap_hf.evaluation.toy import score_toy_records, toy_record

    p = ToyProblem("t", "Ann has 7 apples. She gives 3 to Ben. She finds 4 more. How many?", 7, (-3, 4))  # 8
    right, misread, slipped = "7-3=4\n4+4=8", "7-4=3\n3+3=6", "7-3=4\n4+4=9"
    records = [
        toy_record(p, "8", [right, right, right], arness=0.2),  # all right, all identical
        toy_record(p, "6", [misread, misread, right], arness=0.4),  # vote 6: wrong; 2 misreads
        toy_record(p, "9", [slipped, right, right], arness=0.0),  # vote 8: right; 1 slip
    ]
    assert [r["paths_arithmetic_right"] for r in records[1:]] == [[True, True, True], [False, True, True]]
    s = score_toy_records(records, "nap")
    assert s["accuracy"] == pytest.approx(1 / 3) and s["vote_accuracy"] == pytest.approx(2 / 3)
    assert s["path_accuracy"] == pytest.approx(6 / 9)
    assert s["misread_share"] == pytest.approx(2 / 3)  # of the 3 wrong paths, 2 misread and 1 slipped
    assert s["identical_paths"] == pytest.approx(1 / 3)
    assert s["global_arness"] == pytest.approx(0.2)
    assert s["equation_accuracy"] == pytest.approx(17 / 18)
    chain = score_toy_records([toy_record(p, "6", [misread])], "longcot")
    assert (
        chain["vote_accuracy"] is None and chain["identical_paths"] is None and chain["misread_share"] == 1.0
    )
    with pytest.raises(ValueError, match="records"):
        score_toy_records([], "nap")
