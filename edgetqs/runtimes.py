"""TFLite runtimes as values: which package, which version, what it costs in memory.

A :class:`RuntimeSpec` is what a firmware config names (``runtime`` and
``runtime_version``), what the capability matrix is keyed by
(``package==version``) and what the planner adds to a model's footprint.
:data:`DEFAULT_HOST_RUNTIME` is the one runtime edgetqs itself runs on the host
(pinned in pyproject.toml) and plans for when no target says otherwise.

Adding a runtime: its measured overhead in :data:`OVERHEAD_BYTES` (and a numpy
pin in :data:`NUMPY_REQUIREMENT` if it needs one), a loader in
remote/runner.py (which runs on boards without edgetqs, so it keeps its own
list), and a conformance run for its capability-matrix column.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgetqs.errors import EdgeTQSError

# Resident memory of the Python process running the interpreter (numpy + runtime
# + a tiny model), measured with ru_maxrss on x86_64 (benchmarks/planner_allocators.py
# prints the current figures). Boards differ little: the runtime is the same code.
OVERHEAD_BYTES = {"ai-edge-litert": 46 * 2**20, "tflite-runtime": 42 * 2**20}
PACKAGES = tuple(OVERHEAD_BYTES)  # the pip distributions edgetqs can plan for and provision
# What numpy a runtime's wheels work with, where it is not just any (tflite-runtime
# is built against numpy 1.x and fails to import with numpy 2).
NUMPY_REQUIREMENT = {"tflite-runtime": "numpy<2"}


# XNNPACK, the delegate LiteRT applies on CPU unless told not to, packs the
# weights of the ops it takes into buffers of its own at allocate_tensors: RAM
# beside the mapped file and DEQUANTIZE's float copies. Per delegate, weight
# format and mode: what the peak RSS holds beyond the runtime (with a tiny
# model), the file and those float copies, as a fraction of the weights'
# float32 bytes, rounded up (ai-edge-litert 2.3.0, x86_64, 1 and 2 threads
# alike; `python benchmarks/xnnpack_packing.py` re-measures and prints these).
# With XNNPACK, float weights (fp32, and fp16/int8 weight-only after their
# DEQUANTIZE) are repacked whole (1.0); int8 dynamic ones into an int8 copy
# (0.26-0.38); int4 is unpacked to int8 (0.15, weight-only 0.25, by the builtin
# kernels: as much without XNNPACK); int2 and blockwise int4 0.08-0.17.
# Without a delegate the same runs hold 0.49 (fp16), 0.25 (int8 weight-only) and
# 0.13-0.26 (int4) beyond file + copies too, not priced yet (float and int8
# dynamic, ~0, are). "*": any mode. tflite-runtime's
# XNNPACK is priced the same (the same delegate, older; not measured separately).
PACKED_WEIGHT_FRACTION: dict[str, dict[tuple[str, str], float]] = {
    "none": {("fp32", "*"): 0.0},  # nothing packed (see above for what is still missed)
    "xnnpack": {("fp32", "*"): 1.05, ("fp16", "*"): 1.05,
                ("int8", "dynamic"): 0.4, ("int8", "weight_only"): 1.05,
                ("int4", "dynamic"): 0.2, ("int4", "weight_only"): 0.3, ("int2", "dynamic"): 0.1,
                ("int4_b32", "dynamic"): 0.2, ("int4_b64", "dynamic"): 0.2},
}
# XNNPACK's own buffers whatever the weights (on minus off with a 30 KB model: 0.7-0.9 MiB)
# are inside OVERHEAD_BYTES, measured with the default delegate on.
DEFAULT_DELEGATE = "xnnpack"  # what LiteRT's Interpreter applies by default


def packed_weight_fraction(delegate: str, fmt: str, bits: int, mode: str) -> float:
    """What the runtime holds for weights stored as ``fmt`` (``bits`` per value) in ``mode`` beyond the
    file and DEQUANTIZE's copies, with ``delegate``, as a fraction of their float32 bytes. Unmeasured:
    static mode, int8_b32, delegates other than XNNPACK (priced like XNNPACK): twice the format's own
    value bytes, at most a float copy, so the prediction errs on the large side."""
    table = PACKED_WEIGHT_FRACTION.get(delegate, PACKED_WEIGHT_FRACTION[DEFAULT_DELEGATE])
    measured = table.get((fmt, str(mode)), table.get((fmt, "*")))
    return measured if measured is not None else min(table[("fp32", "*")], bits / 16)


def overhead_bytes(package: str) -> int:
    """The runtime's measured overhead; an unknown package is priced as the largest known one."""
    return OVERHEAD_BYTES.get(package, max(OVERHEAD_BYTES.values()))


@dataclass(frozen=True)
class RuntimeSpec:
    package: str  # the pip distribution, e.g. "ai-edge-litert"
    version: str

    @property
    def spec(self) -> str:
        """``package==version``: the capability matrix's key and what pip installs."""
        return f"{self.package}=={self.version}"

    @property
    def module(self) -> str:
        """The import name (ai-edge-litert -> ai_edge_litert)."""
        return self.package.replace("-", "_")

    @property
    def overhead_bytes(self) -> int:
        return overhead_bytes(self.package)

    @property
    def numpy_requirement(self) -> str:
        """The numpy pip installs beside this runtime in a fresh venv."""
        return NUMPY_REQUIREMENT.get(self.package, "numpy")

    def __str__(self) -> str:
        return self.spec

    @classmethod
    def parse(cls, text: str) -> RuntimeSpec:
        """``package==version`` as given on the command line or stored in a plan."""
        package, sep, version = text.partition("==")
        if not sep or not package.strip() or not version.strip():
            raise EdgeTQSError(f"cannot read runtime {text!r}",
                               f"write it as package==version, e.g. {DEFAULT_HOST_RUNTIME.spec}")
        return cls(package.strip(), version.strip())


DEFAULT_HOST_RUNTIME = RuntimeSpec("ai-edge-litert", "2.3.0")
# The runtimes `python -m edgetqs.planner.conformance` checks by default: the host's
# and the one older boards (Jetsons, armhf Pis) install.
CONFORMANCE_RUNTIMES = (DEFAULT_HOST_RUNTIME, RuntimeSpec("tflite-runtime", "2.14.0"))
