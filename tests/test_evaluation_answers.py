"""`nap_hf.evaluation` answers: table-driven extraction and correctness across GSM8K, MATH-500 and GPQA."""

from __future__ import annotations

import threading
import time

import pytest

from nap_hf.data import render_instance, render_longcot, render_summary
from nap_hf.evaluation import (
    answer_region,
    canonical_task,
    extract_answer,
    extract_letter,
    is_correct,
    normalize_number,
)


def nap_text(paths: list[str], summary: str) -> str:
    return render_instance(paths, summary)


# ------------------------------------------------------------------------------------------ extraction table

# (case id, text, task, expected extracted answer)
EXTRACT = [
    ("boxed", "So 9 * 2 = 18. \\boxed{18}", "gsm8k", "18"),
    ("final-answer-is", "So she makes 18 dollars. The final answer is 18.", "gsm8k", "18"),
    ("final-answer-dollar", "The final answer is $\\$18.00$.", "gsm8k", "\\$18.00"),
    ("hashes", "9 * 2 = 18\n#### 18", "gsm8k", "18"),
    ("hashes-comma", "Total: 1,234\n#### 1,234", "gsm8k", "1,234"),
    ("last-boxed-wins", "First \\boxed{12}, then corrected: \\boxed{18}", "gsm8k", "18"),
    ("last-number-fallback", "16 - 3 - 4 = 9 eggs, 9 * 2 = 18 dollars", "gsm8k", "18"),
    ("last-number-with-commas", "The farm earns $1,234.50 per week", "gsm8k", "$1,234.50"),
    ("last-number-negative", "The temperature falls to -5 degrees", "gsm8k", "-5"),
    ("last-number-spaced-minus", "It was - 3 degrees. So the answer is - 3.", "gsm8k", "- 3"),
    ("last-number-binary-minus", "We compute 5 - 3", "gsm8k", "3"),
    ("no-number", "I do not know.", "gsm8k", None),
    ("none-text", None, "gsm8k", None),
    ("math-frac", "Thus $x = \\boxed{\\frac{1}{2}}$.", "math500", "\\frac{1}{2}"),
    (
        "math-nested",
        "\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}",
        "math500",
        "\\left( 3, \\frac{\\pi}{2} \\right)",
    ),
    ("math-no-fallback", "the value is 7", "math500", None),
    ("math-fbox", "\\fbox{42}", "math500", "42"),
    ("math-truncated-box", "\\boxed{3} and then \\boxed{\\frac{1}{2", "math500", "3"),
    # NAP canvases: the summary ONLY
    (
        "nap-summary-only",
        nap_text(["... so \\boxed{12}", "hence \\boxed{99}"], render_summary("18")),
        "gsm8k",
        "18",
    ),
    (
        "nap-summary-only-math",
        nap_text(["\\boxed{\\frac{1}{3}}"], render_summary("\\frac{1}{2}")),
        "math500",
        "\\frac{1}{2}",
    ),
    ("nap-summary-missing", "<think 1>\nso the answer is \\boxed{18}\n</think 1>\n\n", "gsm8k", None),
    (
        "nap-summary-no-box-last-number",
        nap_text(["12 apples"], "Together they have 18 apples."),
        "gsm8k",
        "18",
    ),
    ("nap-empty-summary", nap_text(["\\boxed{5}", "\\boxed{5}"], ""), "gsm8k", None),
    ("nap-gpqa", nap_text(["The answer is (A)."], render_summary("C")), "gpqa", "C"),
    # Long-CoT: after </think> only
    ("longcot", render_longcot(["\\boxed{12}", "\\boxed{14}"], render_summary("18")), "gsm8k", "18"),
    ("longcot-truncated", "<think>\nso far \\boxed{12} and 14", "gsm8k", None),
    # GPQA letters
    ("gpqa-boxed", "... so \\boxed{B}", "gpqa", "B"),
    ("gpqa-boxed-text", "$\\boxed{\\text{(C)}}$", "gpqa", "C"),
    ("gpqa-boxed-lower", "\\boxed{d}", "gpqa", "D"),
    ("gpqa-boxed-with-text", "\\boxed{B) 42 J}", "gpqa", "B"),
    ("gpqa-paren", "Comparing the options, (B) is the only consistent one.", "gpqa", "B"),
    ("gpqa-answer-is-lower", "so the answer is b", "gpqa", "B"),
    ("gpqa-answer-colon", "Answer: (D)", "gpqa", "D"),
    ("gpqa-answer-markdown", "**Answer:** **C**", "gpqa", "C"),
    ("gpqa-answer-markdown-2", "**Answer**: B", "gpqa", "B"),
    ("gpqa-last-answer-wins", "Answer: A. Wait, re-checking: the correct answer is D.", "gpqa", "D"),
    ("gpqa-answer-beats-paren", "The answer is B, not (A) or (C).", "gpqa", "B"),
    ("gpqa-article-not-letter", "The answer is a prime number.", "gpqa", None),
    ("gpqa-bare-letter", " c ", "gpqa", "C"),
    ("gpqa-final-answer-is", "The final answer is (A).", "gpqa", "A"),
    ("gpqa-none", "I cannot tell.", "gpqa", None),
]


@pytest.mark.parametrize(("text", "task", "expected"), [c[1:] for c in EXTRACT], ids=[c[0] for c in EXTRACT])
def test_extract_answer_table(text, task, expected):
    assert extract_answer(text, task=task) == expected


# ----------------------------------------------------------------------------------------- correctness table

# (case id, prediction, gold, task, expected)
CORRECT = [
    # GSM8K: numeric normalisation
    ("gsm-plain", "18", "18", "gsm8k", True),
    ("gsm-dollar-comma-zeros", "$1,234.00", "1234", "gsm8k", True),
    ("gsm-latex-dollar", "\\$18", "18", "gsm8k", True),
    ("gsm-units", "18 dollars", "18", "gsm8k", True),
    ("gsm-text-units", "18 \\text{ cm}^2", "18", "gsm8k", True),
    ("gsm-trailing-zero", "18.0", "18", "gsm8k", True),
    ("gsm-trailing-point", "18.", "18", "gsm8k", True),
    ("gsm-percent", "25%", "25", "gsm8k", True),
    ("gsm-latex-percent", "25\\%", "25", "gsm8k", True),
    ("gsm-unicode-minus", "\u22125", "-5", "gsm8k", True),
    ("gsm-spaced-minus", "- 3", "-3", "gsm8k", True),
    ("gsm-negative-wrong-sign", "5", "-5", "gsm8k", False),
    ("gsm-fraction-vs-decimal", "3/4", "0.75", "gsm8k", True),
    ("gsm-latex-frac", "\\frac{3}{4}", "0.75", "gsm8k", True),
    ("gsm-equation", "x = 18", "18", "gsm8k", True),
    ("gsm-comma-gold", "114200", "114,200", "gsm8k", True),
    ("gsm-boxed-pred", "\\boxed{18}", "18", "gsm8k", True),
    ("gsm-latex-thousands", "10,\\!080", "10080", "gsm8k", True),
    ("gsm-wrong", "17", "18", "gsm8k", False),
    ("gsm-close-is-wrong", "18.01", "18", "gsm8k", False),
    ("gsm-decimal-gold", "2.50", "2.5", "gsm8k", True),
    ("gsm-words", "eighteen", "18", "gsm8k", False),
    ("gsm-none", None, "18", "gsm8k", False),
    ("gsm-blank", "  ", "18", "gsm8k", False),
    # MATH-500: light normalisation, then math-verify (gold first)
    ("math-same", "\\frac{1}{2}", "\\frac{1}{2}", "math500", True),
    ("math-frac-vs-decimal", "0.5", "\\frac{1}{2}", "math500", True),
    ("math-dfrac", "\\dfrac{1}{2}", "\\frac12", "math500", True),
    ("math-x-equals", "x = 3", "3", "math500", True),
    ("math-sqrt", "\\frac{\\sqrt2}{2}", "\\sqrt{2}/2", "math500", True),
    ("math-degrees", "90", "90^\\circ", "math500", True),
    ("math-text-choice", "(C)", "\\text{(C)}", "math500", True),
    ("math-text-choice-wrong", "(D)", "\\text{(C)}", "math500", False),
    ("math-interval", "(2, \\infty)", "(2,\\infty)", "math500", True),
    ("math-interval-closed-wrong", "[2,\\infty)", "(2,\\infty)", "math500", False),
    ("math-tuple-left-right", "(3,\\pi/2)", "\\left( 3, \\frac{\\pi}{2} \\right)", "math500", True),
    ("math-text-word", "Evelyn", "\\text{Evelyn}", "math500", True),
    ("math-text-word-wrong", "\\text{Bob}", "\\text{Evelyn}", "math500", False),
    ("math-thousands", "10080", "10,\\!080", "math500", True),
    ("math-money", "32348", "\\$32,\\!348", "math500", True),
    ("math-pm", "1+\\sqrt{19}, 1-\\sqrt{19}", "1 \\pm \\sqrt{19}", "math500", True),
    (
        "math-matrix",
        "\\begin{pmatrix} -\\frac13 \\\\ \\frac23 \\end{pmatrix}",
        "\\begin{pmatrix} -1/3 \\\\ 2/3 \\end{pmatrix}",
        "math500",
        True,
    ),
    ("math-polynomial", "x^5-x^4+x^3-x^2+x-1", "x^5 - x^4 + x^3 - x^2 + x - 1", "math500", True),
    ("math-sqrt-simplify", "\\sqrt{12}", "2\\sqrt{3}", "math500", True),
    ("math-wrong", "3", "2", "math500", False),
    ("math-close-wrong", "0.51", "\\frac{1}{2}", "math500", False),
    ("math-dollars-in-pred", "$\\frac{1}{2}$", "\\frac{1}{2}", "math500", True),
    ("math-garbage", "\\frac{", "\\frac{1}{2}", "math500", False),
    ("math-none", None, "\\frac{1}{2}", "math500", False),
    # GPQA: letters
    ("gpqa-same", "B", "B", "gpqa", True),
    ("gpqa-paren-lower", "(b)", "B", "gpqa", True),
    ("gpqa-text", "\\text{(D)}", "D", "gpqa", True),
    ("gpqa-wrong", "A", "B", "gpqa", False),
    ("gpqa-not-a-letter", "42", "B", "gpqa", False),
    ("gpqa-diamond-alias", "C", "C", "gpqa_diamond", True),
    ("gpqa-none", None, "C", "gpqa", False),
]


@pytest.mark.parametrize(
    ("prediction", "gold", "task", "expected"), [c[1:] for c in CORRECT], ids=[c[0] for c in CORRECT]
)
def test_is_correct_table(prediction, gold, task, expected):
    assert is_correct(prediction, gold, task=task) is expected


def test_tables_are_large_enough():
    assert len(EXTRACT) + len(CORRECT) >= 40
    assert {c[2] for c in EXTRACT} == {"gsm8k", "math500", "gpqa"}
    assert {canonical_task(c[3]) for c in CORRECT} == {"gsm8k", "math500", "gpqa"}


# ------------------------------------------------------------------------------------------- end to end


@pytest.mark.parametrize(
    ("text", "gold", "task", "expected"),
    [
        (nap_text(["\\boxed{12}", "\\boxed{12}"], render_summary("18")), "18", "gsm8k", True),
        (nap_text(["\\boxed{18}", "\\boxed{18}"], render_summary("12")), "18", "gsm8k", False),
        (nap_text(["\\boxed{18}"], "I am not sure."), "18", "math500", False),
        (
            render_longcot(["\\boxed{0.5}"], "The final answer is $\\dfrac{1}{2}$."),
            "\\frac{1}{2}",
            "math500",
            True,
        ),
        ("Let me think. The answer is (c).", "C", "gpqa", True),
        ("The total is $1,234.00.", "1234", "gsm8k", True),
    ],
)
def test_extract_then_check(text, gold, task, expected):
    assert is_correct(extract_answer(text, task=task), gold, task=task) is expected


# ------------------------------------------------------------------------------------------- the helpers


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("$1,234.00", "1234"),
        ("18 dollars", "18"),
        ("\u22125", "-5"),
        ("-\\$5", "-5"),
        ("0.750", "0.75"),
        (".5", "0.5"),
        ("3/4", "0.75"),
        ("1/3", "1/3"),
        ("\\dfrac{2}{6}", "1/3"),
        ("-0", "0"),
        ("1/0", None),
        ("no number", None),
        (None, None),
    ],
)
def test_normalize_number(raw, expected):
    assert normalize_number(raw) == expected


def test_region_modes():
    text = nap_text(["\\boxed{1}"], render_summary("2"))
    assert answer_region(text) == render_summary("2")
    assert extract_answer(text, task="math500", nap=False) == "2"  # plain: last box, which is the summary's
    assert extract_answer("<think 1>\n\\boxed{1}\n</think 1>", task="math500", nap=False) == "1"
    assert extract_answer("\\boxed{1}", task="math500", nap=True) is None  # a NAP output without a summary
    assert extract_answer("\\boxed{1}", task="math500", longcot=True) is None  # no </think>
    assert extract_answer("no tags \\boxed{4}", task="math500") == "4"
    assert extract_answer("#### 18", task="gsm8k", fallback_last_number=False) == "18"
    assert extract_answer("it is 18", task="gsm8k", fallback_last_number=False) is None
    assert extract_letter("(A) foo (B) bar") == "B"


def test_bad_arguments():
    with pytest.raises(ValueError, match="Unknown task"):
        extract_answer("x", task="mmlu")
    with pytest.raises(ValueError, match="Unknown task"):
        is_correct("1", "1", task="aime")
    with pytest.raises(ValueError, match="gold"):
        is_correct("1", None, task="gsm8k")
    with pytest.raises(ValueError, match="letter"):
        is_correct("A", "42", task="gpqa")
    with pytest.raises(ValueError, match="string"):
        extract_answer(42, task="gsm8k")
    assert canonical_task("MATH-500") == "math500"
    assert canonical_task("gpqa_main") == "gpqa"


def test_math_verify_outside_the_main_thread():
    """math-verify's timeout needs SIGALRM (main thread only): in a worker thread it runs without one."""
    out: list[bool] = []
    worker = threading.Thread(target=lambda: out.append(is_correct("0.5", "\\frac{1}{2}", task="math500")))
    worker.start()
    worker.join(timeout=30)
    assert out == [True]


def test_math_verify_is_fast():
    start = time.perf_counter()
    for _ in range(20):
        is_correct("\\frac{\\sqrt2}{2}", "\\sqrt{2}/2", task="math500")
    assert time.perf_counter() - start < 10
