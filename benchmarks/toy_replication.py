"""The paper's claims at toy scale: nap-tiny (NAP data, parallel-forced decoding) vs nap-tiny-longcot (the SAME
traces as one chain) and nap-tiny-isolated (nap-tiny fine-tuned with isolated paths, docs/design.md §10) on held-out
toy arithmetic problems, at 1 / 2 / 4 / 8 tokens per step.

Tables (analogues of the paper's Tables 1, 3, 4 and 5):
- Long-CoT model: AO (confidence), AR order, random order;
- NAP model: AO (confidence on the free canvas) and parallel-forced (m = 3);
- NAP model, parallel-forced at m = 1 / 2 / 3 with the same total budget (3 x 20 path slots + 12 summary slots);
- NAP-isolated model, parallel-forced m = 3 decoded with `path_isolation=True`;
and the decoding-dynamics figure of both models side by side (Figure 1). Each configuration's result is a JSON
file under `--out`; a re-run skips those already there (resumable per configuration).

`isolation-n{n}.md` (argmax runs) measures path isolation (issue 17) on nap-tiny (full attention) and
nap-tiny-isolated: Table 5 at toy scale (m = 1..5 paths of the SAME length 20, k = 1: accuracy, vote, what the
summary does), an independence probe (path 1's slot holds another problem's decoded path 1, committed; paths
2..m and the summary decoded again), Global-ARness@1 over content positions (digits) only, and path diversity
(identical paths under argmax, and sampled tokens at T = 0.5 / 1 for the isolated model).

```bash
python benchmarks/toy_replication.py --threads 1      # 200 held-out problems, k = 1 2 4 8 (about an hour)
python benchmarks/toy_replication.py --n 50 --ks 1    # the quick check used during training
python benchmarks/toy_replication.py --ks 1 --temperature 0.5   # sampled tokens instead of argmax (files *-T0.5-*)
```
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nap_hf.data.toy_arithmetic import majority_answer, toy_path_length  # noqa: E402
from nap_hf.io import write_text_atomic  # noqa: E402

ISOLATED = dict(strategy="parallel_forced", layout="nap", m=3, path_isolation=True)
"""The isolated model's decoding: parallel-forced m = 3 with isolated paths (docs/design.md §10)."""
TABLE5_MS = (1, 2, 3, 4, 5)
"""Paths of Table 5 at toy scale, every path slot `--path_length` long."""
TABLE5_KINDS = (("nap", "nap-tiny (full attention)", False), ("iso", "nap-tiny-isolated", True))
"""(model kind, label, path_isolation) of the isolation report's rows."""


def configurations(ks: list[int], temperature: float = 0.0) -> list[tuple[str, dict]]:
    """(model kind, ToyDecoding kwargs) for every row of the tables."""
    out = []
    for k in ks:
        for strategy in ("confidence", "ar", "random"):
            out.append(("longcot", dict(strategy=strategy, layout="longcot", tokens_per_step=k)))
        out.append(("nap", dict(strategy="confidence", layout="nap", tokens_per_step=k)))
        for m in (3, 2, 1):
            out.append(("nap", dict(strategy="parallel_forced", layout="nap", m=m, tokens_per_step=k)))
        out.append(("iso", dict(ISOLATED, tokens_per_step=k)))
    return [(kind, {**kw, "temperature": temperature}) for kind, kw in out]


def table5_configurations(path_length: int = 20, digits: int = 1) -> list[tuple[str, dict]]:
    """(model kind, ToyDecoding kwargs) of Table 5 at toy scale: m = 1..5 paths of `path_length` each, k = 1,
    argmax, for nap-tiny and nap-tiny-isolated. A row whose length equals the constant-budget rule (m = 3 at 20)
    leaves `path_length` unset, so that it shares the main table's run."""
    out = []
    for kind, _, isolated in TABLE5_KINDS:
        for m in TABLE5_MS:
            kw = dict(strategy="parallel_forced", layout="nap", m=m, tokens_per_step=1, temperature=0.0)
            if path_length != 3 * toy_path_length(digits) // m:
                kw["path_length"] = path_length
            if isolated:
                kw["path_isolation"] = True
            out.append((kind, kw))
    return out


def sampling_configurations(temperatures: list[float]) -> list[tuple[str, dict]]:
    """The path-diversity runs: both models' parallel-forced m = 3 at k = 1 at each temperature (0 = argmax)."""
    out = []
    for t in temperatures:
        out.append(
            ("nap", dict(strategy="parallel_forced", layout="nap", m=3, tokens_per_step=1, temperature=t))
        )
        out.append(("iso", dict(ISOLATED, tokens_per_step=1, temperature=t)))
    return out


def _temperature_tag(temperature: float) -> str:
    """The file-name tag of a sampled run (`-T0.5`); argmax runs have none."""
    return f"-T{temperature:g}" if temperature else ""


def _key(kind: str, kw: dict) -> str:
    tag = _temperature_tag(kw.get("temperature", 0.0))
    length = f"-L{kw['path_length']}" if kw.get("path_length") is not None else ""
    return f"{kind}-{kw['strategy']}-m{kw.get('m', 3)}{length}{tag}-k{kw['tokens_per_step']}"


_ROWS = [
    ("Long-CoT", "AO (confidence)", "longcot-confidence-m3"),
    ("Long-CoT", "AR order", "longcot-ar-m3"),
    ("Long-CoT", "random order", "longcot-random-m3"),
    ("NAP", "AO (confidence)", "nap-confidence-m3"),
    ("NAP", "parallel-forced m=3", "nap-parallel_forced-m3"),
    ("NAP", "parallel-forced m=2", "nap-parallel_forced-m2"),
    ("NAP", "parallel-forced m=1", "nap-parallel_forced-m1"),
    ("NAP-isolated", "parallel-forced m=3, isolated paths", "iso-parallel_forced-m3"),
]


def _table(results: dict[str, dict], ks: list[int], ceiling: float | None, temperature: float = 0.0) -> str:
    tag = _temperature_tag(temperature)

    def cell(key: str) -> str:
        r = results.get(key)
        return f"{100 * r['accuracy']:.1f} / {r['global_arness']:.2f}" if r else "n/a"

    def detail(key: str) -> str:
        r = results.get(key)
        if not r or "equation_accuracy" not in r:
            return "n/a"
        vote = r.get("vote_accuracy")
        return f"{100 * r['equation_accuracy']:.1f}" + (f" / {100 * vote:.1f}" if vote is not None else "")

    def errors(key: str) -> str:
        r = results.get(key)
        if not r or "misread_share" not in r:
            return "n/a"
        same = r.get("identical_paths")
        return f"{100 * r['path_accuracy']:.1f} / {100 * r['misread_share']:.0f}" + (
            f" / {100 * same:.0f}" if same is not None else ""
        )

    header = [
        "| model | decoding | " + " | ".join(f"k={k}" for k in ks) + " |",
        "|---|---|" + "---|" * len(ks),
    ]
    sampled = f"; tokens sampled at temperature {temperature:g}" if temperature else ""
    lines = [
        f"Accuracy (%) / Global-ARness@1 on held-out toy problems; steps = slots / k{sampled}.",
        "",
        *header,
    ]
    for model, label, stem in _ROWS:
        lines.append(f"| {model} | {label} | " + " | ".join(cell(f"{stem}{tag}-k{k}") for k in ks) + " |")
    lines += [
        "",
        "Equations with right arithmetic (%) / accuracy of a majority vote over the decoded paths' results (%, "
        "NAP layout only), same runs.",
        "",
        *header,
    ]
    for model, label, stem in _ROWS:
        lines.append(f"| {model} | {label} | " + " | ".join(detail(f"{stem}{tag}-k{k}") for k in ks) + " |")
    lines += [
        "",
        "Where the answers go wrong: decoded paths whose result is right (%) / wrong paths whose every equation is "
        "right, i.e. that used the wrong numbers or signs of the question (%) / problems whose decoded paths are "
        "all the same text (%, NAP layout only), same runs.",
        "",
        *header,
    ]
    for model, label, stem in _ROWS:
        lines.append(f"| {model} | {label} | " + " | ".join(errors(f"{stem}{tag}-k{k}") for k in ks) + " |")
    if ceiling is not None:
        lines += ["", f"Majority-vote ceiling of the test data's own paths: {100 * ceiling:.1f}%."]
    return "\n".join(lines) + "\n"


def model_label(path: str | Path) -> str:
    """The name a result row records for its model: the folder's name, and the training step of a checkpoint
    (a folder with `trainer_state.json`), so that rows of a checkpoint are never taken for the final model's."""
    path = Path(path)
    state = path / "trainer_state.json"
    if state.is_file():
        return f"{path.name} (step {json.loads(state.read_text())['global_step']})"
    return path.name


def _as_int(answer) -> int | None:
    try:
        return int(str(answer).strip())
    except ValueError:
        return None


def summary_stats(records: list[dict]) -> dict[str, float]:
    """What the summary does with the decoded paths (NAP layout): the share of problems whose summary answer is
    the majority vote of the paths' results, is right where the vote is wrong, is wrong where the vote is right."""
    if not records:
        raise ValueError("`records` is empty.")
    follows = fixes = breaks = 0
    for r in records:
        vote = majority_answer(r["path_answers"]) if r["path_answers"] else None
        vote_right = vote is not None and vote == r["gold"]
        answer = _as_int(r["answer"]) if r["answer"] is not None else None
        follows += answer is not None and answer == vote
        fixes += bool(r["correct"]) and not vote_right
        breaks += (not r["correct"]) and vote_right
    n = len(records)
    return {
        "summary_follows_vote": follows / n,
        "summary_fixes_vote": fixes / n,
        "summary_breaks_vote": breaks / n,
    }


@torch.no_grad()
def decode_with_committed_path(
    model, tokenizer, inputs: dict, kwargs: dict, path_ids: torch.Tensor, slot: int = 0
):
    """One batch decoded with `generate` kwargs `kwargs` (`ToyDecoding.generate_kwargs`) on a structured canvas whose path `slot` (0-based)
    already holds `path_ids` (B, path_length), committed (not fillable); the other paths and the summary are
    decoded by the same rule. Returns the `DiffusionGenerateOutput` (with `paths` / `answer` parsed).

    Private API on purpose (a benchmark, not the library): `generate()` cannot start from a canvas with a
    committed slot, so this repeats its set-up (config, strategy, structured canvas, isolation inputs) with the
    slot's tokens written in and made non-fillable, then runs the model's own loop (`_diffusion_loop`). The
    parallel-forced budget of the committed slot goes to the other paths (docs/design.md §3): at one token per
    step every remaining path still commits one token at a time, in the same order as in a normal decode, so a
    path that sees only the prompt and itself (path isolation, docs/design.md §10) is decoded by the same
    computation and cannot change under argmax."""
    from transformers import LogitsProcessorList

    from nap_hf.generation.canvas import nap_canvas, nap_layout
    from nap_hf.generation.isolated import check_isolation, isolated_canvas_inputs
    from nap_hf.generation.mixin import _parse_slots

    kwargs = dict(kwargs)
    tok = kwargs.pop("tokenizer", tokenizer)
    ids, mask = inputs["input_ids"], inputs.get("attention_mask")
    P = ids.shape[1]
    cfg = model._diffusion_config(None, {**kwargs, "return_dict_in_generate": True})
    strategy = model._strategy_for(cfg)
    generator = None if cfg.seed is None else torch.Generator(device=ids.device).manual_seed(int(cfg.seed))
    canvas = nap_canvas(ids, mask, nap_layout(cfg, tok), cfg.mask_token_id)
    span = canvas.layout.path_spans[slot]
    if tuple(path_ids.shape) != (ids.shape[0], len(span)):
        raise ValueError(
            f"`path_ids` must be (batch, path_length) = ({ids.shape[0]}, {len(span)}), got {tuple(path_ids.shape)}."
        )
    cols = slice(P + span.start, P + span.end)
    canvas.ids[:, cols] = path_ids.to(canvas.ids)
    canvas.fillable = canvas.fillable.clone()
    canvas.fillable[:, cols] = False
    if cfg.path_isolation:
        check_isolation(model, cfg, canvas)
        canvas.isolation = isolated_canvas_inputs(canvas, mask, model.dtype)
    out = model._diffusion_loop(ids, mask, cfg, strategy, generator, LogitsProcessorList(), None, canvas)
    _parse_slots(out, canvas, cfg, tok)
    return out


@torch.no_grad()
def independence_probe(model, tokenizer, problems, decoding, *, batch_size: int = 100, slot: int = 0) -> dict:
    """The independence probe: decode every problem normally, then again with path `slot`'s slot holding the
    tokens decoded there for the NEXT problem of a different question (committed), the rest decoded by the same
    rule (:func:`decode_with_committed_path`). Returns the normal and probed accuracy, the vote accuracy and path
    accuracy of the probed paths, the share of problems whose other paths' tokens changed, and whose answer
    changed, with one record per problem."""
    from nap_hf.data.format import build_layout
    from nap_hf.evaluation.toy import toy_prompts, toy_record

    if len(problems) < 2:
        raise ValueError(
            "the independence probe needs at least 2 problems (one donates its path to another)."
        )
    kwargs = decoding.generate_kwargs(tokenizer)
    normal, answers = [], []
    for start in range(0, len(problems), batch_size):
        inputs = toy_prompts(tokenizer, problems[start : start + batch_size])
        out = model.generate(**inputs, return_dict_in_generate=True, **kwargs)
        normal.append(out.sequences[:, inputs["input_ids"].shape[1] :])
        answers += out.answer
    gen = torch.cat(normal)  # (n, G): the structured part sits at the same columns for every prompt length
    n = len(problems)
    donors = []
    for i in range(n):
        j = (i + 1) % n
        while problems[j].question == problems[i].question and j != i:
            j = (j + 1) % n
        if j == i:
            raise ValueError("the independence probe needs problems with at least 2 different questions.")
        donors.append(j)
    layout = build_layout(tokenizer, kwargs["m"], kwargs["path_length"], kwargs["summary_length"])
    span = layout.path_spans[slot]
    others = torch.zeros(layout.length, dtype=torch.bool)  # the other paths' slots (not the summary)
    for j, sp in enumerate(layout.path_spans):
        others[sp.start : sp.end] = j != slot
    records, changed, answer_changed = [], [], []
    for start in range(0, n, batch_size):
        batch = problems[start : start + batch_size]
        inputs = toy_prompts(tokenizer, batch)
        P = inputs["input_ids"].shape[1]
        rows = list(range(start, start + len(batch)))
        donor_ids = gen[[donors[r] for r in rows], span.start : span.end]
        out = decode_with_committed_path(model, tokenizer, inputs, kwargs, donor_ids, slot)
        for b, r in enumerate(rows):
            new = out.sequences[b, P:]
            if not torch.equal(new[span.start : span.end], donor_ids[b]):
                raise RuntimeError("the committed path slot was rewritten by the decoding loop.")
            changed.append(not torch.equal(new[others], gen[r][others]))
            answer_changed.append(out.answer[b] != answers[r])
            rec = toy_record(batch[b], out.answer[b], out.paths[b], decoding.digits)
            rec.update(donor=problems[donors[r]].id, paths_changed=changed[-1], normal_answer=answers[r])
            records.append(rec)
    others_right = [a == r["gold"] for r in records for j, a in enumerate(r["path_answers"]) if j != slot]
    return {
        "decoding": decoding.name + " probe",
        "n": n,
        "normal_accuracy": sum(_as_int(a) == p.answer for a, p in zip(answers, problems, strict=True)) / n,
        "accuracy": sum(r["correct"] for r in records) / n,
        "vote_accuracy": sum(
            bool(r["path_answers"]) and majority_answer(r["path_answers"]) == r["gold"] for r in records
        )
        / n,
        "other_paths_right": sum(others_right) / max(1, len(others_right)),
        "paths_changed": sum(changed) / n,
        "answer_changed": sum(answer_changed) / n,
        "records": records,
    }


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def isolation_report(
    results: dict[str, dict],
    probes: dict[str, dict],
    ks: list[int],
    n: int,
    labels: dict[str, str],
    path_length: int = 20,
    temperatures: tuple[float, ...] = (0.5, 1.0),
    digits: int = 1,
    header_tokens: dict[int, list[int]] | None = None,
) -> str:
    """The markdown of `isolation-n{n}.md` from the result rows (`results`, by `_key`) and the probes (by kind);
    `header_tokens` (m -> token count of each path header) adds what the headers do to the isolated positions."""
    names = {"nap": "nap-tiny", "iso": "nap-tiny-isolated", "longcot": "nap-tiny-longcot"}

    def model(kind: str, row: dict | None = None) -> str:
        label = (row or {}).get("model") or labels.get(kind)
        return names[kind] + (f" [{label}]" if label and label != names[kind] else "")

    iso_row = results.get(_key("iso", dict(ISOLATED, tokens_per_step=1, temperature=0.0)))
    lines = [
        f"# Path isolation at toy scale (issue 17), {n} held-out problems",
        "",
        "nap-tiny decodes with full attention; nap-tiny-isolated (nap-tiny fine-tuned with isolated paths) decodes "
        "with `path_isolation=True`: each path sees the prompt and itself, the summary sees everything, all path "
        "slots share positions (docs/design.md §10). Argmax tokens unless a temperature is given.",
        f"Isolated model: {model('iso', iso_row)}.",
        "",
        "## Parallel-forced m = 3 at k tokens per step",
        "",
        "Accuracy (%) / vote accuracy (majority of the paths' results, %) / problems whose paths are all the same "
        "text (%).",
        "",
        "| model | " + " | ".join(f"k={k}" for k in ks) + " |",
        "|---|" + "---|" * len(ks),
    ]
    for kind, kw in (("nap", dict(strategy="parallel_forced", layout="nap", m=3)), ("iso", ISOLATED)):
        cells = []
        for k in ks:
            r = results.get(_key(kind, {**kw, "tokens_per_step": k, "temperature": 0.0}))
            cells.append(
                f"{_pct(r['accuracy'])} / {_pct(r['vote_accuracy'])} / {100 * r['identical_paths']:.0f}"
                if r
                else "n/a"
            )
        lines.append(f"| {model(kind)} | " + " | ".join(cells) + " |")

    lines += [
        "",
        f"## Table 5 at toy scale: m paths of {path_length} tokens each, k = 1",
        "",
        "The models were trained on m = 3. Every path slot keeps the training length (not the constant budget of "
        "the main table), so the canvas grows with m. Summary = vote: the summary's answer is the paths' majority "
        "(%); fixes / breaks: the summary is right where the vote is wrong / wrong where the vote is right (%).",
        "",
        "| model | m | accuracy | vote accuracy | paths right | summary = vote | fixes / breaks | identical paths |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    if header_tokens:
        widths = ", ".join(f"m={m}: {'+'.join(map(str, h))}" for m, h in sorted(header_tokens.items()))
        notes = [
            "",
            f"Path header tokens ({widths}). Isolated, every path slot starts at position prompt + H, H = the longest "
            "path header (docs/design.md §10): a header the toy tokenizer splits (it has single tokens for "
            "`<think 1>`..`<think 3>` only) moves every isolated path, not only the new ones.",
        ]
    for kind, kw in table5_configurations(path_length, digits):
        r = results.get(_key(kind, kw))
        if not r:
            lines.append(f"| {model(kind)} | {kw['m']} | n/a | n/a | n/a | n/a | n/a | n/a |")
            continue
        st = summary_stats(r["records"])
        same = "-" if kw["m"] == 1 else f"{100 * r['identical_paths']:.0f}"
        lines.append(
            f"| {model(kind, r)} | {kw['m']} | {_pct(r['accuracy'])} | {_pct(r['vote_accuracy'])} | "
            f"{_pct(r['path_accuracy'])} | {_pct(st['summary_follows_vote'])} | "
            f"{_pct(st['summary_fixes_vote'])} / {_pct(st['summary_breaks_vote'])} | {same} |"
        )
    lines += notes

    lines += [
        "",
        "## Independence probe (m = 3, k = 1)",
        "",
        "Each problem is decoded normally; then path 1's slot is given the path 1 decoded for the next problem "
        "(committed, not fillable) and paths 2-3 and the summary are decoded again by the same rule. Under "
        "isolation paths 2-3 cannot see path 1, so they cannot change; with full attention they can. Accuracy of "
        "the summary (%), of the vote over all three paths (%), paths 2-3 with the right result (%), problems "
        "whose paths 2-3 changed (any token, %) and whose answer changed (%); wrong answers that are the foreign "
        "path 1's result (% of problems).",
        "",
        "| model | accuracy (normal) | accuracy (probe) | vote (probe) | paths 2-3 right | paths 2-3 changed | "
        "answer changed | wrong = foreign result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind in ("nap", "iso"):
        r = probes.get(kind)
        if not r:
            lines.append(f"| {model(kind)} | n/a | n/a | n/a | n/a | n/a | n/a | n/a |")
            continue
        recs = r.get("records") or []
        foreign = (
            _pct(
                sum(
                    not x["correct"]
                    and bool(x["path_answers"])
                    and x["path_answers"][0] is not None
                    and x["path_answers"][0] == _as_int(x["answer"])
                    for x in recs
                )
                / len(recs)
            )
            if recs
            else "n/a"
        )
        lines.append(
            f"| {model(kind, r)} | {_pct(r['normal_accuracy'])} | {_pct(r['accuracy'])} | {_pct(r['vote_accuracy'])} | "
            f"{_pct(r['other_paths_right'])} | {_pct(r['paths_changed'])} | {_pct(r['answer_changed'])} | {foreign} |"
        )

    lines += [
        "",
        "## Content AR-ness",
        "",
        "Global-ARness@1 over all generated positions / over the content positions only (the digits of operands, "
        "results and the answer; `=`, operators, newlines, tags, EOS filler and the summary's wording left out).",
        "",
        "| model | decoding | " + " | ".join(f"k={k}" for k in ks) + " |",
        "|---|---|" + "---|" * len(ks),
    ]
    for kind, label, kw in (
        ("longcot", "AO (confidence)", dict(strategy="confidence", layout="longcot")),
        ("nap", "parallel-forced m=3", dict(strategy="parallel_forced", layout="nap", m=3)),
        ("iso", "parallel-forced m=3, isolated", ISOLATED),
    ):
        cells = []
        for k in ks:
            r = results.get(_key(kind, {**kw, "tokens_per_step": k, "temperature": 0.0}))
            ok = r is not None and r.get("content_arness") is not None
            cells.append(f"{r['global_arness']:.2f} / {r['content_arness']:.2f}" if ok else "n/a")
        lines.append(f"| {model(kind)} | {label} | " + " | ".join(cells) + " |")

    lines += [
        "",
        "## Path diversity (m = 3, k = 1)",
        "",
        "Under argmax, isolated paths see the same prompt at the same positions and differ only by their header. "
        "Sampled tokens (seeded; each path position its own draw): accuracy (%), vote accuracy (%), paths with the "
        "right result (%), problems whose paths are all the same text (%), Global-ARness@1.",
        "",
        "| model | tokens | accuracy | vote accuracy | paths right | identical paths | Global-ARness@1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, kw in sampling_configurations([0.0, *temperatures]):
        r = results.get(_key(kind, kw))
        t = kw["temperature"]
        tokens = f"sampled, T={t:g}" if t else "argmax"
        if not r:
            lines.append(f"| {model(kind)} | {tokens} | n/a | n/a | n/a | n/a | n/a |")
            continue
        lines.append(
            f"| {model(kind, r)} | {tokens} | {_pct(r['accuracy'])} | {_pct(r['vote_accuracy'])} | "
            f"{_pct(r['path_accuracy'])} | {100 * r['identical_paths']:.0f} | {r['global_arness']:.2f} |"
        )
    return "\n".join(lines) + "\n"


CONTENT_ROWS = {"longcot-confidence-m3", "nap-parallel_forced-m3", "iso-parallel_forced-m3"}
"""Rows (keys without `-k{k}`) whose runs must carry `content_arness` (older files lacking it are re-run)."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nap", default=str(REPO / "models" / "nap-tiny"))
    parser.add_argument("--longcot", default=str(REPO / "models" / "nap-tiny-longcot"))
    parser.add_argument(
        "--isolated",
        default=str(REPO / "models" / "nap-tiny-isolated"),
        help="the isolated model (or a checkpoint folder: its rows are labelled with the step)",
    )
    parser.add_argument("--n", type=int, default=200, help="held-out problems")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8], help="tokens per step")
    parser.add_argument("--seed", type=int, default=0, help="the toy task's seed (as in training)")
    parser.add_argument("--digits", type=int, choices=[1, 2], default=1, help="the toy task's number width")
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument(
        "--temperature", type=float, default=0.0, help="0 = argmax tokens (the tables); > 0 = sampled, seeded"
    )
    parser.add_argument("--path_length", type=int, default=20, help="every path's slot in the Table 5 runs")
    parser.add_argument(
        "--temperatures",
        type=float,
        nargs="*",
        default=[0.5, 1.0],
        help="the path-diversity runs' temperatures",
    )
    parser.add_argument(
        "--no_isolation", action="store_true", help="skip the isolation report (Table 5, probe, diversity)"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "toy_replication"))
    args = parser.parse_args(argv)
    if args.temperature < 0 or any(t <= 0 for t in args.temperatures):
        parser.error(
            f"--temperature must be >= 0 (0 = argmax) and --temperatures > 0, got {args.temperature} and "
            f"{args.temperatures}"
        )
    if args.n < 2:
        parser.error(f"--n must be >= 2, got {args.n}")
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import AutoModel, AutoTokenizer

    import nap_hf  # noqa: F401
    from nap_hf.data.toy_arithmetic import ToyArithmetic, data_stats
    from nap_hf.evaluation.toy import ToyDecoding, evaluate_toy

    task = ToyArithmetic(seed=args.seed, digits=args.digits)
    problems = [task.problem(i, "test") for i in range(args.n)]
    ceiling = data_stats(task.instances(args.n, "test"))["majority_vote_ceiling"]
    models, labels = {}, {}
    for kind, path in (("nap", args.nap), ("longcot", args.longcot), ("iso", args.isolated)):
        if Path(path).is_dir():
            tok_path = path if (Path(path) / "tokenizer.json").is_file() else args.nap
            models[kind] = (AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(tok_path))
            labels[kind] = model_label(path)
        else:
            print(f"(no {kind} model at {path}: its rows are skipped)")
    out = Path(args.out)
    results: dict[str, dict] = {}

    def run(kind: str, kw: dict) -> None:
        """One configuration: its JSON file if there (and of this model), else decoded and written."""
        key = _key(kind, kw)
        file = out / f"{key}-n{args.n}.json"
        row = json.loads(file.read_text()) if file.exists() else None
        stale = row is not None and (
            (kind in labels and row.get("model", labels[kind]) != labels[kind])
            or (
                not kw["temperature"]
                and key.rsplit("-k", 1)[0] in CONTENT_ROWS
                and "content_arness" not in row
            )
        )
        if row is not None and (not stale or kind not in models):
            results[key] = row
            return
        if kind not in models:
            return
        model, tok = models[kind]
        t0 = time.perf_counter()
        res = evaluate_toy(
            model, tok, problems, ToyDecoding(**kw, digits=args.digits), batch_size=args.batch_size
        )
        row = {
            **dataclasses.asdict(res),
            "model": labels[kind],
            "seconds": round(time.perf_counter() - t0, 1),
        }
        write_text_atomic(file, json.dumps(row) + "\n")
        results[key] = row
        content = f"{res.content_arness:.3f}" if res.content_arness is not None else "n/a"
        print(
            f"{labels[kind][:24]:24s} {res.decoding:40s} acc {100 * res.accuracy:5.1f}%  "
            f"equations {100 * res.equation_accuracy:5.1f}%  Global-ARness@1 {res.global_arness:.3f} "
            f"(content {content})  NFE {res.nfe:.0f}  ({row['seconds']} s)",
            flush=True,
        )

    for kind, kw in configurations(args.ks, args.temperature):
        run(kind, kw)
    table = _table(results, args.ks, ceiling, args.temperature)
    write_text_atomic(out / f"table-n{args.n}{_temperature_tag(args.temperature)}.md", table)
    print("\n" + table)

    if not args.temperature and not args.no_isolation:
        for kind, kw in table5_configurations(args.path_length, args.digits) + sampling_configurations(
            [0.0, *args.temperatures]
        ):
            run(kind, kw)
        probes = {}
        for kind, _, isolated in TABLE5_KINDS:
            file = out / f"{kind}-probe-m3-k1-n{args.n}.json"
            row = json.loads(file.read_text()) if file.exists() else None
            if row is not None and (kind not in models or row.get("model") == labels[kind]):
                probes[kind] = row
                continue
            if kind not in models:
                continue
            model, tok = models[kind]
            t0 = time.perf_counter()
            decoding = ToyDecoding(m=3, digits=args.digits, path_isolation=isolated)
            row = independence_probe(model, tok, problems, decoding, batch_size=args.batch_size)
            row.update(model=labels[kind], seconds=round(time.perf_counter() - t0, 1))
            write_text_atomic(file, json.dumps(row) + "\n")
            probes[kind] = row
            print(
                f"{labels[kind][:24]:24s} probe: acc {100 * row['normal_accuracy']:5.1f}% -> "
                f"{100 * row['accuracy']:5.1f}%  paths 2..m changed {100 * row['paths_changed']:5.1f}%  "
                f"({row['seconds']} s)",
                flush=True,
            )
        from nap_hf.data.format import build_layout
        from nap_hf.data.toy_arithmetic import TOY_SUMMARY_LENGTH

        tok = next(iter(models.values()))[1] if models else None
        headers = (
            {
                m: [
                    len(h) for h in build_layout(tok, m, args.path_length, TOY_SUMMARY_LENGTH).header_ids[:-1]
                ]
                for m in TABLE5_MS
            }
            if tok is not None
            else None
        )
        report = isolation_report(
            results,
            probes,
            args.ks,
            args.n,
            labels,
            args.path_length,
            tuple(args.temperatures),
            args.digits,
            header_tokens=headers,
        )
        write_text_atomic(out / f"isolation-n{args.n}.md", report)
        print("\n" + report)

    figure = out / "decoding_dynamics.png"
    if "nap" in models and "longcot" in models and not args.temperature and not figure.exists():
        # Figure 1 at toy scale: both models at 1 token/step, argmax
        from nap_hf.evaluation.toy import toy_prompts
        from nap_hf.plotting import plot_decoding_dynamics

        runs, regions, titles = [], [], []
        for kind, kw, title in (
            ("longcot", dict(strategy="confidence", layout="longcot"), "Long-CoT model, AO"),
            ("nap", dict(strategy="confidence", layout="nap"), "NAP model, AO"),
            ("nap", dict(strategy="parallel_forced", layout="nap"), "NAP model, parallel-forced"),
        ):
            model, tok = models[kind]
            inputs = toy_prompts(tok, problems[:1])
            o = model.generate(
                **inputs,
                return_dict_in_generate=True,
                **ToyDecoding(**kw, digits=args.digits).generate_kwargs(tok),
            )
            runs.append(o.trace)
            regions.append(o.regions if o.paths is not None else None)
            titles.append(title)
        plot_decoding_dynamics(runs, regions=regions, titles=titles, path=figure)
        print(f"figure: {figure}")


if __name__ == "__main__":
    main()
