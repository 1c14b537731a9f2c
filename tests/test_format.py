"""The NAP instance format (`nap_hf.data.format`): text rendering/parsing, answer extraction, the canvas
layout and slot-aligned instances on both tiny tokenizers (LLaDA's tokenizer.json, Dream's DreamTokenizer)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

import nap_hf  # noqa: F401  (registers DreamTokenizer)
from nap_hf.data import (
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

# Texts without '<' cannot contain a tag.
TAG_FREE = st.text(
    alphabet=st.sampled_from(list("abcxyz 0123456789+-=*/>.,:;!?{}\\$\n\t") + ["é", "✓", "\r"]), max_size=40
)
PATHS = st.lists(TAG_FREE, min_size=1, max_size=4)


# ------------------------------------------------------------------------------------------------ format


def test_format_headers_and_closes():
    fmt = DEFAULT_FORMAT
    assert fmt.header(1) == "<think 1>\n"
    assert fmt.close(3) == "\n</think 3>"
    assert fmt.header(None) == "<summary>\n"
    assert fmt.close(None) == "\n</summary>"
    custom = NAPFormat(path_header="<think #{j}>\n", path_close="\n</think #{j}>")
    assert custom.header(2) == "<think #2>\n"
    assert custom.close(2) == "\n</think #2>"


@pytest.mark.parametrize("j", [0, -1, 1.0, True, "1"])
def test_format_rejects_bad_index(j):
    with pytest.raises(ValueError, match="`j`"):
        DEFAULT_FORMAT.header(j)
    with pytest.raises(ValueError, match="`j`"):
        DEFAULT_FORMAT.close(j)


def test_format_rejects_blank_tag():
    with pytest.raises(ValueError, match="summary_close"):
        NAPFormat(summary_close="\n")


# ------------------------------------------------------------------------------------------- text level


def test_render_instance_exact():
    text = render_instance(["a", "b"], "S")
    assert text == "<think 1>\na\n</think 1>\n\n<think 2>\nb\n</think 2>\n\n<summary>\nS\n</summary>"


def test_render_longcot_exact():
    text = render_longcot(["p1", "p2", "p3"], "S")
    assert text == "<think>\np1\n\np2\n\np3\n</think>\n\nS"
    parsed = parse_longcot(text + " \\boxed{4}")
    assert parsed.paths == ["p1\n\np2\n\np3"]
    assert parsed.summary == "S \\boxed{4}"
    assert parsed.answer == "4"


def test_render_summary():
    assert render_summary("42") == SUMMARY_TEMPLATE.format(answer="42")
    assert render_summary("42") == (
        "By analyzing multiple reasoning processes above, I concluded that: The final answer is \\boxed{42}."
    )
    assert extract_answer(render_summary("\\frac{1}{2}")) == "\\frac{1}{2}"
    with pytest.raises(ValueError, match="`answer`"):
        render_summary(None)


@pytest.mark.parametrize("bad", ["abc", [], [1], None])
def test_render_rejects_bad_paths(bad):
    with pytest.raises(ValueError, match="`paths"):
        render_instance(bad, "s")
    with pytest.raises(ValueError, match="`paths"):
        render_longcot(bad, "s")


def test_render_rejects_bad_summary():
    with pytest.raises(ValueError, match="`summary`"):
        render_instance(["a"], None)


def test_parse_instance_example():
    text = render_instance(["3 + 4 = 7. \\boxed{7}", "2 * 5 = 10"], render_summary("7"))
    parsed = parse_instance(text)
    assert parsed == ParsedInstance(
        paths=["3 + 4 = 7. \\boxed{7}", "2 * 5 = 10"], summary=render_summary("7"), answer="7"
    )


def test_answer_only_from_summary():
    text = render_instance(["so \\boxed{5}", "The final answer is 6"], "no answer here")
    parsed = parse_instance(text)
    assert parsed.summary == "no answer here"
    assert parsed.answer is None
    # no summary block at all: no answer, even with a boxed path
    parsed = parse_instance("<think 1>\n\\boxed{5}\n</think 1>")
    assert parsed.paths == ["\\boxed{5}"]
    assert parsed.summary is None and parsed.answer is None


def test_parse_instance_missing_closing_tags():
    text = "<think 1>\nfirst  \n<think 2>\nsecond\n</think 2>\n<think 3>\nthird\n<summary>\nThe final answer is 9"
    parsed = parse_instance(text)
    assert parsed.paths == ["first", "second", "third"]
    assert parsed.summary == "The final answer is 9"
    assert parsed.answer == "9"


def test_parse_instance_order_and_gaps():
    # a path number that is missing stops the path search; text outside blocks is ignored
    text = "junk <think 1>\na\n</think 1> more <think 3>\nc\n</think 3>\n<summary>\ns\n</summary> tail"
    parsed = parse_instance(text)
    assert parsed.paths == ["a"]
    assert parsed.summary == "s"
    # path headers after the summary are not paths
    parsed = parse_instance("<summary>\nx\n</summary>\n<think 1>\ny\n</think 1>")
    assert parsed.paths == [] and parsed.summary == "x"
    assert parse_instance("") == ParsedInstance(paths=[], summary=None, answer=None)
    with pytest.raises(ValueError, match="`text`"):
        parse_instance(None)


def test_parse_instance_without_newlines():
    parsed = parse_instance("<think 1>a</think 1><think 2>b</think 2><summary>\\boxed{3}</summary>")
    assert parsed.paths == ["a", "b"]
    assert parsed.answer == "3"


@settings(max_examples=50, deadline=None)
@given(paths=PATHS, summary=TAG_FREE)
def test_parse_instance_round_trip(paths, summary):
    parsed = parse_instance(render_instance(paths, summary))
    assert parsed.paths == paths
    assert parsed.summary == summary
    assert parsed.answer == extract_answer(summary)


@settings(max_examples=50, deadline=None)
@given(paths=PATHS, summary=TAG_FREE)
def test_parse_longcot_round_trip(paths, summary):
    parsed = parse_longcot(render_longcot(paths, summary))
    assert parsed.paths == ["\n\n".join(paths)]
    assert parsed.summary == summary


@settings(max_examples=50, deadline=None)
@given(paths=PATHS, summary=TAG_FREE)
def test_parse_instance_round_trip_custom_format(paths, summary):
    fmt = NAPFormat(
        path_header="<think #{j}>", path_close="</think #{j}>", summary_header="<sum>", summary_close="</sum>"
    )
    parsed = parse_instance(render_instance(paths, summary, fmt), fmt)
    assert parsed.paths == paths
    assert parsed.summary == summary


# -------------------------------------------------------------------------------------- extract_answer


@pytest.mark.parametrize(
    "text, answer",
    [
        ("\\boxed{42}", "42"),
        ("first \\boxed{1} then \\boxed{ 2 }", "2"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("x = \\boxed{\\sqrt{\\frac{a^{2}}{b}}}.", "\\sqrt{\\frac{a^{2}}{b}}"),
        ("\\boxed {7}", "7"),
        ("\\fbox{8}", "8"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\boxed{3} and a truncated \\boxed{\\frac{1}{", "3"),
        ("\\boxed{\\boxed{5}}", "\\boxed{5}"),
        ("The final answer is 12.", "12"),
        ("The final answer is $\\frac{3}{4}$.", "\\frac{3}{4}"),
        ("the final answer is: 5 apples\nsomething else", "5 apples"),
        ("The final answer is 1.\nThe final answer is 2.", "2"),
        ("The final answer is 3.5.", "3.5"),
        ("The final answer is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
        ("\\boxed{9}\nThe final answer is 10", "9"),
        ("\\boxed{}", None),
        ("The final answer is .", None),
        ("no answer", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer


def test_extract_answer_rejects_non_string():
    with pytest.raises(ValueError, match="`text`"):
        extract_answer(42)


# ----------------------------------------------------------------------------------------- token level


@pytest.fixture(scope="module", params=["llada", "dream"])
def tokenizer(request, llada_dir, dream_dir):
    path = llada_dir if request.param == "llada" else dream_dir
    return AutoTokenizer.from_pretrained(path)


def _check_layout(layout: CanvasLayout, m: int, path_length: int, summary_length: int):
    assert layout.m == m
    assert [s.kind for s in layout.spans] == ["header", "path"] * m + ["header", "summary"]
    assert [s.index for s in layout.spans] == [j for j in range(1, m + 1) for _ in range(2)] + [None, None]
    assert layout.spans[0].start == 0
    assert all(a.end == b.start for a, b in zip(layout.spans, layout.spans[1:], strict=False))
    assert layout.spans[-1].end == layout.length
    assert all(len(s) == path_length for s in layout.path_spans)
    assert len(layout.summary_span) == summary_length
    assert [len(s) for s in layout.header_spans] == [len(h) for h in layout.header_ids]
    assert layout.length == sum(map(len, layout.header_ids)) + m * path_length + summary_length


@pytest.mark.parametrize("m", [1, 3])
def test_layout_headers_match_tokenizer(tokenizer, m):
    layout = build_layout(tokenizer, m=m, path_length=7, summary_length=5)
    _check_layout(layout, m, 7, 5)
    mask = tokenizer.mask_token_id
    template = layout.template(mask)
    slot = layout.slot_mask()
    assert len(template) == len(slot) == layout.length
    headers = [DEFAULT_FORMAT.header(j) for j in range(1, m + 1)] + [DEFAULT_FORMAT.header(None)]
    for span, text in zip(layout.header_spans, headers, strict=True):
        assert template[span.slice] == tokenizer(text, add_special_tokens=False)["input_ids"]
        assert not any(slot[span.slice])
    for span in layout.path_spans + [layout.summary_span]:
        assert template[span.slice] == [mask] * len(span)
        assert all(slot[span.slice])
    assert sum(slot) == m * 7 + 5


def test_layout_with_given_header_ids():
    layout = build_layout(None, m=2, path_length=3, summary_length=2, header_ids=[[1, 2], [3], [4, 5, 6]])
    _check_layout(layout, 2, 3, 2)
    assert layout.template(0) == [1, 2, 0, 0, 0, 3, 0, 0, 0, 4, 5, 6, 0, 0]
    assert layout.slot_mask() == [False, False] + [True] * 3 + [False] + [True] * 3 + [False] * 3 + [True] * 2
    assert layout.spans[2] == SlotSpan("header", 2, 5, 6)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(m=0), "`m`"),
        (dict(m=1.5), "`m`"),
        (dict(path_length=0), "`path_length`"),
        (dict(summary_length=-3), "`summary_length`"),
        (dict(header_ids=[[1], [2]]), "`header_ids`"),
        (dict(header_ids=[[1], [2], ["x"]]), "`header_ids`"),
    ],
)
def test_layout_errors_name_the_argument(kwargs, name):
    args = dict(m=2, path_length=4, summary_length=2, header_ids=[[1], [2], [3]])
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        build_layout(None, **args)


def test_layout_requires_tokenizer_without_header_ids():
    with pytest.raises(ValueError, match="`tokenizer`"):
        build_layout(None, m=1, path_length=2, summary_length=2)


def test_layout_template_rejects_bad_mask_id():
    layout = build_layout(None, m=1, path_length=2, summary_length=2, header_ids=[[1], [2]])
    with pytest.raises(ValueError, match="`mask_token_id`"):
        layout.template(None)


PATH_TEXTS = ["3 + 4 = 7", "12 * 3 = 36, so 36.", "Ann has 5 apples. 5 - 2 = 3"]


def test_slot_aligned_round_trip(tokenizer):
    eos = tokenizer.eos_token_id
    summary = render_summary("7")
    layout = build_layout(tokenizer, m=3, path_length=32, summary_length=96)
    ids = render_slot_aligned(tokenizer, PATH_TEXTS, summary, layout, filler_id=eos)
    assert ids is not None and len(ids) == layout.length
    # headers are clamped exactly as the decoding template has them
    template = layout.template(tokenizer.mask_token_id)
    for span in layout.header_spans:
        assert ids[span.slice] == template[span.slice]
    # each slot is the segment-wise tokenization of text + closing tag, then EOS filler
    for j, (span, text) in enumerate(zip(layout.path_spans, PATH_TEXTS, strict=True), start=1):
        content = encode_segment(tokenizer, text + DEFAULT_FORMAT.close(j))
        assert ids[span.slice] == content + [eos] * (len(span) - len(content))
    parsed = parse_canvas(tokenizer, ids, layout, filler_ids=[eos])
    assert parsed.paths == PATH_TEXTS
    assert parsed.summary == summary
    assert parsed.answer == "7"
    # the flat decode of the whole canvas parses the same (filler EOS is a special token)
    flat = parse_instance(tokenizer.decode(ids, skip_special_tokens=True))
    assert flat == parsed


@settings(max_examples=50, deadline=None)
@given(
    paths=st.lists(st.text(alphabet="0123456789 +-=*.abn", max_size=12), min_size=1, max_size=3),
    answer=st.integers(0, 10**6),
)
def test_slot_aligned_round_trip_property(tokenizer, paths, answer):
    layout = build_layout(tokenizer, m=len(paths), path_length=32, summary_length=96)
    summary = render_summary(str(answer))
    ids = render_slot_aligned(tokenizer, paths, summary, layout, filler_id=tokenizer.eos_token_id)
    assert ids is not None
    parsed = parse_canvas(tokenizer, ids, layout, filler_ids=[tokenizer.eos_token_id])
    assert parsed.paths == [p.strip() for p in paths]
    assert parsed.answer == str(answer)


def test_slot_aligned_fit_boundary(tokenizer):
    eos = tokenizer.eos_token_id
    need = len(encode_segment(tokenizer, PATH_TEXTS[0] + DEFAULT_FORMAT.close(1)))
    need_sum = len(encode_segment(tokenizer, "s" + DEFAULT_FORMAT.close(None)))
    exact = build_layout(tokenizer, m=1, path_length=need, summary_length=need_sum)
    ids = render_slot_aligned(tokenizer, PATH_TEXTS[:1], "s", exact, filler_id=eos)
    assert ids is not None and eos not in ids
    assert parse_canvas(tokenizer, ids, exact).paths == PATH_TEXTS[:1]
    short = build_layout(tokenizer, m=1, path_length=need - 1, summary_length=need_sum)
    assert render_slot_aligned(tokenizer, PATH_TEXTS[:1], "s", short, filler_id=eos) is None
    short_sum = build_layout(tokenizer, m=1, path_length=need, summary_length=need_sum - 1)
    assert render_slot_aligned(tokenizer, PATH_TEXTS[:1], "s", short_sum, filler_id=eos) is None


def test_parse_canvas_cuts_at_closing_tag_and_skips_masks(tokenizer):
    eos, mask = tokenizer.eos_token_id, tokenizer.mask_token_id
    layout = build_layout(tokenizer, m=2, path_length=30, summary_length=30)
    ids = layout.template(mask)
    p1 = encode_segment(tokenizer, "1 + 1 = 2\n</think 1> junk \\boxed{9}")
    p2 = encode_segment(tokenizer, " 2 + 2 = 4 ")
    s = encode_segment(tokenizer, "The final answer is \\boxed{4}.\n</summary> \\boxed{5}")
    for span, content in zip([*layout.path_spans, layout.summary_span], [p1, p2, s], strict=True):
        ids[span.start : span.start + len(content)] = content
        ids[span.start + len(content) : span.start + len(content) + 2] = [eos, eos]  # rest stays masked
    parsed = parse_canvas(tokenizer, ids, layout, filler_ids=[eos])
    assert parsed.paths == ["1 + 1 = 2", "2 + 2 = 4"]
    assert parsed.summary == "The final answer is \\boxed{4}."
    assert parsed.answer == "4"
    # an untouched canvas parses to empty texts and no answer
    empty = parse_canvas(tokenizer, layout.template(mask), layout)
    assert empty == ParsedInstance(paths=["", ""], summary="", answer=None)


def test_slot_aligned_errors(tokenizer):
    layout = build_layout(tokenizer, m=2, path_length=20, summary_length=20)
    eos = tokenizer.eos_token_id
    with pytest.raises(ValueError, match="`paths`"):
        render_slot_aligned(tokenizer, ["a"], "s", layout, filler_id=eos)
    with pytest.raises(ValueError, match="`filler_id`"):
        render_slot_aligned(tokenizer, ["a", "b"], "s", layout, filler_id=None)
    with pytest.raises(ValueError, match="`ids`"):
        parse_canvas(tokenizer, [eos] * (layout.length + 1), layout)
