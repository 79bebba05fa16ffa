"""TQS: per-unit quantization sensitivity from rollouts (METHOD.md §2).

``score_model(graph, card, ScoreSettings(...)) -> ScoreFile``; the reference
quantizer it probes with lives in ``edgetqs.quant.quantizer``.
"""

from edgetqs.tqs.score import ScoreSettings, score_model
from edgetqs.tqs.scorefile import ScoreFile, UnitScore, load_scores

__all__ = ["ScoreSettings", "ScoreFile", "UnitScore", "load_scores", "score_model"]
