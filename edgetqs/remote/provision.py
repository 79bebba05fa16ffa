"""RequirementCheck a board against its firmware config, and install the runtime there.

``check_board`` looks at what the board has (one SSH round trip): its
architecture, the Python the firmware config names, whether the runtime
package imports in the board's venv (or system Python) and at which version,
numpy, and free disk. ``provision(..., install=True)`` creates the venv and
pip-installs what is missing or at the wrong version; run twice, the second run
changes nothing and says so. ``apply_settings=True`` also brings the board to
the firmware's [settings] (CPU governor, nvpmodel, jetson_clocks; see
board_settings.py), idempotently too.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass, field
from typing import Callable

from edgetqs.errors import EdgeTQSError
from edgetqs.remote.board_settings import SettingChange, apply_settings as apply_board_settings
from edgetqs.targets import Firmware
from edgetqs.remote.transport import RuntimeMissing, Transport, command_failed

q = shlex.quote

# A board with less free space than this cannot hold a venv, a runtime and a few model versions.
MIN_FREE_BYTES = 200 * 2**20
PIP_TIMEOUT = 1800  # a runtime wheel on a Pi Zero over Wi-Fi is slow

# Runs on the board under each candidate Python (3.6+, so no f-strings).
_PROBE = """
import importlib, json, platform, sys
def dist_version(name):
    try:
        from importlib.metadata import version
    except ImportError:
        import pkg_resources
        return pkg_resources.get_distribution(name).version
    return version(name)
packages = {}
for dist in sys.argv[1:]:
    entry = {"import": False, "version": None, "error": None}
    try:
        importlib.import_module(dist.replace("-", "_"))
        entry["import"] = True
    except Exception as exc:
        entry["error"] = "%s: %s" % (type(exc).__name__, exc)
    try:
        entry["version"] = dist_version(dist)
    except Exception:
        pass
    packages[dist] = entry
print(json.dumps({"version": "%d.%d.%d" % sys.version_info[:3], "machine": platform.machine(),
                  "packages": packages}))
"""


@dataclass
class RequirementCheck:
    """One thing the firmware config requires of a board (architecture, Python, runtime, disk), as found there."""

    name: str
    wanted: str
    found: str
    ok: bool
    fix: str = ""


@dataclass
class BoardFacts:
    arch: str
    free_bytes: int
    pythons: dict[str, dict]  # interpreter -> {"version", "packages": {dist: {"import", "version", "error"}}}


@dataclass
class ProvisionReport:
    board: str
    firmware: str
    checks: list[RequirementCheck]
    actions: list[str] = field(default_factory=list)  # what --install changed
    python: str | None = None  # the interpreter that has the runtime (what the runner uses)
    settings: list[SettingChange] = field(default_factory=list)  # --apply-settings: each one before/after

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def summary(self) -> str:
        if not self.ok:
            failed = ", ".join(check.name for check in self.checks if not check.ok)
            return f"NOT ready: {failed}"
        return "ready; changed: " + "; ".join(self.actions) if self.actions else "ready; nothing to change"

    def to_json(self) -> dict:
        return {**asdict(self), "ok": self.ok, "summary": self.summary()}


def python_candidates(firmware: Firmware) -> list[str]:
    """Where the runtime may live: the venv first, then the system Python."""
    return [firmware.setup.venv_python, f"python{firmware.setup.python}", "python3"]


def read_facts(t: Transport, firmware: Firmware) -> BoardFacts:
    dists = " ".join(q(d) for d in _wanted_packages(firmware))
    probes = " ".join(q(py) for py in python_candidates(firmware))
    script = (
        f'echo "arch=$(uname -m)"; mkdir -p {q(t.board.root)}; '
        f"echo \"free_kb=$(df -Pk {q(t.board.root)} | tail -n 1 | awk '{{print $4}}')\"; "
        f"for py in {probes}; do "
        '  if [ -x "$py" ] || command -v "$py" >/dev/null 2>&1; then '
        f'    echo "py $py $("$py" -c {q(_PROBE)} {dists} 2>/dev/null || echo null)"; '
        "  fi; "
        "done"
    )
    lines = t.check(script, timeout=120, what="reading the board's facts").stdout.splitlines()
    values = dict(line.split("=", 1) for line in lines[:2])
    pythons = {}
    for line in lines[2:]:
        _, interpreter, payload = line.split(" ", 2)
        parsed = _json_or_none(payload)
        if parsed is not None:
            pythons[interpreter] = parsed
    free_kb = values.get("free_kb", "").strip()
    return BoardFacts(values.get("arch", "").strip(), int(free_kb) * 1024 if free_kb.isdigit() else 0, pythons)


def _json_or_none(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


def _wanted_packages(firmware: Firmware) -> list[str]:
    return [firmware.runtime.package, *firmware.setup.extra_packages]


def _system_python(facts: BoardFacts, firmware: Firmware) -> tuple[str | None, str]:
    """(interpreter with the firmware's major.minor or None, what was found)."""
    found = []
    for interpreter in python_candidates(firmware)[1:]:
        info = facts.pythons.get(interpreter)
        if info:
            if _same_minor(info["version"], firmware.setup.python):
                return interpreter, info["version"]
            found.append(f"{interpreter} {info['version']}")
    return None, ", ".join(found) or "no python3"


def _same_minor(version: str, wanted: str) -> bool:
    return version.split(".")[:2] == wanted.split(".")[:2]


def _runtime_python(facts: BoardFacts, firmware: Firmware) -> str | None:
    """The first interpreter where the runtime imports at the wanted version."""
    for interpreter in python_candidates(firmware):
        package = facts.pythons.get(interpreter, {}).get("packages", {}).get(firmware.runtime.package, {})
        if package.get("import") and package.get("version") == firmware.runtime.version:
            return interpreter
    return None


def evaluate(board: str, facts: BoardFacts, firmware: Firmware, min_free: int = MIN_FREE_BYTES) -> ProvisionReport:
    system, python_found = _system_python(facts, firmware)
    runtime_at = _runtime_python(facts, firmware)
    where = runtime_at or (firmware.setup.venv_python if firmware.setup.venv_python in facts.pythons else system)
    packages = facts.pythons.get(where, {}).get("packages", {}) if where else {}
    install_fix = "run `edgetqs provision --install` to install it into the board's venv"
    machine, machine_found = _machine(facts, where)
    checks = [
        RequirementCheck("architecture", firmware.setup.arch or "any", machine_found, not firmware.setup.arch or machine == firmware.setup.arch,
              "this board runs another OS image than its firmware config says; pick the right --target/firmware"),
        RequirementCheck("python", firmware.setup.python, python_found, system is not None,
              f"install Python {firmware.setup.python} on the board (e.g. apt install python{firmware.setup.python})"),
        RequirementCheck("runtime", firmware.runtime.spec,
              _describe(packages.get(firmware.runtime.package), where), runtime_at is not None, install_fix),
        *(RequirementCheck(extra, "importable", _describe(packages.get(extra), where),
                bool(packages.get(extra, {}).get("import")), install_fix) for extra in firmware.setup.extra_packages),
        RequirementCheck("free disk", f">= {min_free / 2**20:.0f} MiB", f"{facts.free_bytes / 2**20:.0f} MiB",
              facts.free_bytes >= min_free, "free space on the board (old models: edgetqs flash --keep 1)"),
    ]
    return ProvisionReport(board, firmware.name, checks, python=runtime_at)


def _machine(facts: BoardFacts, python: str | None) -> tuple[str, str]:
    """The architecture wheels must match: what the board's Python reports, which
    differs from `uname -m` on a 32-bit userland over a 64-bit kernel (or under
    qemu-user); (machine, text for the report)."""
    machine = facts.pythons.get(python, {}).get("machine") if python else None
    if not machine or machine == facts.arch:
        return machine or facts.arch, facts.arch
    return machine, f"{machine} ({python}; kernel {facts.arch})"


def _describe(package: dict | None, where: str | None) -> str:
    if not where:
        return "no Python to look in"
    if not package or (not package.get("import") and not package.get("version")):
        return f"not installed in {where}"
    if not package.get("import"):
        version = f" ({package['version']} installed)" if package.get("version") else ""
        return f"does not import in {where}{version}: {package.get('error')}"
    return f"{package.get('version')} in {where}"


def check_board(t: Transport, firmware: Firmware, min_free: int = MIN_FREE_BYTES) -> ProvisionReport:
    return evaluate(t.board.name, read_facts(t, firmware), firmware, min_free)


def provision(
    t: Transport,
    firmware: Firmware,
    install: bool = False,
    min_free: int = MIN_FREE_BYTES,
    on_line: Callable[[str], None] | None = None,
    apply_settings: bool = False,
) -> ProvisionReport:
    """RequirementCheck the board; with ``install``, create the venv and install what is missing;
    with ``apply_settings``, apply the firmware's [settings] (only what differs)."""
    report = _provision_runtime(t, firmware, install, min_free, on_line)
    if apply_settings:
        report.settings = apply_board_settings(t, firmware)
        report.actions += [f"{c.name}: {c.before} -> {c.after}" for c in report.settings if c.changed]
    return report


def _provision_runtime(t: Transport, firmware: Firmware, install: bool, min_free: int, on_line) -> ProvisionReport:
    facts = read_facts(t, firmware)
    report = evaluate(t.board.name, facts, firmware, min_free)
    if not install or not _install_needed(report):
        return report
    system, _ = _system_python(facts, firmware)
    if system is None:
        return report  # nothing to build a venv from; the python check says what to do
    actions = []
    if firmware.setup.venv_python not in facts.pythons:
        _run(t, f"{q(system)} -m venv {q(firmware.setup.install_dir)}", "creating the venv", on_line,
             hint=f"on Debian-based boards: sudo apt install python{firmware.setup.python}-venv")
        actions.append(f"created venv {firmware.setup.install_dir} ({system})")
    missing = _packages_to_install(report, firmware)
    if missing:
        pip = " ".join(q(arg) for arg in firmware.setup.pip_args)
        _run(t, f"{q(firmware.setup.venv_python)} -m pip install --disable-pip-version-check {pip} "
                + " ".join(q(spec) for spec in missing), "installing the runtime", on_line,
             hint="check the board's network and that a wheel exists for its Python and architecture")
        actions.append("installed " + ", ".join(missing))
    report = evaluate(t.board.name, read_facts(t, firmware), firmware, min_free)
    report.actions = actions
    return report


def _install_needed(report: ProvisionReport) -> bool:
    return any(not c.ok for c in report.checks if c.name not in ("architecture", "free disk"))


def _packages_to_install(report: ProvisionReport, firmware: Firmware) -> list[str]:
    failed = {check.name for check in report.checks if not check.ok}
    specs = [firmware.runtime.spec] if "runtime" in failed else []
    return specs + [extra for extra in firmware.setup.extra_packages if extra in failed]


def _run(t: Transport, cmd: str, what: str, on_line, hint: str) -> None:
    result = t.run(cmd, timeout=PIP_TIMEOUT, on_line=on_line)
    if result.exit != 0:
        error = command_failed(t.board, what, result)
        raise type(error)(error.problem, f"{hint}; {error.fix}", exit_code=result.exit, stderr=result.stderr)


def require_runtime(t: Transport, firmware: Firmware) -> str:
    """The interpreter on the board that has the runtime; RuntimeMissing if none."""
    report = check_board(t, firmware, min_free=0)
    if report.python is None:
        runtime = next(check for check in report.checks if check.name == "runtime")
        raise RuntimeMissing(
            f"{t.board.name} has no {runtime.wanted}: {runtime.found}",
            f"run `edgetqs provision --target/--host ... --install` (firmware config {firmware.name})",
        )
    return report.python
