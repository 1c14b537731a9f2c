"""NAP data: the instance format (text and token level), shared by decoding, training, data building and
evaluation."""

# The public names re-exported (builder.py imports most of the same names from .format, for its own use).
from .format import (
    DEFAULT_FORMAT,
    SUMMARY_TEMPLATE,
    CanvasLayout,
    NAPFormat,
    ParsedInstance,
    SlotSpan,
    build_layout,
    encode_segment,
    extract_answer,
    parse_canvas,
    parse_instance,
    parse_longcot,
    render_instance,
    render_longcot,
    render_slot_aligned,
    render_summary,
)

__all__ = [
    "DEFAULT_FORMAT",
    "SUMMARY_TEMPLATE",
    "CanvasLayout",
    "NAPFormat",
    "ParsedInstance",
    "SlotSpan",
    "build_layout",
    "encode_segment",
    "extract_answer",
    "parse_canvas",
    "parse_instance",
    "parse_longcot",
    "render_instance",
    "render_longcot",
    "render_slot_aligned",
    "render_summary",
]

# Training questions for the data builder: registry sources (GSM8K, MATH, OpenR1-Math-220k) and local files,
# decontaminated against GSM8K test / MATH-500.
from .sources import (  # noqa: E402
    SOURCES,
    Problem,
    ProblemSet,
    contamination_index,
    load_source,
    normalize_question,
)

__all__ += [
    "SOURCES",
    "Problem",
    "ProblemSet",
    "contamination_index",
    "load_source",
    "normalize_question",
]

# Teachers for the data builder: a local transformers causal LM or any OpenAI-compatible server (vLLM, TGI).
from .teachers import (  # noqa: E402
    Completion,
    OpenAICompatibleTeacher,
    Teacher,
    TeacherRequestError,
    TransformersTeacher,
)

__all__ += [
    "Completion",
    "OpenAICompatibleTeacher",
    "Teacher",
    "TeacherRequestError",
    "TransformersTeacher",
]

# The NAP data builder: P teacher traces per question, a summary conditioned on the gold answer, written as NAP
# and Long-CoT rows from the same traces; resumable shard by shard. Fingerprinted settings (GenerationSettings)
# and assembly settings (AssemblySettings) are separate types.
from .builder import (  # noqa: E402
    DROP_REASONS,
    SUMMARY_PROMPT,
    AssemblySettings,
    GenerationSettings,
    SettingsMismatchError,
    build_parallel_dataset,
    load_records,
    path_seed,
    read_build_stats,
)

__all__ += [
    "DROP_REASONS",
    "SUMMARY_PROMPT",
    "AssemblySettings",
    "GenerationSettings",
    "SettingsMismatchError",
    "build_parallel_dataset",
    "load_records",
    "path_seed",
    "read_build_stats",
]
