"""`edgetqs evaluate MODEL`: every chosen method's plans at the chosen budgets,
exported and verified, rolled out in LiteRT, compared at matched bytes.

    from edgetqs.evaluation import evaluate, EvaluationSettings
    result = evaluate("zoo:mlp-lorenz96", EvaluationSettings(budgets_bits=[3, 4, 5, 6]), out_dir="eval/")
    result.rows, result.win_rates, result.paths  # JSON, CSV, PNG and a self-contained HTML report

Methods (:data:`methods.METHODS`) feed the same planner with their own
sensitivity, except the fixed-size heuristics and the rollout-verified search
(``edgetqs.planner.search``), which starts from the TQS knapsack's front and
keeps the plan whose whole rollout measured best.
"""

from edgetqs.evaluation.run import EvaluationResult, EvaluationSettings, evaluate

__all__ = ["evaluate", "EvaluationSettings", "EvaluationResult"]
