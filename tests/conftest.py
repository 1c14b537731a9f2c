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
