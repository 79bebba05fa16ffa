"""TQS: per-unit quantization sensitivity from rollouts (METHOD.md §2).

``score_model(graph, card, ScoreSettings(...)) -> ScoreFile``; the reference
quantizer and ``residual_norm`` (used by the planner) live in ``quantizers``.
"""

from edgetqs.tqs.quantizers import channel_axis, quantize, residual, residual_norm
from edgetqs.tqs.score import ScoreSettings, score_model
from edgetqs.tqs.scorefile import ScoreFile, UnitScore, load_scores

__all__ = ["ScoreSettings", "ScoreFile", "UnitScore", "channel_axis", "load_scores", "quantize", "residual",
           "residual_norm", "score_model"]
