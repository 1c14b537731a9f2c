"""Decoding with isolated paths (docs/design.md §10, `generate(path_isolation=True)`).

The prompt attends to the prompt only, so its keys and values are exact: they are computed ONCE. Path j
attends to the prompt and to itself, so the m paths are decoded as m rows of length `H + path_length` (the
longest header, then the slot) that share the prompt's keys and values: a path step runs the trunk over
B x m x (H + path_length) query tokens against P + H + path_length keys, never over the whole canvas. The
summary attends to everything: its steps run the trunk over the summary columns only, against the prompt's
keys, the paths' keys (computed from the paths as they stand, and recomputed only after a path column
changed) and its own. The result equals the whole canvas under the isolated mask (`path_isolation="masked"`,
`nap_hf.isolation.isolated_inputs`), which the tests check in float64.

`distribute_paths=True` splits the paths over the processes of `torch.distributed`: each process runs the
trunk on its own paths only (the other paths' rows get placeholder logits: the parallel-forced budget of a
path depends on the step, never on the other paths' text, so every process commits the same counts), then
ONE all-gather of the path tokens and their trace before the summary, which every process decodes alike.
"""

from __future__ import annotations

import torch
from transformers.utils import logging

from ..alignment import align_predictions
from ..isolation import IsolatedInputs, isolated_inputs, path_header_width
from .cache import DiffusionCache, DiffusionCacheLayer, needs_refresh, window_columns

logger = logging.get_logger(__name__)

__all__ = ["IsolatedPathsForward", "check_isolation", "isolated_canvas_inputs", "path_shares"]

# what nap-tiny (trained with full attention) did when decoded isolated: the warning quotes it
_UNTRAINED_WARNING = (
    "%s was not trained with path isolation (its config has no `path_isolation: true`). Decoded isolated, a model "
    "trained with full attention reads paths it can no longer see: nap-tiny fell from 96%% to 0%% on 50 held-out "
    "toy problems (29%% of its equations right). Train with DiffusionSFTConfig(path_isolation=True) first, or "
    "decode with path_isolation=False."
)


def isolated_canvas_inputs(canvas, attention_mask: torch.Tensor | None, dtype: torch.dtype) -> IsolatedInputs:
    """The isolated mask and positions of a decoding canvas (left-padded prompt, then the structured region)."""
    B, L = canvas.ids.shape
    P = canvas.prompt_length
    real = torch.ones(B, L, dtype=torch.bool, device=canvas.ids.device)
    if attention_mask is not None:
        real[:, :P] = attention_mask.bool()
    if not dtype.is_floating_point:
        dtype = torch.float32
    return isolated_inputs(canvas.layout, real, P, dtype=dtype)


def check_isolation(model, cfg, canvas) -> None:
    """Refuse what isolated decoding cannot do, with the fix; warn when the model was not trained isolated."""
    if canvas.layout is None:
        raise ValueError(
            "path_isolation needs the structured canvas: use strategy='parallel_forced' (or canvas='nap' with a "
            "strategy that decodes it)."
        )
    if float(cfg.cfg_scale or 0.0) > 0:
        raise ValueError("path_isolation does not support classifier-free guidance: pass cfg_scale=0.")
    P = canvas.prompt_length
    if bool(canvas.fillable[:, :P].any()):
        raise ValueError(
            "path_isolation needs a prompt without mask tokens (infilling): the prompt's keys and values are "
            "computed once. Remove the mask tokens from input_ids, or pass path_isolation=False."
        )
    if cfg.path_isolation is True:
        if not getattr(model, "_supports_diffusion_cache", False):
            raise ValueError(
                f"{type(model).__name__} takes no DiffusionCache (partial forwards), which path_isolation=True needs; "
                "use path_isolation='masked' (the whole canvas under the isolated mask)."
            )
    if cfg.path_isolation == "masked" and cfg.cache_implementation is not None:
        raise ValueError(
            "path_isolation='masked' is the exact reference and takes no cache: pass cache_implementation=None, or "
            "path_isolation=True (its path rows take the cache)."
        )
    if cfg.distribute_paths:
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            raise ValueError(
                "distribute_paths=True needs torch.distributed to be initialised (launch with torchrun or accelerate "
                "launch, every process passing the same prompts)."
            )
        if cfg.early_stop:
            raise ValueError(
                "distribute_paths=True does not support early_stop=True (a path's early exit would change the "
                "budget of the paths on other processes); pass early_stop=False."
            )
    if not getattr(getattr(model, "config", None), "path_isolation", False):
        name = getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
        logger.warning_once(_UNTRAINED_WARNING, name)


def path_shares(m: int, world_size: int) -> list[list[int]]:
    """The 0-based paths of each process: contiguous, the first `m % world_size` processes one more
    (m = 3 over 2 processes: [[0, 1], [2]])."""
    base, extra = divmod(m, world_size)
    out, start = [], 0
    for rank in range(world_size):
        n = base + (1 if rank < extra else 0)
        out.append(list(range(start, start + n)))
        start += n
    return out


class IsolatedPathsForward:
    """The decoding pass of one isolated `generate` call: `(x, rows, window) -> (N, V)` aligned logits of the N
    positions of `rows`, as the loop's other passes. See the module docstring for what it computes.

    Counters (for tests and benchmarks): `prompt_tokens` (query tokens of the prompt pass, once),
    `path_tokens` / `summary_tokens` (query tokens through the trunk in the path rows / the summary columns),
    `path_passes` / `summary_passes`."""

    def __init__(
        self,
        model,
        canvas,
        attention_mask: torch.Tensor | None,
        shift: bool,
        distribute: bool = False,
        cache_implementation: str | None = None,
        cache_refresh="any",
    ):
        self.decoder = model.get_decoder()
        self.head = model.get_output_embeddings()
        self.shift = shift
        self.layout = layout = canvas.layout
        self.P = P = canvas.prompt_length
        B, L = canvas.ids.shape
        self.B, self.L = B, L
        device = canvas.ids.device
        self.attention_mask = attention_mask  # (B, L) padding of the whole canvas, or None
        self.positions = canvas.isolation.position_ids
        self.prompt_real = (
            attention_mask[:, :P].bool()
            if attention_mask is not None
            else torch.ones(B, P, dtype=torch.bool, device=device)
        )
        # the path rows: column r of path j's row is canvas column src[j, r] (-1: left padding of a short header)
        H = path_header_width(layout)
        self.R = R = H + layout.path_length
        src = torch.full((layout.m, R), -1, dtype=torch.long, device=device)
        headers = layout.header_spans[: layout.m]
        for j, (head, slot) in enumerate(zip(headers, layout.path_spans, strict=True)):
            src[j, H - len(head) : H] = torch.arange(P + head.start, P + head.end, device=device)
            src[j, H:] = torch.arange(P + slot.start, P + slot.end, device=device)
        self.src = src
        self.path_columns = torch.zeros(L, dtype=torch.bool, device=device)
        self.path_columns[src[src >= 0]] = True
        summary_head = layout.header_spans[-1]
        self.summary_cols = torch.arange(P + summary_head.start, L, device=device)
        self.summary_columns = torch.zeros(L, dtype=torch.bool, device=device)
        self.summary_columns[self.summary_cols] = True
        # distributed paths: this process's share (all paths in a single process)
        self.rank, self.world = 0, 1
        if distribute:
            self.rank, self.world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        self.shares = path_shares(layout.m, self.world)
        self.local = self.shares[self.rank]
        self.gathered = self.world == 1
        self.local_columns = torch.zeros(L, dtype=torch.bool, device=device)
        for j in self.local:
            self.local_columns[src[j][src[j] >= 0]] = True
        self.foreign_columns = self.path_columns & ~self.local_columns  # other processes' paths
        self.trace: torch.Tensor | None = None  # the loop's trace, fixed up by the gather (set by the loop)
        self.prompt_cache: DiffusionCache | None = None
        self.path_caches: dict[tuple[int, ...], tuple[DiffusionCache, torch.Tensor | None]] = {}
        self.canvas_cache: DiffusionCache | None = None
        # whether the canvas cache's path keys and values lag behind the paths as they stand
        self.paths_stale = True
        self.prompt_tokens = self.path_tokens = self.summary_tokens = 0
        self.path_passes = self.summary_passes = 0
        # Fast-dLLM's dual / prefix cache INSIDE the path rows (docs/caching.md): a path step recomputes only the
        # active blocks' row columns (dual) or from the first of them on (prefix), and refreshes the whole rows
        # under `cache_refresh`; the prompt's keys and values stay exact and are never recomputed
        self.cache_mode, self.cache_refresh = cache_implementation, cache_refresh
        self.last_window: torch.BoolTensor | None = None
        self.since_refresh = 0
        self.rows_dirty = True
        self.recomputed: torch.BoolTensor | None = None  # canvas columns the last path pass recomputed

    # ------------------------------------------------------------------ the passes
    def _prompt_pass(self, x: torch.LongTensor) -> None:
        """The prompt's keys and values, once: a forward over the prompt alone (it attends to nothing else)."""
        self.prompt_cache = DiffusionCache()
        self.decoder(
            input_ids=x[:, : self.P],
            attention_mask=None if bool(self.prompt_real.all()) else self.prompt_real.long(),
            position_ids=self.positions[:, : self.P],
            cache=self.prompt_cache,
        )
        self.prompt_tokens += x.shape[0] * self.P

    def _path_cache(self, paths: tuple[int, ...]) -> tuple[DiffusionCache, torch.Tensor | None]:
        """A cache over the (B x len(paths), P + R) path rows whose prompt columns hold the prompt's keys and
        values (one copy per row; a partial forward rewrites the R path columns only), and the rows' padding mask
        over those keys (None without padding). Built once per set of paths."""
        if paths not in self.path_caches:
            n = len(paths)
            real = torch.cat(  # the keys: the prompt and every real column of the row
                [
                    self.prompt_real[:, None, :].expand(-1, n, -1),
                    (self.src[list(paths)] >= 0)[None].expand(self.B, -1, -1),
                ],
                -1,
            ).reshape(self.B * n, self.P + self.R)
            cache = DiffusionCache()
            for layer in self.prompt_cache.layers:
                k, v = layer.keys, layer.values  # (B, H_kv, P, hd)
                pad = k.new_zeros(k.shape[0], k.shape[1], self.R, k.shape[3])
                new = DiffusionCacheLayer()
                new.lazy_initialization(
                    torch.cat([k, pad], 2).repeat_interleave(n, 0),
                    torch.cat([v, pad], 2).repeat_interleave(n, 0),
                )
                cache.layers.append(new)
            self.path_caches[paths] = (cache, None if bool(real.all()) else real.long())
        return self.path_caches[paths]

    def _row_columns(
        self, paths: tuple[int, ...], window: torch.BoolTensor | None
    ) -> torch.LongTensor | None:
        """The row columns this path step recomputes under the cache in the rows (None: all R, a refresh)."""
        if self.cache_mode is None or window is None:
            return None
        src = self.src[list(paths)]
        row_window = (window[src.clamp(min=0)] & (src >= 0)).any(0)  # (R,) active in some path
        if self.rows_dirty or needs_refresh(
            self.cache_refresh, row_window, self.last_window, self.since_refresh
        ):
            self.last_window, self.since_refresh, self.rows_dirty = row_window, 1, False
            return None
        self.since_refresh += 1
        return window_columns(row_window, self.cache_mode, self.shift)

    def _path_pass(
        self, x: torch.LongTensor, paths: tuple[int, ...], cols: torch.LongTensor | None = None
    ) -> tuple[torch.Tensor, torch.LongTensor]:
        """Hidden states (B, n, Q, D) of the rows of `paths` (0-based) for the canvas `x` at the row columns `cols`
        (Q of them; None = all R), and the (n, Q) canvas columns they are (-1: a short header's padding)."""
        n = len(paths)
        whole = self.src[list(paths)]  # (n, R)
        src = whole if cols is None else whole[:, cols]
        valid = src >= 0
        row_cols = torch.arange(self.R, device=x.device) if cols is None else cols
        Q = row_cols.numel()
        canvas_cols = src.clamp(min=0)
        ids = x[:, canvas_cols].masked_fill(~valid, 0).reshape(self.B * n, Q)
        pos = self.positions[:, canvas_cols].masked_fill(~valid, 0).reshape(self.B * n, Q)
        cache, key_mask = self._path_cache(paths)
        hidden = self.decoder(
            input_ids=ids,
            attention_mask=key_mask,
            position_ids=pos,
            cache=cache,
            cache_position=self.P + row_cols,
        ).last_hidden_state
        self.path_tokens += ids.numel()
        self.path_passes += 1
        return hidden.reshape(self.B, n, Q, -1), src

    def _refresh_path_keys(self, paths: tuple[int, ...]) -> None:
        """Copy the keys and values of `paths`' rows (just computed by a path pass) into the canvas cache."""
        if self.canvas_cache is None:
            self.canvas_cache = DiffusionCache()
            for layer in self.prompt_cache.layers:
                k, v = layer.keys, layer.values
                pad = k.new_zeros(k.shape[0], k.shape[1], self.L - self.P, k.shape[3])
                new = DiffusionCacheLayer()
                new.lazy_initialization(torch.cat([k, pad], 2), torch.cat([v, pad], 2))
                self.canvas_cache.layers.append(new)
        n = len(paths)
        src = self.src[list(paths)]
        valid = src >= 0
        canvas_cols = src[valid]  # (n_valid,)
        row_cols = (torch.arange(self.R, device=src.device)[None, :].expand(n, -1))[valid] + self.P
        path_of = torch.arange(n, device=src.device)[:, None].expand(-1, self.R)[valid]
        for mine, theirs in zip(self.canvas_cache.layers, self._path_cache(paths)[0].layers, strict=True):
            for a, b in ((mine.keys, theirs.keys), (mine.values, theirs.values)):
                rows = b.reshape(self.B, n, *b.shape[1:])  # (B, n, H_kv, P + R, hd)
                a[:, :, canvas_cols] = rows[:, path_of, :, row_cols].permute(1, 2, 0, 3)

    def _summary_pass(self, x: torch.LongTensor) -> torch.Tensor:
        """Hidden states (B, S, D) of the summary columns, attending to every real column of the canvas."""
        cols = self.summary_cols
        hidden = self.decoder(
            input_ids=x[:, cols],
            attention_mask=self.attention_mask,
            position_ids=self.positions[:, cols],
            cache=self.canvas_cache,
            cache_position=cols,
        ).last_hidden_state
        self.summary_tokens += x.shape[0] * cols.numel()
        self.summary_passes += 1
        return hidden

    # ------------------------------------------------------------------ distributed paths
    def _gather_paths(self, x: torch.LongTensor) -> None:
        """The one all-gather: each process's path tokens (and their trace) to every process."""
        cols = self.path_columns.nonzero()[:, 0]
        mine = [x[:, cols]] + ([self.trace[:, cols]] if self.trace is not None else [])
        packed = torch.stack(mine, 0)  # (1 or 2, B, C)
        parts = [torch.empty_like(packed) for _ in range(self.world)]
        torch.distributed.all_gather(parts, packed.contiguous())
        owner = torch.empty(cols.numel(), dtype=torch.long, device=x.device)
        col_index = torch.full((self.L,), -1, dtype=torch.long, device=x.device)
        col_index[cols] = torch.arange(cols.numel(), device=x.device)
        for rank, share in enumerate(self.shares):
            for j in share:
                row = self.src[j]
                owner[col_index[row[row >= 0]]] = rank
        stacked = torch.stack(parts, 0)  # (world, 1 or 2, B, C)
        pick = stacked[owner, :, :, torch.arange(cols.numel(), device=x.device)]  # (C, 1 or 2, B)
        x[:, cols] = pick[:, 0].T
        if self.trace is not None:
            self.trace[:, cols] = pick[:, 1].T
        self.gathered = True

    # ------------------------------------------------------------------ the loop's call
    def __call__(self, x: torch.LongTensor, rows: torch.BoolTensor, window=None) -> torch.Tensor:
        if self.prompt_cache is None:
            self._prompt_pass(x)
        need = rows.any(0)  # (L,) columns asked for in some row
        need_paths, need_summary, outside = torch.stack(  # one host sync for the step's three questions
            [
                (need & c).any()
                for c in (
                    self.path_columns,
                    self.summary_columns,
                    ~(self.path_columns | self.summary_columns),
                )
            ]
        ).tolist()
        if outside:
            raise RuntimeError(
                "path isolation: a strategy asked for a column outside the paths and the summary."
            )
        full = None
        ran_all = False
        if need_paths:
            local = tuple(self.local)
            cols = self._row_columns(local, window)
            h, src = self._path_pass(x, local, cols)  # (B, n, Q, D), (n, Q)
            full = h.new_zeros(self.B, self.L, h.shape[-1])
            valid = src >= 0
            full[:, src[valid]] = h[:, valid]
            self.recomputed = torch.zeros(self.L, dtype=torch.bool, device=x.device)
            self.recomputed[src[valid]] = True
            if bool((need & self.local_columns & ~self.recomputed).any()):
                raise RuntimeError(
                    "a strategy asked for path columns outside its active window (StepPlan.window)."
                )
            ran_all = cols is None and len(local) == self.layout.m
        if need_summary:
            if not self.gathered:
                self._gather_paths(x)
            if self.paths_stale:  # the paths' keys and values as the paths stand now
                everything = tuple(range(self.layout.m))
                if not ran_all:
                    self._path_pass(x, everything)
                self._refresh_path_keys(everything)
                self.paths_stale = False
            h = self._summary_pass(x)
            if full is None:
                full = h.new_zeros(self.B, self.L, h.shape[-1])
            full[:, self.summary_cols] = h
        hidden = align_predictions(full, self.shift)[rows]  # (N, D)
        if self.world > 1 and need_paths:
            # rows of other processes' paths get placeholder logits (zeros, the same on every process) and no LM
            # head: the counts they commit are the schedule's, and their tokens and trace are replaced by the
            # owners' at the gather
            mine = ~self.foreign_columns[None, :].expand_as(rows)[rows]
            logits = self.head(hidden[mine])
            out = logits.new_zeros(hidden.shape[0], logits.shape[-1])
            out[mine] = logits
            return out
        return self.head(hidden)  # (N, V)

    def committed(self, commit: torch.BoolTensor) -> None:
        """After a step: a commit in a path column makes the canvas cache's path keys and values stale; with the
        cache in the rows, a commit outside the columns the last partial pass recomputed (early-exit filler)
        makes the next path step refresh the rows."""
        in_paths = commit & self.path_columns[None, :]
        if bool(in_paths.any()):
            self.paths_stale = True
            if self.cache_mode is not None and self.recomputed is not None:
                if bool((in_paths & ~self.recomputed[None, :]).any()):
                    self.rows_dirty = True
