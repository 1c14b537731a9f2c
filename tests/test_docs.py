"""The documentation holds together: every `docs/...` path named in the README, the docs, the code and the
recipes exists; every `docs/<page>.md §n` reference names a numbered section of that page; the README keeps
its two commands on top, stays short and links every page of docs/; its Python blocks (the quick starts) run
offline on the shipped toy models; and nothing cites the developers' specification ("SPEC §n"), which does not
ship with the repository."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"

# where references may appear: the README, the docs, the package, recipes, scripts, tests and the model cards
SOURCE_ROOTS = ("nap_hf", "recipes", "benchmarks", "examples", "tests", "docs", "models", ".ci")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".jinja", ".sh"}
SKIP_DIRS = {"__pycache__", "results", "fixtures"}

DOC_PATH = re.compile(r"(?<![\w/.-])docs/[\w./-]*\w")  # docs/generation.md, docs/figures/x.png
SECTION_REF = re.compile(r"(?<![\w/.-])(docs/[\w./-]*\.md),? §(\d+(?:\.\d+)*)")
HEADING_SECTION = re.compile(r"^#+\s.*?§(\d+(?:\.\d+)*)(?!\d)", re.MULTILINE)
NOT_RUN = "# not run in tests"


def text_files() -> list[Path]:
    """Every text file that may cite the docs (this test excluded: its docstrings show the patterns)."""
    files = [README, REPO / "Makefile", REPO / "pyproject.toml"]
    for root in SOURCE_ROOTS:
        for path in sorted((REPO / root).rglob("*")):
            if (
                path.is_file()
                and (path.suffix in TEXT_SUFFIXES or path.name == "run")
                and not SKIP_DIRS & set(path.relative_to(REPO).parts)
                and path != Path(__file__).resolve()
            ):
                files.append(path)
    return [f for f in files if f.exists()]


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.MULTILINE | re.DOTALL)


def test_every_docs_path_reference_resolves():
    missing = {}
    for path in text_files():
        for ref in DOC_PATH.findall(read(path)):
            if not (REPO / ref).exists():
                missing.setdefault(ref, []).append(str(path.relative_to(REPO)))
    assert not missing, f"references to files that do not exist (create them or fix the reference): {missing}"


def test_every_section_reference_names_a_numbered_section():
    sections: dict[str, set[str]] = {}
    broken = []
    for path in text_files():
        for page, number in SECTION_REF.findall(read(path)):
            if page not in sections:
                target = REPO / page
                sections[page] = set(HEADING_SECTION.findall(read(target))) if target.exists() else set()
            if number not in sections[page] and number.split(".")[0] not in sections[page]:
                broken.append(f"{path.relative_to(REPO)}: {page} §{number}")
    assert not broken, f"section references with no such numbered heading: {broken}"


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_in_page_link_names_a_heading_of_its_page():
    broken = []
    for page in [README, *sorted(DOCS.glob("*.md"))]:
        text = read(page)
        anchors = {github_anchor(h) for h in re.findall(r"^#+\s+(.*)$", text, flags=re.MULTILINE)}
        broken += [f"{page.name}#{a}" for a in re.findall(r"\]\(#([^)]+)\)", text) if a not in anchors]
    assert not broken, f"links to headings that do not exist: {broken}"


def test_design_numbers_its_algorithm_sections_1_to_10():
    numbers = HEADING_SECTION.findall(read(DOCS / "design.md"))
    assert numbers == [str(n) for n in range(1, 11)], numbers


def test_design_map_names_every_module():
    """docs/design.md's architecture map lists every module of the package and every recipe, benchmark and
    example script (so it follows the real tree)."""
    design = read(DOCS / "design.md")
    tree = design.split("## Architecture", 1)[1].split("```", 2)[1]
    modules = [
        *(REPO / "nap_hf").rglob("*.py"),
        *(p for d in ("recipes", "benchmarks", "examples") for p in (REPO / d).glob("*.py")),
    ]
    unnamed = [
        str(p.relative_to(REPO))
        for p in sorted(modules)
        if p.name not in ("__init__.py", "__main__.py") and p.name not in tree
    ]
    assert not unnamed, f"add these modules to the architecture map in docs/design.md: {unnamed}"


def test_nothing_outside_tests_cites_the_unshipped_spec():
    """Passes once every "SPEC §n" in the code and docs reads "docs/design.md §n"."""
    offenders = [
        str(path.relative_to(REPO))
        for path in text_files()
        if "tests" not in path.relative_to(REPO).parts
        and ("SPEC §" in read(path) or "shared/SPEC" in read(path))
    ]
    assert not offenders, f"cite docs/design.md §n instead of the unshipped SPEC in: {offenders}"


def test_readme_starts_with_the_two_commands_is_short_and_lists_every_page():
    text = read(README)
    assert text.startswith(
        "# nap-hf\n\n```bash\nmake demo   # creates .venv, installs, solves held-out problems with the embedded "
        "nap-tiny (parallel-forced, offline)\nmake test   # same set-up, then the test suite\n```\n"
    )
    assert len(text.encode()) <= 12 * 1024, f"README.md is {len(text.encode())} bytes; move detail to docs/"
    unlisted = [p.name for p in sorted(DOCS.glob("*.md")) if f"docs/{p.name}" not in text]
    assert not unlisted, f"docs pages missing from the README's table of contents: {unlisted}"


def test_readme_python_blocks_run_offline(tmp_path):
    """The quick starts (generate, parallel-forced, train) run as written, in order, in one fresh process, on
    the shipped models, followed by docs/design.md's strategy example; blocks marked `# not run in tests` are
    skipped."""
    if not (REPO / "models" / "nap-tiny" / "model.safetensors").exists():
        pytest.skip("the shipped models are not in this checkout")
    blocks = [b for b in python_blocks(read(README)) if NOT_RUN not in b]
    assert len(blocks) >= 3, "the README should keep its three runnable quick starts"
    blocks += [b for b in python_blocks(read(DOCS / "design.md")) if NOT_RUN not in b]
    script = tmp_path / "readme_blocks.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    (tmp_path / "models").symlink_to(REPO / "models")  # the blocks name models/... from the repository root
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"README code failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    # the parallel-forced quick start prints the summary and the answer parsed from it: nap-tiny solves the
    # README's problem (7 - 3 + 4)
    assert "\\boxed{8}. 8\n" in proc.stdout, proc.stdout[-3000:]
