"""Answer extraction and correctness for the evaluation tasks (GSM8K, MATH-500, GPQA).

Built on the boxed parser of :mod:`nap_hf.data.format` (docs/design.md §3); nothing here re-implements it.

Where the answer is read (:func:`extract_answer`):

* NAP output (text holding ``<summary>`` or ``<think 1>``, or ``nap=True``): from the summary ONLY
  (:func:`nap_hf.data.format.parse_instance`). A ``\\boxed`` in a path never counts; no summary means
  no answer (None).
* Long-CoT output (text holding ``<think>`` or ``</think>``, or ``longcot=True``): from the text after
  ``</think>`` only (:func:`nap_hf.data.format.parse_longcot`); a chain cut before ``</think>`` gives None.
* Anything else: the whole text.

Inside that region: the last ``\\boxed{...}``, else the last "The final answer is X"
(:func:`nap_hf.data.format.extract_answer`), then per task:

* ``gsm8k``: else the last ``#### X`` (the GSM8K reference style), else (``fallback_last_number=True``,
  the default) the last number in the region. The string comes back as written (``"\\$1,234.00"``);
  :func:`normalize_number` / :func:`is_correct` do the numeric normalisation.
* ``math500``: no fallback.
* ``gpqa``: a letter A-D (upper case): from the boxed / final-answer string (``B``, ``(B)``,
  ``\\text{(B)}``, ``B) text``), else the last "answer is B" / "Answer: (B)" / "correct option is B",
  else the last standalone ``(B)``, else a region that is nothing but the letter.
"""

from __future__ import annotations

import re
import threading
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Literal

from nap_hf.data import format as _fmt
from nap_hf.data.format import DEFAULT_FORMAT, NAPFormat

# a module's public names (alike in shape to data/sources.py's list: names, not logic)
__all__ = [
    "TASK_KINDS",
    "canonical_task",
    "extract_answer",
    "extract_letter",
    "is_correct",
    "normalize_number",
    "answer_region",
]

TaskKind = Literal["gsm8k", "math500", "gpqa"]
TASK_KINDS: tuple[str, ...] = ("gsm8k", "math500", "gpqa")

_ALIASES = {
    "gsm8k": "gsm8k",
    "gsm_8k": "gsm8k",
    "math500": "math500",
    "math_500": "math500",
    "math": "math500",
    "minerva_math_500": "math500",
    "gpqa": "gpqa",
    "gpqa_diamond": "gpqa",
    "gpqa_main": "gpqa",
}


def canonical_task(task: str) -> TaskKind:
    """The answer kind of a task name: ``"gsm8k"``, ``"math500"`` or ``"gpqa"``.

    Accepts the task names of :data:`nap_hf.evaluation.TASKS` (``gpqa_diamond``, ``gpqa_main``) and a few
    spellings (``MATH-500``, ``math``), case-insensitive.
    """
    if not isinstance(task, str):
        raise ValueError(f"`task` must be one of {TASK_KINDS} (a string), got {task!r}.")
    key = task.strip().lower().replace("-", "_")
    if key not in _ALIASES:
        raise ValueError(f"Unknown task {task!r}: expected one of {sorted(_ALIASES)}.")
    return _ALIASES[key]  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------- the region


def _has_tag(text: str, piece: str) -> bool:
    return piece.strip() in text


def answer_region(
    text: str | None,
    nap: bool | None = None,
    longcot: bool | None = None,
    fmt: NAPFormat = DEFAULT_FORMAT,
) -> str | None:
    """The part of ``text`` the answer is read from (see the module doc), or None when there is none.

    Args:
        text: a model output (decoded canvas / completion), or None.
        nap: True: a NAP output (summary only); False: never; None: detect (``<summary>`` or ``<think 1>``).
        longcot: True: a Long-CoT output (after ``</think>`` only); False: never; None: detect
            (``<think>`` or ``</think>``). Checked after ``nap``.
        fmt: the NAP text format.
    """
    if text is None:
        return None
    if not isinstance(text, str):
        raise ValueError(f"`text` must be a string or None, got {type(text).__name__}.")
    if nap is None:
        nap = _has_tag(text, fmt.header(None)) or _has_tag(text, fmt.header(1))
    if nap:
        return _fmt.parse_instance(text, fmt).summary
    if longcot is None:
        longcot = _has_tag(text, fmt.longcot_open) or _has_tag(text, fmt.longcot_close)
    if longcot:
        return _fmt.parse_longcot(text, fmt).summary
    return text


# --------------------------------------------------------------------------------------------------- GSM8K

_WRAPPER = re.compile(
    r"\\(?:boxed|fbox|text|textbf|textrm|textit|textnormal|mathrm|mathbf|mathit|mbox|operatorname)\s*\{"
)
_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*([-+]?[\d.]+)\s*\}\s*\{\s*([-+]?[\d.]+)\s*\}")
_SPACING = re.compile(r"\\[!,;: ]|~")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
# A number: optional sign, digits with an optional decimal part (or ".5"), optional "/ denominator".
_NUMBER = re.compile(r"(?<![\w.])([-+]\s?)?(\d+(?:\.\d+)?|\.\d+)(?:\s*/\s*(\d+(?:\.\d+)?))?")
# The last-number fallback on free text: thousands groups kept together ("1,234.5"), "$" allowed.
# A minus may be followed by one space ("is - 10") unless a number or ")" precedes it ("5 - 3", binary)
# or it is glued to a word ("a-5").
_TEXT_NUMBER = re.compile(
    r"(?:(?<![\d)]\s)(?<![\w.)])-\s?)?(?<![\w.])\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?"
)
_HASHES = re.compile(r"####\s*([^\n]*)")
_MINUS = str.maketrans({"\u2212": "-", "\ufe63": "-", "\uff0d": "-"})


def _unwrap(s: str) -> str:
    """Replace ``\\text{X}``, ``\\boxed{X}``, ``\\mathrm{X}``... by ``X`` (brace-matched, repeatedly)."""
    while True:
        m = _WRAPPER.search(s)
        if m is None:
            return s
        close = _fmt._match_braces(s, m.end())
        if close < 0:
            return s[: m.start()] + s[m.end() :]
        s = s[: m.start()] + s[m.end() : close] + s[close + 1 :]


def _to_fraction(s: str | None) -> Fraction | None:
    """The exact value of a GSM8K-style answer string (see :func:`normalize_number`), or None."""
    if s is None:
        return None
    if not isinstance(s, str):
        s = str(s)
    s = _unwrap(s.translate(_MINUS))
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "%")
    s = s.replace("\\left", "").replace("\\right", "")
    s = _SPACING.sub("", s)
    s = _FRAC.sub(r"\1/\2", s)
    if "=" in s:  # "x = 18", "3 \times 6 = 18": the right-hand side
        s = s.rsplit("=", 1)[1]
    s = _THOUSANDS.sub("", s)
    m = _NUMBER.search(s)
    if m is None:
        return None
    sign, num, den = m.groups()
    try:
        value = Fraction(Decimal(num))
        if den is not None:
            d = Fraction(Decimal(den))
            if d == 0:
                return None
            value /= d
    except (InvalidOperation, ValueError, ZeroDivisionError):
        return None
    if sign is not None and sign.strip() == "-":
        value = -value
    return value


def _format_fraction(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    den = value.denominator
    while den % 2 == 0:
        den //= 2
    while den % 5 == 0:
        den //= 5
    if den == 1:  # a finite decimal: write it exactly, without exponent or trailing zeros
        text = format(Decimal(value.numerator) / Decimal(value.denominator), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    return f"{value.numerator}/{value.denominator}"


def normalize_number(s: str | None) -> str | None:
    """The canonical form of a GSM8K answer, or None when it holds no number.

    Rules (decided here):

    * LaTeX wrappers go (``\\boxed{}``, ``\\text{}``, ``\\mathrm{}``, ``\\mbox{}``...), as do ``$`` /
      ``\\$``, ``\\left`` / ``\\right`` and LaTeX spacing (``\\!``, ``\\,``, ``~``); the Unicode minus
      ``−`` is a minus; ``\\frac{a}{b}`` (also ``\\dfrac``, ``\\tfrac``) with numeric a, b is ``a/b``.
    * With an ``=``, only the right-hand side of the last one counts (``x = 18``).
    * Thousands commas go (``1,234`` -> ``1234``; a comma is a separator only before exactly three digits).
    * The FIRST number left counts; what follows it (units, words, ``%``) is ignored: ``18 dollars``,
      ``18%`` and ``18 \\text{ cm}^2`` are all 18. (A percentage is compared as its number, like the GSM8K
      references, which are plain numbers.)
    * The value is exact (:class:`fractions.Fraction`): ``18.00`` and ``18.`` are 18, ``3/4`` and ``0.75``
      are the same. The result is an integer (``"18"``, ``"-5"``), a finite decimal without trailing
      zeros (``"0.75"``), or ``"p/q"`` (``"1/3"``).

    Not handled: numbers in words, mixed numbers (``1 1/2``), scientific notation.
    """
    value = _to_fraction(s)
    return None if value is None else _format_fraction(value)


# ---------------------------------------------------------------------------------------------------- GPQA

_LETTERS = "ABCD"
_LETTER_ONLY = re.compile(r"^\W*(?:option|choice)?\s*\(?\s*([A-Da-d])\s*\)?(?:[\s.:)\]]|$)", re.IGNORECASE)
_ANSWER_PHRASE = re.compile(
    r"\b(?:answer|correct\s+(?:option|choice))\b(?:\s+(?:is|would\s+be|should\s+be))?[\s*]*[:：]?[\s*]*"
    r"(?:option\s+|choice\s+)?"
    r"(\(\s*[A-Da-d]\s*\)|[A-Da-d])(?![\w])",
    re.IGNORECASE,
)
_PAREN_LETTER = re.compile(r"\(\s*([A-D])\s*\)")


def _letter_of(s: str | None) -> str | None:
    """The letter an answer string names (``B``, ``(b)``, ``\\text{(B)}``, ``B) text``, ``Option B``)."""
    if s is None:
        return None
    s = _unwrap(str(s)).replace("$", "").strip()
    m = _LETTER_ONLY.match(s)
    return m.group(1).upper() if m else None


def _lowercase_article(text: str, m: re.Match[str]) -> bool:
    """True when a lower-case letter match is a word of a sentence ("the answer is a prime")."""
    letter = m.group(1).strip("() ")
    if letter.isupper() or m.group(1).startswith("("):
        return False
    rest = text[m.end() :].lstrip(" *")
    return bool(rest) and (rest[0].isalnum())


def extract_letter(text: str | None) -> str | None:
    """The multiple-choice letter (A-D, upper case) stated in ``text`` (the answer region), or None.

    Order: the last ``\\boxed{...}`` / "The final answer is X" when X names a letter; else the last
    "answer is B" / "Answer: (b)" / "correct option is B" (a lower-case letter followed by a word,
    "the answer is a prime", is not a letter); else the last ``(B)`` (upper case); else a text that is
    only a letter.
    """
    if text is None:
        return None
    stated = _fmt.extract_answer(text)
    if stated is not None:
        letter = _letter_of(stated)
        if letter is not None:
            return letter
    plain = _unwrap(text)
    found = [m for m in _ANSWER_PHRASE.finditer(plain) if not _lowercase_article(plain, m)]
    if found:
        return found[-1].group(1).strip("() ").upper()
    parens = _PAREN_LETTER.findall(plain)
    if parens:
        return parens[-1]
    return _letter_of(text) if len(text.strip()) <= 6 else None


# ------------------------------------------------------------------------------------------------- extract


def extract_answer(
    text: str | None,
    task: str,
    nap: bool | None = None,
    longcot: bool | None = None,
    fallback_last_number: bool = True,
    fmt: NAPFormat = DEFAULT_FORMAT,
) -> str | None:
    """The final answer of a model output for ``task`` (see the module doc), or None.

    Args:
        text: the model output (None gives None).
        task: ``"gsm8k"``, ``"math500"`` or ``"gpqa"`` (also ``gpqa_diamond`` / ``gpqa_main``).
        nap / longcot: the output style (:func:`answer_region`); None detects it from the tags.
        fallback_last_number: GSM8K only: without a boxed / final-answer / ``####`` answer, take the last
            number of the answer region (for a NAP output: of the summary).
        fmt: the NAP text format.

    Returns:
        GSM8K / MATH-500: the answer as written (e.g. ``"\\$18.00"``, ``"\\frac{1}{2}"``);
        GPQA: ``"A"``-``"D"``.
    """
    kind = canonical_task(task)
    region = answer_region(text, nap=nap, longcot=longcot, fmt=fmt)
    if region is None:
        return None
    if kind == "gpqa":
        return extract_letter(region)
    answer = _fmt.extract_answer(region)
    if answer is not None or kind == "math500":
        return answer
    hashes = [h.strip() for h in _HASHES.findall(region) if h.strip()]
    if hashes:
        return hashes[-1]
    if fallback_last_number:
        numbers = _TEXT_NUMBER.findall(region)
        if numbers:
            return numbers[-1]
    return None


# ------------------------------------------------------------------------------------------------- correct

_LIGHT_DROP = re.compile(r"\\left|\\right|\\[!,;: ]|~|\^\s*\{?\s*\\circ\s*\}?|°|\s+")


def _light_normalize(s: str) -> str:
    """Cheap string canonicalisation before math-verify (``\\dfrac`` -> ``\\frac``, no spaces...)."""
    s = s.strip().strip("$").strip()
    s = _unwrap(s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac"))
    s = _LIGHT_DROP.sub("", s)
    return s.rstrip(".")


def _as_latex(s: str) -> str:
    """Wrap an answer in ``$...$`` so math-verify reads it as LaTeX (unless it holds a bare ``$``)."""
    s = s.strip()
    while len(s) >= 2 and s.startswith("$") and s.endswith("$") and not s.endswith("\\$"):
        s = s[1:-1].strip()
    if "$" in s.replace("\\$", ""):
        return s
    return f"${s}$"


def _math_verify(prediction: str, gold: str, timeout_seconds: int | None) -> bool:
    try:
        from math_verify import parse, verify
    except ImportError as e:
        raise ImportError(
            "MATH-500 answer checking needs math-verify: pip install 'nap-hf[eval]' (or math-verify)."
        ) from e

    if threading.current_thread() is not threading.main_thread():
        timeout_seconds = None  # math-verify's timeout uses SIGALRM, which works in the main thread only
    try:
        gold_parsed = parse(_as_latex(gold), parsing_timeout=timeout_seconds)
        pred_parsed = parse(_as_latex(prediction), parsing_timeout=timeout_seconds)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout_seconds))
    except Exception:  # a parse/verify error or a timeout is a wrong answer, never a crash
        return False


def is_correct(prediction: str | None, gold: str, task: str, timeout_seconds: int | None = 5) -> bool:
    """Whether an extracted ``prediction`` matches the reference ``gold`` for ``task``.

    * ``gsm8k``: exact numeric equality after :func:`normalize_number` (``"$1,234.00"`` == ``"1234"``);
      when either side holds no number, equality of the lightly normalised strings.
    * ``math500``: equal lightly normalised strings, else math-verify ``verify(parse(gold), parse(pred))``
      (gold first), each side wrapped in ``$...$`` so it is read as LaTeX. Errors and timeouts
      (``timeout_seconds`` per call; off outside the main thread, where SIGALRM is unavailable) count
      as wrong.
    * ``gpqa``: the same letter (``"(b)"`` == ``"B"``).

    A None (or blank) prediction is wrong.
    """
    kind = canonical_task(task)
    if gold is None:
        raise ValueError("`gold` must be the reference answer (a string), got None.")
    if prediction is None:
        return False
    prediction, gold = str(prediction), str(gold)
    if not prediction.strip():
        return False
    if kind == "gpqa":
        want = _letter_of(gold)
        if want is None:
            raise ValueError(f"GPQA `gold` must be a letter A-D, got {gold!r}.")
        return _letter_of(prediction) == want
    if kind == "gsm8k":
        p, g = _to_fraction(prediction), _to_fraction(gold)
        if p is not None and g is not None:
            return p == g
        return _light_normalize(prediction) == _light_normalize(gold)
    if _light_normalize(prediction) == _light_normalize(gold):
        return True
    return _math_verify(prediction, gold, timeout_seconds)
