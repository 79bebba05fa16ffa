"""`edgetqs validate`: run the flashed model on the board, fetch, and judge on the host.

Three sets of trajectories from the same context windows are compared:

* **board**: the on-device runner (remote/runner.py) on the board's runtime;
* **host**: the same runner and the same .tflite on this machine's LiteRT;
* **float**: the bundle's float-model reference (``reference_float``).

Board vs host says whether the board's runtime *computes the same numbers*:
probe outputs and the first rollout step come from identical inputs, so any
difference beyond rounding is the runtime's, not the dynamics'. Board vs float
says whether the quantized model still *forecasts*: valid prediction time and
blow-ups, against the bundle's thresholds (or, when it sets none, against what
the same model achieves on the host).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgetqs.bundle import BUNDLE, Bundle, load_bundle
from edgetqs.errors import EdgeTQSError
from edgetqs.files import JsonKind, read_json, write_atomically
from edgetqs.metrics import RolloutMetrics, normalised_error, rollout_metrics
from edgetqs.remote import runner as runner_module
from edgetqs.remote.flash import RUNNER_FILE

RUNNER = Path(runner_module.__file__)  # the host runs this edgetqs's runner; a board, the one flashed with its model
# The runner runs on boards without edgetqs installed, so it writes results.json
# itself; this is the host's reader of that format.
RUN_RESULTS = JsonKind(runner_module.RESULTS_FORMAT, runner_module.RESULTS_VERSION, "runner results",
                       "reflash the bundle so the board gets this edgetqs's runner (edgetqs flash), then rerun validate")
RUNS_DIR = "runs"

# Defaults for thresholds a bundle does not set (manifest "thresholds").
DEFAULT_THRESHOLDS = {
    "vpt_threshold": 0.4,
    # Blow-ups allowed on the board beyond those the host run has too.
    "max_blow_up_fraction": 0.0,
}
# How far board and host may differ from identical inputs (probe outputs, first
# rollout step), relative to the outputs' RMS, when the bundle does not say
# (converter/deploy.py writes the same values into new bundles). With float
# activations only the summation order differs between CPUs (~1e-6). In dynamic
# mode activations are quantized at run time and kernels legitimately differ:
# LiteRT's reference kernels vs XNNPACK differ by ~0.9% on the test forecaster.
# A wrong kernel or weight is O(1).
AGREEMENT_TOLERANCE = {"weight_only": 1e-3, "dynamic": 0.03, "static": 0.05}


@dataclass
class ValidationCheck:
    """One verdict of a validation run (model identity, probes, first step, blow-up, quality)."""

    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass
class RunOutput:
    """What one runner run left behind: results.json and the trajectories."""

    results: dict
    trajectories: np.ndarray  # [K, T, F]
    probe_outputs: np.ndarray
    latency_seconds: np.ndarray

    @classmethod
    def load(cls, directory: str | Path) -> "RunOutput":
        directory = Path(directory)
        results = read_json(directory / runner_module.RESULTS_JSON, RUN_RESULTS)
        try:
            with np.load(directory / runner_module.TRAJECTORIES_NPZ, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except (OSError, ValueError) as exc:
            raise EdgeTQSError(f"cannot read the runner's trajectories in {directory}: {exc}",
                               "rerun validate; if it repeats, run the runner by hand on the board") from exc
        return cls(results, arrays["trajectories"], arrays["probe_outputs"], arrays["latency_seconds"])


@dataclass
class Validation:
    """The verdict on one board run, with everything the report plots."""

    board_name: str
    bundle_manifest: dict
    thresholds: dict
    board: RunOutput
    host: RunOutput
    vs_float: RolloutMetrics  # board vs the float reference
    host_vs_float: RolloutMetrics  # host run of the same .tflite vs the float reference
    vs_host: RolloutMetrics  # board vs host: does the runtime compute the same numbers?
    checks: list[ValidationCheck] = field(default_factory=list)
    vs_truth: RolloutMetrics | None = None
    # Largest |host run - bundle's reference_host|: 0 when this host reproduces the
    # converter's rollouts; information about the host, not a verdict on the board.
    host_vs_bundle_reference: float = 0.0

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failures(self) -> list[ValidationCheck]:
        return [check for check in self.checks if not check.passed]

    def message(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        lines = [f"{verdict}: {self.board_name}"]
        lines += [f"  [{'ok' if c.passed else 'FAIL'}] {c.name}: {c.detail}" for c in self.checks]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "board": self.board_name,
            "passed": self.passed,
            "checks": [check.to_dict() for check in self.checks],
            "thresholds": self.thresholds,
            "runtime": self.board.results.get("runtime"),
            "board_facts": self.board.results.get("board"),
            "latency_ms": self.board.results.get("latency_ms"),
            "host_latency_ms": self.host.results.get("latency_ms"),
            "peak_memory_kib": self.board.results.get("peak_memory_kib"),
            "thermal": self.board.results.get("thermal"),
            "vs_float": self.vs_float.summary(),
            "host_vs_float": self.host_vs_float.summary(),
            "vs_host": self.vs_host.summary(),
            "vs_truth": self.vs_truth.summary() if self.vs_truth else None,
            "host_vs_bundle_reference": self.host_vs_bundle_reference,
        }


# -- running the runner ---------------------------------------------------------

def runner_arguments(contexts: int | None, horizon: int | None, threads: int | None) -> list[str]:
    args = []
    for flag, value in (("--contexts", contexts), ("--horizon", horizon), ("--threads", threads)):
        if value is not None:
            args += [flag, str(value)]
    return args


def run_locally(bundle_dir: str | Path, out_dir: str | Path, *, python: str = sys.executable,
                contexts: int | None = None, horizon: int | None = None, threads: int | None = None,
                timeout: float = 600, on_event: Callable[[dict], None] | None = None) -> RunOutput:
    """Run the runner as a separate process on this machine (the host side of a validation)."""
    cmd = [python, str(RUNNER), "--bundle", str(bundle_dir), "--out", str(out_dir),
           *runner_arguments(contexts, horizon, threads)]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise EdgeTQSError(f"the runner ran longer than {timeout:g} s on this machine",
                           "use fewer contexts or a shorter horizon (--contexts, --horizon)") from None
    for line in stdout.splitlines():
        _forward(line, on_event)
    if process.returncode != 0:
        raise EdgeTQSError(f"the runner failed on this machine (exit {process.returncode}):\n{stderr.strip()[-2000:]}",
                           "check that this Python has numpy and ai-edge-litert")
    return RunOutput.load(out_dir)


def _forward(line: str, on_event: Callable[[dict], None] | None) -> None:
    if not on_event or not line.strip():
        return
    try:
        on_event(json.loads(line))
    except ValueError:
        on_event({"event": "output", "text": line})


def run_on_board(transport, out_dir: str | Path, *, python: str | None = None, contexts: int | None = None,
                 horizon: int | None = None, threads: int | None = None, timeout: float = 1800,
                 on_event: Callable[[dict], None] | None = None) -> RunOutput:
    """Run the runner flashed into the board's ``current`` slot and fetch its results into ``out_dir``.

    The slot's own runner (flash puts one into every slot, hash-checked with
    the model) is what runs, so a validation tests what was deployed. The run
    directory on the board is removed afterwards, whether the run succeeded,
    failed or outlived ``timeout`` (the transport stops it there).
    """
    board = transport.board
    python = python or _board_python(board)
    slot = current_slot_path(transport)
    runner = slot_runner(transport, slot)
    run_dir = f"{board.root}/{RUNS_DIR}/{time.strftime('%Y%m%d-%H%M%S')}-{int(time.time() * 1000) % 1000:03d}"
    transport.check(f"mkdir -p {shlex.quote(run_dir)}", what="making the run directory")
    try:
        cmd = " ".join(shlex.quote(part) for part in [
            python, runner, "--bundle", slot, "--out", f"{run_dir}/out",
            *runner_arguments(contexts, horizon, threads)])
        result = transport.run(cmd, timeout=timeout, on_line=lambda line: _forward(line, on_event), retry=False)
        if result.exit in KILLED_EXITS:
            raise runner_killed(board.name, result.stderr)
        if result.exit != 0:
            raise EdgeTQSError(
                f"the runner failed on {board.name} (exit {result.exit}):\n{result.stderr.strip()[-2000:]}",
                "check the board's runtime with `edgetqs provision`, then rerun")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in (runner_module.RESULTS_JSON, runner_module.TRAJECTORIES_NPZ):
            transport.get(f"{run_dir}/out/{name}", out_dir / name)
    finally:
        transport.run(f"rm -rf {shlex.quote(run_dir)}", timeout=60)
    return RunOutput.load(out_dir)


class BoardOutOfMemory(EdgeTQSError):
    pass


# A shell's exit for a child killed by SIGKILL (128 + 9), or a killed process's -9.
KILLED_EXITS = (137, -9)


def runner_killed(board_name: str, stderr: str) -> BoardOutOfMemory:
    """The runner died of SIGKILL before its timeout: on a board that is the
    kernel's out-of-memory killer (the emulated board's memory limit says so
    on stderr, a real board in dmesg)."""
    tail = stderr.strip()[-1000:]
    return BoardOutOfMemory(
        f"the runner on {board_name} was killed (SIGKILL) before its timeout: out of memory — the model and "
        "its runtime need more RAM than the board has" + (f":\n{tail}" if tail else ""),
        "plan for this board's memory (edgetqs plan MODEL --target BOARD) so the model fits, or free RAM on "
        "the board (`dmesg | grep -i 'out of memory'` there shows the kill)")


def slot_runner(transport, slot: str) -> str:
    """The runner flashed with the slot's model; an error telling to reflash when it has none."""
    runner = f"{slot}/{RUNNER_FILE}"
    if not transport.exists(runner):
        raise EdgeTQSError(f"{transport.board.name}'s current model ({slot}) has no {RUNNER_FILE}: "
                           "it was flashed by an edgetqs that did not put the runner into the slot",
                           "reflash the bundle with this edgetqs: edgetqs flash BUNDLE --target ...")
    return runner


def current_slot_path(transport) -> str:
    """The slot ``current`` points at now, resolved once: a flash during the run
    switches ``current`` but cannot mix two models' files under the runner."""
    current = require_current(transport)
    result = transport.check(f"cd {shlex.quote(current)} && pwd -P", what="resolving the current model")
    return result.stdout.strip()


def require_current(transport) -> str:
    """The board's ``current`` bundle directory; an error telling to flash when there is none."""
    current = f"{transport.board.root}/current"
    if not transport.exists(f"{current}/manifest.json"):
        raise EdgeTQSError(f"{transport.board.name} has no current model under {current}",
                           "flash a bundle first: edgetqs flash BUNDLE --target ...")
    return current


def _board_python(board) -> str:
    if board.firmware is None:
        return "python3"
    return board.firmware.setup.venv_python


# -- judging --------------------------------------------------------------------

def activation_mode(bundle: Bundle) -> str:
    """The plan's mode; "weight_only" for float models; else "dynamic".

    Without a plan saying so, a model with quantized weights is taken as dynamic:
    the looser tolerance then still catches O(1) errors without false alarms.
    """
    mode = (bundle.plan or {}).get("mode") or bundle.runtime.get("mode")
    if mode in AGREEMENT_TOLERANCE:
        return mode
    formats = set((bundle.manifest.get("formats") or {}).values())
    return "weight_only" if formats and formats <= {"fp32", "fp16"} else "dynamic"


def effective_thresholds(bundle: Bundle) -> dict:
    tolerance = AGREEMENT_TOLERANCE[activation_mode(bundle)]
    thresholds = dict(DEFAULT_THRESHOLDS, probe_tolerance=tolerance, host_step_tolerance=tolerance)
    thresholds.update({k: v for k, v in bundle.thresholds.items() if v is not None})
    return thresholds


def judge(bundle: Bundle, board: RunOutput, host: RunOutput, board_name: str = "board") -> Validation:
    """Compare the board's run with the host's and the float reference; decide pass/fail."""
    thresholds = effective_thresholds(bundle)
    k, t = board.trajectories.shape[:2]
    if host.trajectories.shape != board.trajectories.shape:
        raise EdgeTQSError(f"board trajectories {board.trajectories.shape} and host {host.trajectories.shape} differ",
                           "run both with the same --contexts and --horizon")
    reference_float = bundle.contexts["reference_float"][:k, :t]
    vpt = float(thresholds["vpt_threshold"])
    validation = Validation(
        board_name=board_name, bundle_manifest=bundle.manifest, thresholds=thresholds, board=board, host=host,
        vs_float=rollout_metrics(board.trajectories, reference_float, threshold=vpt),
        host_vs_float=rollout_metrics(host.trajectories, reference_float, threshold=vpt),
        vs_host=rollout_metrics(board.trajectories, host.trajectories, threshold=vpt),
    )
    if "truth" in bundle.contexts:
        validation.vs_truth = rollout_metrics(board.trajectories, bundle.contexts["truth"][:k, :t], threshold=vpt)
    with np.errstate(invalid="ignore"):
        validation.host_vs_bundle_reference = float(np.nanmax(np.abs(
            host.trajectories.astype(np.float64) - bundle.contexts["reference_host"][:k, :t])))
    validation.checks = [
        _check_model_identity(bundle, board),
        _check_probes(bundle, board, thresholds),
        _check_first_step(board, host, thresholds),
        _check_blow_up(validation, thresholds),
        _check_quality(validation, thresholds),
    ]
    return validation


def _runtime_name(run: RunOutput) -> str:
    runtime = run.results.get("runtime", {})
    xnnpack = {True: "XNNPACK on", False: "XNNPACK off"}.get(runtime.get("xnnpack"), "XNNPACK unknown")
    machine = run.results.get("board", {}).get("machine", "?")
    return f"{runtime.get('name')} {runtime.get('version')} ({xnnpack}, {machine})"


def _check_model_identity(bundle: Bundle, board: RunOutput) -> ValidationCheck:
    ran = board.results.get("model_sha256", "")
    ok = ran == bundle.model_sha256
    detail = (f"the board ran model sha256 {ran[:12]}…" if ok else
              f"the board ran model sha256 {ran[:12]}…, the bundle's is {bundle.model_sha256[:12]}…: "
              "the model on the board is not this bundle's (reflash it)")
    return ValidationCheck("model on the board is the bundle's", ok, detail)


def _check_probes(bundle: Bundle, board: RunOutput, thresholds: dict) -> ValidationCheck:
    # The runner compared the probe outputs with the host's (probes.npz "y", hash-checked
    # with the model) on the board; its numbers are the verdict's.
    agreement = board.results.get("probes") or {}
    expected_count = len(bundle.probes["y"])
    if agreement.get("count") != expected_count:
        return ValidationCheck("runtime computes the host's numbers (probes)", False,
                     f"the board's runner compared {agreement.get('count', 'no')} probe outputs, the bundle has "
                     f"{expected_count}: the board's probes are not this bundle's (reflash it)")
    max_abs, normalised = float(agreement["max_abs"]), float(agreement["normalised"])
    limit_abs = thresholds.get("probe_max_abs")
    ok = normalised <= thresholds["probe_tolerance"] and (limit_abs is None or max_abs <= limit_abs)
    limits = f"tolerance {thresholds['probe_tolerance']:g}" + (f", max abs {limit_abs:g}" if limit_abs is not None else "")
    if ok:
        return ValidationCheck("runtime computes the host's numbers (probes)", True,
                     f"{expected_count} probe outputs match the host within {normalised:.2e} (normalised; {limits})")
    return ValidationCheck("runtime computes the host's numbers (probes)", False,
                 f"the board's runtime {_runtime_name(board)} runs the model but computes different numbers than "
                 f"the host: probe outputs differ by {max_abs:.3g} ({normalised:.2e} of their RMS; {limits})")


def _check_first_step(board: RunOutput, host: RunOutput, thresholds: dict) -> ValidationCheck:
    first = normalised_error(board.trajectories[:, :1], host.trajectories[:, :1])[:, 0]
    worst = float(np.max(first))
    ok = worst <= thresholds["host_step_tolerance"]
    name = "runtime computes the host's numbers (rollout step 1)"
    if ok:
        return ValidationCheck(name, True, f"first rollout step matches the host within {worst:.2e} "
                                 f"(tolerance {thresholds['host_step_tolerance']:g})")
    return ValidationCheck(name, False, f"the board's runtime {_runtime_name(board)} computes different numbers than the host "
                              f"{_runtime_name(host)}: from identical context windows the first step differs by "
                              f"{worst:.2e} (normalised; tolerance {thresholds['host_step_tolerance']:g})")


def _check_blow_up(validation: Validation, thresholds: dict) -> ValidationCheck:
    board, host = validation.vs_float.blow_up_fraction, validation.host_vs_float.blow_up_fraction
    allowed = host + float(thresholds["max_blow_up_fraction"])
    ok = board <= allowed + 1e-12
    return ValidationCheck("no blow-up", ok, f"{board:.0%} of board rollouts blew up (NaN, inf or norm explosion); "
                                   f"the host run: {host:.0%}; allowed {allowed:.0%}")


def _check_quality(validation: Validation, thresholds: dict) -> ValidationCheck:
    board_vpt = validation.vs_float.mean_valid_prediction_time
    host_vpt = validation.host_vs_float.mean_valid_prediction_time
    horizon = validation.vs_float.horizon
    if thresholds.get("min_valid_prediction_time") is not None:
        # Over a horizon cut short (--horizon) a rollout is valid for at most that many steps.
        needed = min(float(thresholds["min_valid_prediction_time"]), float(horizon))
        source = "the bundle's threshold" + (" (capped at the horizon run)" if needed == horizon else "")
    else:  # no threshold: the board must forecast about as long as the host does with the same model
        needed, source = host_vpt - max(1.0, 0.1 * horizon), "the host's run less 10% of the horizon"
    ok = board_vpt >= needed
    return ValidationCheck("forecast quality vs the float model", ok,
                 f"valid prediction time {board_vpt:.1f} of {horizon} steps on the board "
                 f"(host {host_vpt:.1f}); needs >= {needed:.1f} ({source})")


# -- the whole flow ---------------------------------------------------------------

def validate(transport, bundle_path: str | Path | None, out_dir: str | Path, *, contexts: int | None = None,
             horizon: int | None = None, threads: int | None = None, python: str | None = None,
             timeout: float = 1800, on_event: Callable[[dict], None] | None = None) -> Validation:
    """Run on the board behind ``transport``, run the same on the host, judge, and save the verdict.

    ``bundle_path`` is the host's copy of the flashed bundle (its references are
    trusted); without it, the board's current bundle is fetched and hash-checked.
    ``out_dir`` gets board/ and host/ run outputs and validation.json.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if bundle_path is None:
        bundle_path = fetch_current_bundle(transport, out_dir / "bundle")
    bundle = load_bundle(bundle_path)
    board = run_on_board(transport, out_dir / "board", python=python, contexts=contexts, horizon=horizon,
                         threads=threads, timeout=timeout, on_event=on_event)
    shape = board.trajectories.shape
    host = run_locally(bundle.root, out_dir / "host", contexts=shape[0], horizon=shape[1], threads=threads,
                       timeout=timeout)
    validation = judge(bundle, board, host, board_name=transport.board.name)
    write_atomically(out_dir / "validation.json", json.dumps(validation.to_dict(), indent=2, default=str))
    return validation


def fetch_current_bundle(transport, dest: str | Path) -> Path:
    """Copy the board's current bundle (manifest, model, probes, contexts) to ``dest``."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    current = require_current(transport)
    transport.get(f"{current}/manifest.json", dest / "manifest.json")
    manifest = read_json(dest / "manifest.json", BUNDLE, where=f"{transport.board.name}'s current bundle")
    for name in manifest.get("files", {}):
        transport.get(f"{current}/{name}", dest / name)
    return dest
