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
