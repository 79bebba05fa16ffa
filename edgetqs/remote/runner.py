#!/usr/bin/env python3
"""The on-device runner: one self-contained file uploaded to a board with a bundle.

It needs only the standard library, numpy and one TFLite runtime (whichever the
board has: ai_edge_litert, tflite_runtime or tensorflow.lite), and keeps to
Python 3.8 syntax because JetPack 5 ships 3.8. It must not import edgetqs.

    python runner.py --bundle DIR --out DIR [--threads N] [--contexts K] [--horizon T]

What it does, in order, each stage announced as one JSON line on stdout:
  1. names the runtime, its version and whether the default delegate (XNNPACK) is active;
  2. runs the bundle's probe inputs and compares them with the host's outputs;
  3. rolls the model out from every context window (append-shift, per the
     manifest's rollout spec), timing every step;
  4. reads peak memory (VmHWM), CPU temperature and throttling where exposed;
  5. writes ``results.json`` and ``trajectories.npz`` into --out (each written
     under a temporary name, then renamed, so the host never fetches half a file).
The host (edgetqs.remote.validate) judges the numbers; the runner only measures.
"""

import argparse
import glob
import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time

import numpy as np

RESULTS_FORMAT = "edgetqs.run"
RESULTS_VERSION = 1
RESULTS_JSON = "results.json"
TRAJECTORIES_NPZ = "trajectories.npz"
RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow")


def emit(event, **fields):
    """One progress line for the host: JSON, flushed at once so it streams over SSH."""
    fields["event"] = event
    sys.stdout.write(json.dumps(fields, default=_plain) + "\n")
    sys.stdout.flush()


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# -- the runtime -------------------------------------------------------------

def _distribution_version(name):
    try:
        from importlib import metadata  # Python >= 3.8
        return metadata.version(name)
    except Exception:  # not installed as a distribution (e.g. a source build)
        return None


def load_runtime(preferred=None):
    """(name, version, Interpreter class, OpResolverType or None) of the first runtime found."""
    errors = []
    for name in ([preferred] if preferred else list(RUNTIMES)):
        try:
            if name == "ai_edge_litert":
                from ai_edge_litert import interpreter as module
                version = _distribution_version("ai-edge-litert")
            elif name == "tflite_runtime":
                import tflite_runtime
                from tflite_runtime import interpreter as module
                version = getattr(tflite_runtime, "__version__", None) or _distribution_version("tflite-runtime")
            elif name == "tensorflow":
                import tensorflow as tf
                module, version = tf.lite, tf.__version__
                module.OpResolverType = getattr(tf.lite.experimental, "OpResolverType", None)
            else:
                raise ImportError("unknown runtime " + name)
        except ImportError as exc:
            errors.append("%s: %s" % (name, exc))
            continue
        return name, version, module.Interpreter, getattr(module, "OpResolverType", None)
    raise SystemExit("no TFLite runtime found (%s); install ai-edge-litert, tflite-runtime or tensorflow"
                     % "; ".join(errors))


def make_interpreter(interpreter_class, resolver_type, model_path, threads, use_xnnpack):
    kwargs = {"model_path": model_path}
    if threads:
        kwargs["num_threads"] = threads
    if not use_xnnpack and resolver_type is not None:
        kwargs["experimental_op_resolver_type"] = resolver_type.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = interpreter_class(**kwargs)
    interpreter.allocate_tensors()  # the default delegate is applied here, lazily
    return interpreter


def delegate_facts(interpreter):
    """How many nodes of the execution plan a delegate took over.

    With the default op resolver, the delegate TFLite applies on CPU is XNNPACK;
    a DELEGATE node in the plan is the evidence that it was applied.
    """
    try:
        ops = interpreter._get_ops_details()
    except Exception:  # very old runtimes: no way to tell
        return {"xnnpack": None, "delegate_nodes": None, "ops": None}
    names = [op.get("op_name", "") for op in ops]
    delegates = sum(1 for name in names if name == "DELEGATE")
    return {"xnnpack": delegates > 0, "delegate_nodes": delegates,
            "ops": len(names) - delegates}


class Model:
    """One input [1, window, features] -> one output; quantized I/O handled by scale/zero point."""

    def __init__(self, interpreter):
        self.interpreter = interpreter
        self.input = interpreter.get_input_details()[0]
        self.output = interpreter.get_output_details()[0]

    def __call__(self, window):
        x = np.asarray(window, dtype=np.float32)[None]
        self.interpreter.set_tensor(self.input["index"], _to_tensor(x, self.input))
        self.interpreter.invoke()
        return _from_tensor(self.interpreter.get_tensor(self.output["index"]), self.output)[0]


def _to_tensor(x, detail):
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _from_tensor(y, detail):
    if np.issubdtype(y.dtype, np.floating):
        return y.astype(np.float32)
    scale, zero = detail["quantization"]
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)


# -- probes and rollouts -----------------------------------------------------

def run_probes(model, probes_x):
    return np.stack([model(x) for x in probes_x]) if len(probes_x) else np.zeros((0,), np.float32)


def probe_agreement(outputs, expected):
    """Largest difference from the host's outputs, absolute and relative to their RMS."""
    if expected.size == 0:
        return {"count": 0, "max_abs": 0.0, "normalised": 0.0}
    expected = expected.reshape(outputs.shape).astype(np.float64)
    diff = np.abs(outputs.astype(np.float64) - expected)
    scale = float(np.sqrt(np.mean(expected ** 2))) or 1.0
    max_abs = float(np.nanmax(diff)) if np.isfinite(diff).all() else float("inf")
    return {"count": int(len(outputs)), "max_abs": max_abs, "normalised": max_abs / scale}


def rollout(model, context, horizon, patch, covariates=(), given=None):
    """Append-shift rollout: each output patch joins the window, the oldest steps leave.

    ``covariates``: the input columns the model reads but does not predict; their
    values for the steps ahead come from ``given`` [horizon, C] (the bundle's), the
    prediction fills the other columns. Returns (trajectory [horizon, F - C], per-invoke seconds).
    """
    window = np.array(context, dtype=np.float32)
    features = window.shape[1]
    fed_back = [i for i in range(features) if i not in covariates]
    steps, latencies = [], []
    while len(steps) < horizon:
        start = time.perf_counter()
        out = model(window)
        latencies.append(time.perf_counter() - start)
        out = out.reshape(patch, len(fed_back))
        rows = np.empty((patch, features), np.float32)
        rows[:, fed_back] = out
        if covariates:
            rows[:, list(covariates)] = given[len(steps):len(steps) + patch]
        steps.extend(out)
        window = np.concatenate([window[patch:], rows], axis=0)
    return np.stack(steps[:horizon]), latencies


def percentiles_ms(seconds):
    if not seconds:
        return {}
    ms = np.asarray(seconds) * 1000.0
    return {"p50": float(np.percentile(ms, 50)), "p90": float(np.percentile(ms, 90)),
            "p99": float(np.percentile(ms, 99)), "mean": float(ms.mean()),
            "min": float(ms.min()), "max": float(ms.max()), "count": int(ms.size)}


# -- board facts ---------------------------------------------------------------

def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip("\x00\n ")
    except (OSError, UnicodeDecodeError):
        return None


def _command(argv, timeout=3.0):
    """Output of a board tool (vcgencmd, tegrastats) or None when it is absent or fails."""
    if not shutil.which(argv[0]):
        return None
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        return done.stdout.decode(errors="replace").strip() or None
    except subprocess.TimeoutExpired as exc:  # tegrastats streams until stopped: take its first line
        text = (exc.stdout or b"").decode(errors="replace").strip()
        return text.splitlines()[0] if text else None
    except OSError:
        return None


def peak_memory_kib():
    status = _read("/proc/self/status") or ""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


# vcgencmd get_throttled bits (Raspberry Pi firmware): now (0-3) and since boot (16-19).
THROTTLED_BITS = {0: "under-voltage", 1: "arm frequency capped", 2: "throttled", 3: "soft temperature limit",
                  16: "under-voltage occurred", 17: "arm frequency capping occurred",
                  18: "throttling occurred", 19: "soft temperature limit occurred"}


def decode_throttled(text):
    """``throttled=0x50005`` -> the names of the bits set (empty list: all clear)."""
    key, _, value = (text or "").partition("=")
    if key.strip() != "throttled":
        return None
    try:
        value = int(value.strip(), 16)
    except ValueError:
        return None
    return [name for bit, name in sorted(THROTTLED_BITS.items()) if value >> bit & 1]


def thermal_facts():
    """CPU temperatures and throttling, from whatever this board exposes."""
    zones = {}
    for zone in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
        temp = _read(os.path.join(zone, "temp"))
        if temp and temp.lstrip("-").isdigit():
            kind = _read(os.path.join(zone, "type")) or os.path.basename(zone)
            zones[kind] = int(temp) / 1000.0
    throttled = _command(["vcgencmd", "get_throttled"])
    return {
        "thermal_zones_c": zones,
        "vcgencmd_temp": _command(["vcgencmd", "measure_temp"]),
        "vcgencmd_throttled": throttled,
        "throttled_flags": decode_throttled(throttled),
        "tegrastats": _command(["tegrastats", "--interval", "200"], timeout=1.5),
    }


def board_facts():
    meminfo = _read("/proc/meminfo") or ""
    mem_total = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:")), None)
    return {
        "hostname": socket.gethostname(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "model": _read("/proc/device-tree/model") or _read("/sys/firmware/devicetree/base/model"),
        "cpu": _cpu_name(),
        "cpus": os.cpu_count(),
        "mem_total_kib": mem_total,
    }


def _cpu_name():
    text = _read("/proc/cpuinfo") or ""
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    if "model name" in fields:
        return fields["model name"]
    if "CPU part" in fields:  # ARM: implementer and part number, e.g. 0x41/0xd08 = Cortex-A72
        return "ARM implementer %s part %s" % (fields.get("CPU implementer"), fields["CPU part"])
    return None


# -- main ------------------------------------------------------------------------

def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_npz(path):
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def write_atomically(path, write):
    tmp = path + ".partial"
    with open(tmp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Run an edgetqs bundle on this board and record the results.")
    parser.add_argument("--bundle", required=True, help="bundle directory (manifest.json, model.tflite, ...)")
    parser.add_argument("--out", required=True, help="directory for results.json and trajectories.npz")
    parser.add_argument("--threads", type=int, default=None, help="interpreter threads (default: the runtime's)")
    parser.add_argument("--contexts", type=int, default=None, help="roll out only the first K context windows")
    parser.add_argument("--horizon", type=int, default=None,
                        help="roll out at most T steps (default: as many as the bundle's references)")
    parser.add_argument("--runtime", choices=RUNTIMES, default=None, help="force one runtime")
    parser.add_argument("--no-xnnpack", action="store_true", help="run without the default delegate")
    return parser.parse_args(argv)


def rollout_steps(bundle_contexts, patch):
    """Steps per rollout: as many as the host's references have (the bundle's
    ``horizon`` counts model calls, each adding ``patch`` steps)."""
    if "reference_float" in bundle_contexts:
        return int(bundle_contexts["reference_float"].shape[1])
    return int(bundle_contexts["horizon"]) * patch


def open_model(args, model_path):
    """Load the runtime and the model; announce which runtime and whether XNNPACK is on."""
    name, version, interpreter_class, resolver_type = load_runtime(args.runtime)
    load_start = time.perf_counter()
    interpreter = make_interpreter(interpreter_class, resolver_type, model_path, args.threads, not args.no_xnnpack)
    runtime = {"name": name, "version": version, "threads": args.threads,
               "load_seconds": time.perf_counter() - load_start}
    runtime.update(delegate_facts(interpreter))
    emit("runtime", **runtime)
    return Model(interpreter), runtime


def run_rollouts(model, contexts, horizon, patch, covariates=(), given=None):
    """Every context rolled out; one progress line per context. (trajectories [K,T,F-C], step seconds)"""
    trajectories, latencies = [], []
    for k, context in enumerate(contexts):
        trajectory, step_seconds = rollout(model, context, horizon, patch, covariates,
                                           None if given is None else given[k])
        trajectories.append(trajectory)
        latencies.extend(step_seconds)
        emit("rollout", done=k + 1, of=len(contexts), steps=len(step_seconds),
             finite=bool(np.isfinite(trajectory).all()))
    features = np.shape(contexts)[-1] - len(covariates)
    return np.asarray(trajectories, np.float32).reshape(len(contexts), horizon, features), latencies


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    with open(os.path.join(args.bundle, "manifest.json")) as handle:
        manifest = json.load(handle)
    model_path = os.path.join(args.bundle, manifest["model"]["file"])
    patch = int(manifest["rollout"].get("patch", 1))
    covariates = list(manifest["rollout"].get("covariates") or [])  # bundles before covariates: none
    model, runtime = open_model(args, model_path)

    probes = load_npz(os.path.join(args.bundle, "probes.npz"))
    probe_outputs = run_probes(model, probes["x"])  # also warms the interpreter up before timing
    agreement = probe_agreement(probe_outputs, probes["y"])
    emit("probes", **agreement)

    bundle_contexts = load_npz(os.path.join(args.bundle, "contexts.npz"))
    contexts = bundle_contexts["contexts"][: args.contexts]
    horizon = rollout_steps(bundle_contexts, patch)
    horizon = horizon if args.horizon is None else min(args.horizon, horizon)
    thermal_before = thermal_facts()
    given = bundle_contexts["covariates"][: args.contexts] if covariates else None
    trajectories, latencies = run_rollouts(model, contexts, horizon, patch, covariates, given)

    results = {
        "format": RESULTS_FORMAT, "version": RESULTS_VERSION,
        "runtime": runtime, "board": board_facts(),
        "model_sha256": sha256_file(model_path),
        "manifest_model_sha256": manifest["model"]["sha256"],
        "probes": agreement,
        "rollouts": {"contexts": len(contexts), "horizon": horizon, "patch": patch},
        "latency_ms": percentiles_ms(latencies),
        "peak_memory_kib": peak_memory_kib(),
        "thermal": {"before": thermal_before, "after": thermal_facts()},
        "seconds": time.time() - started,
    }
    os.makedirs(args.out, exist_ok=True)
    write_atomically(os.path.join(args.out, TRAJECTORIES_NPZ), lambda handle: np.savez(
        handle, trajectories=trajectories, probe_outputs=probe_outputs,
        latency_seconds=np.asarray(latencies, np.float64)))
    write_atomically(os.path.join(args.out, RESULTS_JSON),
                     lambda handle: handle.write(json.dumps(results, indent=2, default=_plain).encode()))
    emit("done", out=args.out, seconds=results["seconds"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
