"""Metrics for diffusion-LM decoding (AR-ness of the decoding order)."""

from .arness import ARnessResult, commit_order, global_arness, local_arness

__all__ = ["ARnessResult", "commit_order", "global_arness", "local_arness"]
