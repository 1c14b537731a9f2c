"""Shared fixtures: tiny random checkpoints in the exact hub format, loaded through `from_pretrained`."""

from __future__ import annotations

import pytest
import torch

import nap_hf  # noqa: F401  (registers the Auto classes)
from nap_hf.testing import write_tiny_dream, write_tiny_llada

# Tiny models: one thread is faster than two, and immune to OpenMP stalls when the machine is busy.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def llada_dir(tmp_path_factory):
    return write_tiny_llada(tmp_path_factory.mktemp("tiny-llada"))


@pytest.fixture(scope="session")
def dream_dir(tmp_path_factory):
    return write_tiny_dream(tmp_path_factory.mktemp("tiny-dream"))


@pytest.fixture(scope="session")
def llada64(llada_dir):
    """Tiny LLaDA in float64 (exactness tests: near-ties cannot flip)."""
    from nap_hf import LLaDAModelLM

    return LLaDAModelLM.from_pretrained(llada_dir, dtype=torch.float64).eval()


@pytest.fixture(scope="session")
def dream64(dream_dir):
    from nap_hf import DreamModel

    return DreamModel.from_pretrained(dream_dir, dtype=torch.float64).eval()


@pytest.fixture(scope="session", params=["llada", "dream"])
def model64(request, llada64, dream64):
    return llada64 if request.param == "llada" else dream64


def random_prompt(model, length: int, seed: int = 0, batch: int = 1) -> torch.LongTensor:
    """Random non-special token ids (below the mask id and every special token)."""
    g = torch.Generator().manual_seed(seed)
    high = min(model.config.mask_token_id, model.config.eos_token_id, 256)
    return torch.randint(3, high, (batch, length), generator=g)


class TrunkCalls:
    """Records the trunk's forwards (a forward pre-hook): `calls` holds (batch, input length, first cache column
    or None for a forward over the whole input) per call; `lengths` the input lengths (a partial forward is
    shorter than the canvas)."""

    def __init__(self, model):
        self.calls: list[tuple[int, int, int | None]] = []
        self.handle = model.get_decoder().register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        ids, pos = kwargs["input_ids"], kwargs.get("cache_position")
        self.calls.append((ids.shape[0], ids.shape[1], None if pos is None else int(pos[0])))

    @property
    def lengths(self) -> list[int]:
        return [length for _, length, _ in self.calls]

    def close(self):
        self.handle.remove()


def padded_batch(model, lengths=(3, 6)):
    """One random prompt per length, left-padded into a batch: (prompts, ids, attention mask)."""
    pad = model.config.pad_token_id
    prompts = [random_prompt(model, n, seed=n) for n in lengths]
    P = max(lengths)
    ids = torch.stack([torch.cat([torch.full((P - p.shape[1],), pad), p[0]]) for p in prompts])
    mask = torch.stack(
        [torch.cat([torch.zeros(P - p.shape[1]), torch.ones(p.shape[1])]).long() for p in prompts]
    )
    return prompts, ids, mask
