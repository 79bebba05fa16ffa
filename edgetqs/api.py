"""The public Python API: load a model, score it, plan it, convert it, flash and validate it.

Everything the ``edgetqs`` command does, for notebooks and scripts (the CLI is
a thin caller of these functions)::

    import edgetqs
    model = edgetqs.load("zoo:mlp-sunspots")                   # a path (.keras, SavedModel, .onnx, .tflite) or zoo:NAME
    scores = model.score(method="tqs-quant", horizon=8, windows=4)   # edgetqs.methods() lists the methods
    plan = model.plan(scores, budget="12KiB")                  # or target="rpi4" (targets/*.toml)
    result = model.convert(plan, "mlp-sunspots.bundle")        # verified quantized .tflite + deployment bundle

and on boards (``edgetqs.board(target=..., host=...)`` describes one)::

    edgetqs.flash("mlp-sunspots.bundle", [board])               # -> one outcome per board
    edgetqs.validate("mlp-sunspots.bundle", [board], "validation/")

Results are the library's own typed objects: ``ScoreFile`` (``.save(path)``),
``Plan`` (``.save(path)``), ``ConversionResult``, fleet outcomes. Expected
failures raise ``EdgeTQSError`` with ``.problem`` and ``.fix``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from edgetqs.converter import ConversionResult
from edgetqs.converter import convert as convert_model
from edgetqs.engine.backends import backend_names
from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import ModelCard, RolloutSpec
from edgetqs.model.intake import CanonicalModel
from edgetqs.model.tflite_graph import TFLiteGraph
from edgetqs.targets import load_target
from edgetqs.planner.plan import KeepFloat, Problem, make_plan, parse_size
from edgetqs.planner.planfile import Plan
from edgetqs.remote.connection import BoardConnection, resolve_board
from edgetqs.remote.flash import DEFAULT_KEEP, slot_files
from edgetqs.remote.flash import flash as flash_board
from edgetqs.remote.fleet import run_fleet
from edgetqs.remote.provision import require_runtime
from edgetqs.remote.report import write_report
from edgetqs.remote.validate import validate as validate_board
from edgetqs.sensitivity import DEFAULT_METHOD, get_method, method_names
from edgetqs.tqs.score import ScoreSettings
from edgetqs.tqs.scorefile import ScoreFile
from edgetqs import zoo
from edgetqs.zoo.resolve import load_model

__all__ = ["Model", "load", "score", "plan", "plan_with_options", "convert", "board", "flash", "validate", "methods", "backends",
           "ScoreFile", "Plan", "ConversionResult", "EdgeTQSError"]


def methods() -> list[str]:
    """The sensitivity methods ``score`` takes (edgetqs/sensitivity.py), the default first."""
    return method_names()


def backends() -> list[str]:
    """The rollout backends ``score(engine=...)`` takes (edgetqs/engine/backends.py), the default first."""
    return backend_names()


@dataclass(frozen=True)
class Model:
    """A canonical float model (one .tflite + its card) and the pipeline's steps on it."""

    canonical: CanonicalModel

    @property
    def graph(self) -> TFLiteGraph:
        return self.canonical.graph

    @property
    def card(self) -> ModelCard:
        return self.canonical.card

    @property
    def name(self) -> str:
        return self.card.name

    def score(self, method: str = DEFAULT_METHOD, *, progress: bool = False, notes: list[str] | None = None,
              **settings) -> ScoreFile:
        """Each unit's sensitivity by ``method``; ``settings`` are ScoreSettings fields (probe, granularity,
        block_regex, horizon, windows, seed, probe_bits, engine, dead_floor, data)."""
        return score(self, method, progress=progress, notes=notes, **settings)

    def plan(self, scores: ScoreFile | str | os.PathLike, **options) -> Plan:
        """One format per unit within a budget; see :func:`plan` for the options."""
        return plan(self, scores, **options)

    def convert(self, plan: Plan | dict | str | os.PathLike, out: str | os.PathLike, **options) -> ConversionResult:
        """The plan's quantized, verified model and its bundle at ``out``; see :func:`convert`."""
        return convert(self, plan, out, **options)


def load(model: str | os.PathLike | CanonicalModel | Model, rollout: RolloutSpec | None = None) -> Model:
    """A model from a path (.keras, SavedModel directory, .onnx, float .tflite) or ``zoo:NAME``.

    ``rollout``: the window/features/patch when they cannot be inferred from the model."""
    if isinstance(model, Model):
        return model
    return Model(load_model(model, rollout))


def score(model, method: str = DEFAULT_METHOD, *, progress: bool = False, notes: list[str] | None = None,
          **settings) -> ScoreFile:
    """Score ``model`` (anything :func:`load` takes) with sensitivity ``method`` (one of :func:`methods`)."""
    model = load(model)
    chosen = get_method(method)
    try:
        score_settings = ScoreSettings(**settings).validate()
    except TypeError as exc:
        raise EdgeTQSError(f"unknown score setting ({exc})",
                           "use ScoreSettings fields: probe, granularity, block_regex, horizon, windows, seed, "
                           "probe_bits, engine, dead_floor, data") from exc
    return chosen.score(model.graph, model.card, score_settings, progress=progress, notes=notes,
                        **_method_inputs(chosen.name, model))


def _method_inputs(method: str, model: Model) -> dict:
    """What a method needs beyond the canonical model: the Hessian baseline's Keras source and
    training pairs, which only Keras-trained zoo models keep."""
    if method != "hessian":
        return {}
    inputs, reason = zoo.keras_training_inputs(model.card)
    if reason:
        raise EdgeTQSError(f"the hessian method cannot score {model.name}: {reason}",
                           "use a Keras-trained zoo:NAME model, or another --method")
    return inputs


def plan(model, scores: ScoreFile | str | os.PathLike, *, target: str | None = None, budget: int | str | None = None,
         allocator: str = "mckp", mode: str = "dynamic", bottom: str | None = None,
         keep_float: KeepFloat | None = None, runtime: str | None = None, calibration: str | None = None,
         verify: bool | None = None, search_evaluations: int | None = None,
         search_seconds: float | None = None) -> Plan:
    """One weight format per unit that fits ``target``'s memory (targets/*.toml) or ``budget``
    (bytes, or a size such as "384KiB"), minimising the scores' predicted error. ``allocator``: mckp
    (exact) or greedy; ``mode``: dynamic, weight_only or static; ``bottom``: the lowest format allowed;
    ``keep_float``: units kept in fp32; ``runtime``: whose conformance results filter the formats;
    ``calibration``: the series static mode is priced with (the one convert will calibrate on) and the
    verified search's windows come from; ``verify``: run the rollout-verified search (None: where it pays,
    :func:`edgetqs.planner.search.search_by_default`), bounded by ``search_evaluations`` / ``search_seconds``."""
    model = load(model)
    chosen, problem = plan_with_options(model, scores, target=target, budget=budget, allocator=allocator, mode=mode,
                                        bottom=bottom, keep_float=keep_float, runtime=runtime, calibration=calibration)
    return verify_plan(model, scores, problem, chosen, verify=verify, evaluations=search_evaluations,
                       seconds=search_seconds, data=calibration)[0]


def verify_plan(model, scores: ScoreFile | str | os.PathLike, problem: Problem, chosen: Plan, *,
                verify: bool | None = None, evaluations: int | None = None, seconds: float | None = None,
                data: str | None = None):
    """(plan, search result or None, why): the rollout-verified search from ``chosen`` (the knapsack's plan)
    within its budget, from the scores' own contexts (or ``data``), when ``verify`` says so — None: where
    it pays (:func:`edgetqs.planner.search.search_by_default`)."""
    from edgetqs.planner.search import SearchSettings, search_by_default, verified_search
    from edgetqs.tqs.contexts import data_file_named
    from edgetqs.tqs.scorefile import load_scores

    asked = verify is not None
    if not asked:
        verify, why = search_by_default(problem)
    else:
        why = "asked for" if verify else "turned off"
    if not verify:
        return chosen, None, why
    scored = (scores if isinstance(scores, ScoreFile) else load_scores(scores)).settings
    data = data or data_file_named(str(scored.get("contexts", "")))  # a score file keeps the series' name only
    if data and not Path(data).exists():
        if not asked:
            return chosen, None, f"the scores come from {data}, which is not here: pass it with --data to check plans"
        raise EdgeTQSError(f"the scores' windows came from {data}, which is not in {Path.cwd()}",
                           "pass the same series with --data: the search rolls plans out from the scores' windows")
    model = load(model)
    settings = SearchSettings(evaluations=evaluations, seconds=seconds, horizon=int(scored.get("horizon") or 32),
                              windows=int(scored.get("windows") or 16), seed=int(scored.get("seed") or 0), data=data)
    result = verified_search(problem, model.canonical.card, chosen.budget_bytes, settings,
                             tflite_path=model.canonical.tflite_path)
    return result.plan, result, why


def plan_with_options(model, scores: ScoreFile | str | os.PathLike, *, target: str | None = None,
                      budget: int | str | None = None, allocator: str = "mckp", mode: str = "dynamic",
                      bottom: str | None = None, keep_float: KeepFloat | None = None,
                      runtime: str | None = None, calibration: str | None = None) -> tuple[Plan, Problem]:
    """:func:`plan`, and the per-unit options it chose from (what Pareto fronts and unit tables read)."""
    model = load(model)
    budget_bytes = parse_size(budget) if isinstance(budget, str) else budget
    return make_plan(model.graph, scores, load_target(target) if target else None, budget_bytes,
                     allocator, mode, bottom, keep_float, runtime=runtime, model=model.canonical,
                     calibration=calibration)


def convert(model, plan: Plan | dict | str | os.PathLike, out: str | os.PathLike, **options) -> ConversionResult:
    """Quantize ``model`` as ``plan`` says, verify the export, and write ``out``: a bundle directory,
    a bundle ``.tar.gz``, or a ``.tflite`` for the model alone. ``options``: mode, calibration, target,
    horizon, windows, seed, activation_ranges, overwrite, on_step (edgetqs.converter.convert)."""
    return convert_model(load(model).canonical, plan, out, **options)


def board(target: str | None = None, host: str | None = None, **connection) -> BoardConnection:
    """A board to flash or validate: a profile (targets/NAME.toml) and/or ``user@addr[:port]``.
    ``connection``: key, known_hosts, root, jump, firmware, connect_timeout, retries."""
    timing = {k: connection.pop(k) for k in ("connect_timeout", "retries") if k in connection}
    return replace(resolve_board(target=target, host=host, **connection), **timing)


def flash(bundle: str | os.PathLike, boards: Sequence, *, keep: int = DEFAULT_KEEP,
          on_progress: Callable[[str, int, int | None], None] | None = None,
          on_stage: Callable[[str, str], None] | None = None) -> list:
    """Upload ``bundle`` into a new slot on every board (concurrently), verify it, and switch to it.
    ``on_progress(board, sent, total)``, ``on_stage(board, stage)``. One outcome per board (``.ok``)."""
    with tempfile.TemporaryDirectory(prefix="edgetqs-flash-") as staging:
        content = slot_files(bundle, Path(staging))  # loaded and hashed once for every board

        def action(t):
            name = t.board.name
            return flash_board(t, content, keep=keep,
                               on_progress=(lambda sent, total: on_progress(name, sent, total)) if on_progress else None,
                               on_stage=(lambda stage: on_stage(name, stage)) if on_stage else None)

        return run_fleet(list(boards), action, lambda result: (True, result.summary()))


def validate(bundle: str | os.PathLike, boards: Sequence, out: str | os.PathLike, *, contexts: int | None = None,
             horizon: int | None = None, threads: int | None = None, python: str | None = None,
             timeout: float = 1800) -> list:
    """Run ``bundle`` on every board against its host references; a report per board under
    ``out/BOARD/report.html``. One outcome per board; ``outcome.result`` is the verdict."""
    out = Path(out)

    def action(t):
        interpreter = python or (require_runtime(t, t.board.firmware) if t.board.firmware else None)
        board_dir = out / t.board.name
        verdict = validate_board(t, bundle, board_dir, contexts=contexts, horizon=horizon, threads=threads,
                                 python=interpreter, timeout=timeout)
        write_report(verdict, board_dir / "report.html")
        return verdict

    def describe(verdict):
        if verdict.passed:
            return True, f"PASS — report: {out / verdict.board_name / 'report.html'}"
        return False, "FAIL — " + "; ".join(check.detail for check in verdict.failures)

    return run_fleet(list(boards), action, describe)
