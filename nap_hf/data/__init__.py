"""NAP data: the instance format (text and token level), shared by decoding, training, data building and
evaluation."""

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
