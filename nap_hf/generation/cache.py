"""Key/value caching for the diffusion loop (Fast-dLLM's prefix and dual cache, docs/caching.md).

`DiffusionCache` is a transformers `Cache`: one tensor of keys and one of values per layer over the WHOLE
canvas (B, H_kv, L, hd), written in place. A forward over every position (a refresh) replaces them; a
partial forward over some canvas columns (`cache_position`) writes the fresh keys and values of those
columns only, and its queries attend to all L cached positions. LLaDA and Dream take it as `cache=` (or
`past_key_values=`) with `cache_position=`.

`CachedForward` is the loop's side: it decides, each step, between a refresh (a full forward, which is
that step's decoding pass) and a partial forward over the strategy's active window (dual) or from the
window's first column to the end of the canvas (prefix)."""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

from ..alignment import align_predictions

__all__ = [
    "CACHE_IMPLEMENTATIONS",
    "CachedForward",
    "DiffusionCache",
    "DiffusionCacheLayer",
    "check_cache_support",
    "needs_refresh",
]

CACHE_IMPLEMENTATIONS = ("prefix", "dual")


class DiffusionCacheLayer(CacheLayerMixin):
    """One layer's keys and values over the whole canvas, (B, H_kv, L, hd), overwritten in place."""

    is_sliding = False

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.keys, self.values = key_states, value_states
        self.device = key_states.device
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, columns: torch.LongTensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the fresh states (all columns when `columns` is None, else the (Q,) canvas columns they belong
        to) and return the keys and values of the whole canvas."""
        if columns is None:  # a refresh: the new states are the cache
            self.lazy_initialization(key_states, value_states)
            return self.keys, self.values
        if not self.is_initialized:
            raise RuntimeError(
                "DiffusionCache is empty: run one forward over the whole canvas (no `cache_position`) first."
            )
        self.keys.index_copy_(2, columns, key_states)
        self.values.index_copy_(2, columns, value_states)
        return self.keys, self.values

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length(), 0

    def get_seq_length(self) -> int:
        return self.keys.shape[-2] if self.is_initialized else 0

    def get_max_length(self) -> int:
        return self.get_seq_length()


class DiffusionCache(Cache):
    """Keys and values of every canvas position, per layer. Set `columns` (the canvas columns of the next
    forward's tokens, (Q,) LongTensor; None = every column) before a forward; the models do this from their
    `cache_position` argument. `partial_forwards` / `full_forwards` count the forwards it served."""

    def __init__(self):
        super().__init__(layer_class_to_replicate=DiffusionCacheLayer)
        self.columns: torch.LongTensor | None = None
        self.full_forwards = 0
        self.partial_forwards = 0

    def begin_forward(self, cache_position: torch.LongTensor | None, query_length: int) -> None:
        """Called by a model's forward: which canvas columns its `query_length` tokens are."""
        if cache_position is not None and cache_position.numel() != query_length:
            raise ValueError(
                f"cache_position has {cache_position.numel()} entries for {query_length} input positions; "
                "pass one canvas column per input token."
            )
        self.columns = cache_position
        if cache_position is None:
            self.full_forwards += 1
        else:
            self.partial_forwards += 1

    def update(self, key_states, value_states, layer_idx: int, *args, **kwargs):
        while len(self.layers) <= layer_idx:
            self.layers.append(DiffusionCacheLayer())
        return self.layers[layer_idx].update(key_states, value_states, self.columns)


def check_cache_support(model, cache_implementation: str | None) -> None:
    """Raise a clear error for an unknown cache name or a model without partial-forward support."""
    if cache_implementation is None:
        return
    if cache_implementation not in CACHE_IMPLEMENTATIONS:
        raise ValueError(
            f"cache_implementation={cache_implementation!r} is unknown; use None (no cache), 'prefix' or "
            "'dual' (docs/caching.md)."
        )
    if not getattr(model, "_supports_diffusion_cache", False):
        raise ValueError(
            f"{type(model).__name__} does not support cache_implementation={cache_implementation!r}: its trunk "
            "takes no `DiffusionCache` / `cache_position` (a partial forward). Use cache_implementation=None, or "
            "a nap_hf model (LLaDAModelLM, DreamModel)."
        )


def window_columns(window: torch.BoolTensor, mode: str, shift: bool) -> torch.LongTensor:
    """The canvas columns a partial forward recomputes for the active `window` (L,): the window itself
    (dual) or everything from its first column on (prefix); with shifted logits (Dream) also the column
    before each window column, whose output is that column's prediction."""
    need = window.clone()
    if shift:
        need[:-1] |= window[1:]
    cols = need.nonzero()[:, 0]
    if mode == "prefix":
        cols = torch.arange(int(cols[0]), window.shape[0], device=window.device)
    return cols


def needs_refresh(
    refresh, window: torch.BoolTensor, last_window: torch.BoolTensor | None, since_refresh: int
) -> bool:
    """The refresh rule shared by every cached pass: refresh when nothing was computed yet, every N steps (an int
    `refresh`), once no column of the last refresh's window is active ("all"), or whenever the window changed
    ("any")."""
    if last_window is None:
        return True
    if isinstance(refresh, int):
        return since_refresh >= refresh
    if refresh == "all":
        return not bool((window & last_window).any())
    return not torch.equal(window, last_window)


class CachedForward:
    """The KV cache of one `generate` call and its refresh rule.

    Each step asks for aligned logits of `rows` given the strategy's active `window`. The step refreshes (one
    forward over the whole canvas, which writes every key and value) on the first step, when the window
    changed under `refresh` ("any": any column of it; "all": no column of the window at the last refresh
    is left; an int N: every N steps), or when a commit landed outside the recomputed columns (early-exit
    filler); otherwise it runs the trunk on `window_columns` only."""

    def __init__(self, model, mode: str, refresh, attention_mask, position_ids, shift: bool):
        self.decoder = model.get_decoder()
        self.head = model.get_output_embeddings()
        self.mode, self.refresh, self.shift = mode, refresh, shift
        self.attention_mask, self.position_ids = attention_mask, position_ids
        self.cache = DiffusionCache()
        self.last_window: torch.BoolTensor | None = None
        self.since_refresh = 0
        self.dirty = True  # empty cache

    def _needs_refresh(self, window: torch.BoolTensor) -> bool:
        return self.dirty or needs_refresh(self.refresh, window, self.last_window, self.since_refresh)

    def __call__(self, x: torch.LongTensor, rows: torch.BoolTensor, window: torch.BoolTensor) -> torch.Tensor:
        """Aligned logits (N, V) of the N positions of `rows` (row-major) of the (B, L) canvas `x`."""
        if bool((rows & ~window).any()):
            raise RuntimeError("a strategy asked for rows outside its active window (StepPlan.window).")
        self.window = window
        if self._needs_refresh(window):
            hidden = self.decoder(
                input_ids=x,
                attention_mask=self.attention_mask,
                position_ids=self.position_ids,
                cache=self.cache,
            ).last_hidden_state  # (B, L, D)
            self.last_window, self.since_refresh, self.dirty = window, 1, False
            return self.head(align_predictions(hidden, self.shift)[rows])
        cols = window_columns(window, self.mode, self.shift)
        hidden = self.decoder(
            input_ids=x[:, cols],
            attention_mask=self.attention_mask,
            position_ids=self.position_ids[:, cols],
            cache=self.cache,
            cache_position=cols,
        ).last_hidden_state  # (B, Q, D)
        self.since_refresh += 1
        b, i = rows.nonzero(as_tuple=True)
        src = (i - 1).clamp(min=0) if self.shift else i  # the output that predicts position i
        index = torch.full_like(window, -1, dtype=torch.long)
        index[cols] = torch.arange(cols.numel(), device=cols.device)
        return self.head(hidden[b, index[src]])

    def committed(self, commit: torch.BoolTensor) -> None:
        """After a step: a commit outside the columns the next partial forward recomputes (filler written
        by an early exit) makes the cached keys and values of that column stale, so the next step refreshes."""
        if bool((commit & ~self.window[None, :]).any()):
            recomputed = torch.zeros_like(self.window)
            recomputed[window_columns(self.window, self.mode, False)] = True
            if bool((commit & ~recomputed[None, :]).any()):
                self.dirty = True
