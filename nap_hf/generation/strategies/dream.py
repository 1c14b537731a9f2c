"""Dream's own schedule (`diffusion_generate`): `ts = linspace(1, eps, steps + 1)`; `origin` commits each
masked position with probability `1 - s/t` (a Bernoulli draw, random even at T = 0); `maskgit_plus`,
`topk_margin` and `entropy` commit the `int(n_masked * (1 - s/t))` best-scoring positions (all at the
last step). Scores come from the tempered, top-k/top-p filtered distribution, as in Dream.

Departure (decided here): n_masked is each row's own count; Dream uses the batch average. The two agree unless
rows have masks inside their prompts, and per row a batch decodes exactly as its prompts one at a time."""

from __future__ import annotations

import torch

from .base import DecodeState, StepPlan, Strategy, _names, register_strategy, topk_mask

__all__ = ["DreamStrategy", "DREAM_ALGS"]

DREAM_ALGS = {
    "origin": None,
    "maskgit_plus": "confidence",
    "topk_margin": "margin",
    "entropy": "dream_entropy",
}


@register_strategy
class DreamStrategy(Strategy):
    """Dream's own schedule (`alg=`, `alg_temp=`, `eps=`), on the plain canvas, without blocks."""

    name = "dream"
    canvas = "plain"
    tempered_scores = True

    def __init__(self, config):
        super().__init__(config)
        self.score_kind = DREAM_ALGS[config.alg]

    @classmethod
    def is_stochastic(cls, config) -> bool:
        # `origin` draws which positions to commit, even at T = 0; `alg_temp` samples the positions
        return super().is_stochastic(config) or config.alg == "origin" or bool(config.alg_temp)

    def check_config(self) -> None:
        if self.config.block_length is not None:
            raise ValueError(
                "block_length is not part of Dream's schedule: drop it, or use a block-wise strategy "
                f"({_names(lambda c: c.uses_blocks and c.canvas != 'nap')})."
            )
        super().check_config()
        if self.config.alg not in DREAM_ALGS:
            raise ValueError(
                f"alg={self.config.alg!r} is unknown; Dream's algorithms are {sorted(DREAM_ALGS)}."
            )

    def begin(self, state: DecodeState) -> None:
        # float32, as Dream computes its timesteps in the default dtype
        self.ts = torch.linspace(1, self.config.eps, self.config.steps + 1, dtype=torch.float32)
        self.i = 0

    def plan(self, state: DecodeState) -> StepPlan | None:
        steps = self.config.steps
        while self.i < steps:
            i = self.i
            self.i += 1
            t, s = self.ts[i], self.ts[i + 1]
            masked = state.masked
            if self.config.alg == "origin":
                p = 1 - s / t if i < steps - 1 else torch.tensor(1.0)
                # one draw per masked position, row-major, as Dream draws over `x[mask_index]`
                u = torch.rand(int(masked.sum()), device=masked.device, generator=state.generator)
                commit = torch.zeros_like(masked)
                commit[masked] = u < p.to(u.device)
                if bool(commit.any()):
                    return StepPlan(rows=commit, commit=commit)
                continue
            n = masked.sum(-1).to(torch.float32)
            if i < steps - 1:
                k = (n * (1 - s / t)).long()  # int() truncation, per row
            else:
                k = n.long()
            if bool((k > 0).any()):
                return StepPlan(rows=masked & (k > 0)[:, None], k=k.to(masked.device))
        return None

    def select(self, state: DecodeState, plan: StepPlan, scores: torch.Tensor) -> torch.BoolTensor:
        alg_temp = self.config.alg_temp
        if not alg_temp:
            return topk_mask(scores, plan.k)
        probs = torch.softmax(scores / alg_temp, dim=-1)
        out = torch.zeros_like(plan.rows)
        for b in range(scores.shape[0]):  # multinomial without replacement, k differs per row
            kb = int(plan.k[b])
            if kb > 0:
                out[b, torch.multinomial(probs[b], kb, generator=state.generator)] = True
        return out
