"""Evaluation (issues #7, #13): every method's plans on the zoo, at matched size, on the
real exported models — a thin caller of ``edgetqs.evaluation.evaluate`` per model.

    .venv/bin/python benchmarks/evaluate.py              # the core zoo (docs/EVALUATION.md)
    .venv/bin/python benchmarks/evaluate.py --tier deep  # the deep models (>= 24 units; trains them if needed)
    .venv/bin/python benchmarks/evaluate.py --quick      # 2 small models, 2 budgets, fewer methods (CI smoke)
    .venv/bin/python benchmarks/evaluate.py --models mlp-lorenz96,gru-ks --budgets 3,4,5,6
    .venv/bin/python benchmarks/evaluate.py --quick --mode dynamic,static  # int8 activations too, where allowed

Results: ``benchmarks/results/<out>.{json,csv,png,html}`` (default evaluation[_quick|_deep]).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tqs_common import RESULTS, machine  # noqa: E402

QUICK = {"models": ["mlp-sunspots", "mlp-lorenz96"], "budgets": [4.0, 6.0], "seeds": 2,
         "methods": ["tqs-quant", "tqs-gauss", "tqs-quant-greedy", "tqs-saturation", "verified-search",
                     "weight-error", "single-step", "random", "uniform-at-budget", "uniform-int8", "uniform-int4",
                     "first-last-8"],
         "ablations": False, "search_evaluations": 12}


def main(argv: list[str] | None = None) -> int:
    from edgetqs import zoo
    from edgetqs.evaluation import EvaluationSettings, evaluate, methods, report
    from edgetqs.evaluation.run import SCORE_CONTEXTS, NoModeAvailable
    from edgetqs.quant.modes import MODE_NAMES, Mode

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 small models, 2 budgets, fewer methods (CI smoke)")
    parser.add_argument("--models", help="comma-separated zoo names (default: the tier's models)")
    parser.add_argument("--tier", default="core", choices=["core", "deep", "all"])
    parser.add_argument("--budgets", default="3,4,5,6", help="average weight bits, comma-separated")
    parser.add_argument("--methods", default=",".join(methods.DEFAULT_METHODS))
    parser.add_argument("--search-evaluations", type=int, default=None, help="plan rollouts per search (budget)")
    parser.add_argument("--mode", default=str(Mode.DYNAMIC),
                        help=f"activation modes, comma-separated, of: {', '.join(MODE_NAMES)} (default dynamic)")
    parser.add_argument("--score-contexts", default=SCORE_CONTEXTS[0], choices=list(SCORE_CONTEXTS),
                        help="what scoring and the search roll out from: a data-free free run or the zoo's training series")
    parser.add_argument("--no-ablations", action="store_true")
    parser.add_argument("--out", default=None, help="results name under benchmarks/results")
    args = parser.parse_args(argv)
    config = {"models": [e.name for e in zoo.list_models(args.tier)], "budgets": [float(b) for b in args.budgets.split(",")],
              "seeds": 5, "methods": args.methods.split(","), "ablations": not args.no_ablations,
              "search_evaluations": args.search_evaluations}
    if args.quick:
        config.update(QUICK)
    if args.models:
        config["models"] = [m.removeprefix("zoo:") for m in args.models.split(",")]
    name = args.out or ("evaluation_quick" if args.quick else "evaluation" if args.tier == "core" else f"evaluation_{args.tier}")
    settings = EvaluationSettings(methods=config["methods"], budgets_bits=config["budgets"],
                                  random_seeds=config["seeds"], ablations=config["ablations"],
                                  search_evaluations=config["search_evaluations"], score_contexts=args.score_contexts,
                                  modes=[m.strip() for m in args.mode.split(",") if m.strip()]).check()
    config["modes"] = list(settings.modes)
    start, rows, notes, timings, searches, plans, skipped = time.perf_counter(), [], [], {}, [], {}, []
    for model in config["models"]:
        t0 = time.perf_counter()
        try:
            result = evaluate(f"zoo:{model}", settings,
                              progress=lambda text: print(time.strftime("%H:%M:%S"), text, flush=True))
        except NoModeAvailable as exc:  # every asked mode refused for this model: recorded, the others go on
            skipped += exc.skipped
            print(f"{model}: skipped: {exc.problem}", flush=True)
            continue
        rows += result.rows
        notes += result.notes
        searches += result.searches
        skipped += result.skipped
        plans[result.model] = result.plans
        timings[model] = {**result.timings, "total_seconds": round(time.perf_counter() - t0, 1)}
        print(f"{model}: {len(result.rows)} plans in {timings[model]['total_seconds']} s", flush=True)
    payload = report.payload(rows, notes, {**config, "command": "benchmarks/evaluate.py " + " ".join(
        argv if argv is not None else sys.argv[1:]), "settings": settings.__dict__}, timings, searches, plans, skipped)
    payload.update(machine=machine(), wall_seconds=round(time.perf_counter() - start, 1))
    paths = report.write_all(RESULTS, name, payload)
    report.print_summary(payload)
    print("wrote:", ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
