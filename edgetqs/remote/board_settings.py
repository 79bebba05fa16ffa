"""Apply a firmware config's [settings] on a board (``edgetqs provision --apply-settings``).

Three settings, applied in this order because each later one builds on the
earlier (a new nvpmodel mode resets the clocks jetson_clocks pins):

* ``nvpmodel_mode``: the Jetson power mode, ``nvpmodel -q`` / ``nvpmodel -m N``;
* ``cpu_governor``: every CPU's ``cpufreq/scaling_governor`` under the sysfs root;
* ``jetson_clocks``: pins the clocks at their maximum; it counts as applied when
  every CPU's ``scaling_min_freq`` equals its ``cpuinfo_max_freq`` (what the
  tool does to the CPUs), and when that cannot be read it is simply run.

Idempotent: the current values are read first (one SSH round trip) and only
what differs is changed; each setting reports its value before and after.
Not logged in as root, the changes go through ``sudo -n`` (a NOPASSWD rule).
The sysfs root and the tool names come from the firmware config
(``[settings] sysfs_root / nvpmodel_tool / jetson_clocks_tool``), so a test
board can stand in its own.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from edgetqs.errors import EdgeTQSError
from edgetqs.targets import Firmware
from edgetqs.remote.transport import Transport

q = shlex.quote

SUDO_FIX = ("connect as root (--host root@ADDR), or give the login user a NOPASSWD sudo rule for "
            "tee, {tools} (e.g. in /etc/sudoers.d/edgetqs)")


@dataclass
class SettingChange:
    name: str  # "cpu_governor", "nvpmodel_mode", "jetson_clocks"
    wanted: str
    before: str
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass
class SettingsState:
    """What the board has now, as read by ``read_settings``."""

    root: bool  # logged in as root (no sudo needed)
    governors: dict[str, str]  # scaling_governor path -> current value
    available_governors: str  # the first CPU's scaling_available_governors ("" if absent)
    nvpmodel: str | None  # current mode number; None: the tool is missing
    nvpmodel_error: str
    clocks_pinned: bool | None  # every CPU's min freq at its max; None: cannot tell
    jetson_clocks_found: bool


def _cpufreq_glob(firmware: Firmware) -> str:
    # the glob stays unquoted so the board's shell expands it
    return f"{q(firmware.setup.sysfs_root.rstrip('/') + '/devices/system/cpu')}/cpu[0-9]*/cpufreq"


def _read_script(firmware: Firmware) -> str:
    cpufreq = _cpufreq_glob(firmware)
    nvpmodel, clocks = q(firmware.setup.nvpmodel_tool), q(firmware.setup.jetson_clocks_tool)
    return "; ".join([
        'echo "uid $(id -u)"',
        f'for d in {cpufreq}; do [ -e "$d/scaling_governor" ] && echo "governor $d/scaling_governor $(cat "$d/scaling_governor" 2>&1)"; done',
        f'for d in {cpufreq}; do [ -e "$d/scaling_available_governors" ] && echo "available $(cat "$d/scaling_available_governors")" && break; done',
        f'for d in {cpufreq}; do [ -e "$d/scaling_min_freq" ] && echo "clock $(cat "$d/scaling_min_freq") $(cat "$d/cpuinfo_max_freq" 2>/dev/null)"; done',
        f'if command -v {nvpmodel} >/dev/null 2>&1; then out=$({nvpmodel} -q 2>&1); echo "nvpmodel $? $(echo "$out" | tail -n 1)"; '
        'else echo "nvpmodel missing"; fi',
        f'if command -v {clocks} >/dev/null 2>&1; then echo "jetson_clocks found"; fi',
        "true",
    ])


def read_settings(t: Transport, firmware: Firmware) -> SettingsState:
    lines = t.check(_read_script(firmware), timeout=60, what="reading the board's settings").stdout.splitlines()
    state = SettingsState(root=False, governors={}, available_governors="", nvpmodel=None, nvpmodel_error="",
                          clocks_pinned=None, jetson_clocks_found=False)
    clocks = []
    for line in lines:
        kind, _, rest = line.partition(" ")
        if kind == "uid":
            state.root = rest.strip() == "0"
        elif kind == "governor":
            path, _, value = rest.partition(" ")
            state.governors[path] = value.strip()
        elif kind == "available":
            state.available_governors = rest.strip()
        elif kind == "clock":
            clocks.append(rest.split())
        elif kind == "nvpmodel":
            _read_nvpmodel(state, rest)
        elif kind == "jetson_clocks":
            state.jetson_clocks_found = True
    if clocks and all(len(c) == 2 for c in clocks):
        state.clocks_pinned = all(low == high for low, high in clocks)
    return state


def _read_nvpmodel(state: SettingsState, rest: str) -> None:
    if rest == "missing":
        return
    status, _, last = rest.partition(" ")
    if status == "0" and last.strip().isdigit():
        state.nvpmodel = last.strip()
    else:
        state.nvpmodel, state.nvpmodel_error = "?", last.strip()


def apply_settings(t: Transport, firmware: Firmware) -> list[SettingChange]:
    """Bring the board to the firmware's [settings]; what each was before and after."""
    if not firmware.setup.has_settings:
        return []
    state = read_settings(t, firmware)
    _require_interfaces(t, firmware, state)
    sudo = "" if state.root else "sudo -n "
    changes = []
    if firmware.setup.nvpmodel_mode is not None:
        wanted = str(firmware.setup.nvpmodel_mode)
        if state.nvpmodel != wanted:
            _change(t, firmware, f"{sudo}{q(firmware.setup.nvpmodel_tool)} -m {wanted}", "setting the nvpmodel power mode")
            state.clocks_pinned = False  # a new power mode resets the clocks
        changes.append(SettingChange("nvpmodel_mode", wanted, state.nvpmodel, wanted))
    if firmware.setup.cpu_governor:
        changes.append(_apply_governor(t, firmware, state, sudo))
    if firmware.setup.jetson_clocks:
        if not state.clocks_pinned:
            _change(t, firmware, f"{sudo}{q(firmware.setup.jetson_clocks_tool)}", "running jetson_clocks")
        before = {True: "on", False: "off", None: "unknown"}[state.clocks_pinned]
        changes.append(SettingChange("jetson_clocks", "on", before, "on"))
    return _verified(t, firmware, changes)


def _apply_governor(t: Transport, firmware: Firmware, state: SettingsState, sudo: str) -> SettingChange:
    wanted = firmware.setup.cpu_governor
    available = state.available_governors.split()
    if available and wanted not in available:
        raise EdgeTQSError(f"{t.board.name}'s CPUs offer the governors {', '.join(available)}, not '{wanted}'",
                           f"set [settings] cpu_governor in firmware config {firmware.name} to one of them")
    stale = [path for path, value in state.governors.items() if value != wanted]
    if stale:
        writes = " && ".join(f"echo {q(wanted)} | {sudo}tee {q(path)} >/dev/null" for path in stale)
        _change(t, firmware, writes, "setting the CPU governor")
    return SettingChange("cpu_governor", wanted, _summary(state.governors.values()), wanted)


def _summary(values) -> str:
    """One value if all CPUs agree, else each distinct value."""
    distinct = sorted(set(values))
    return distinct[0] if len(distinct) == 1 else "mixed: " + ", ".join(distinct)


def _require_interfaces(t: Transport, firmware: Firmware, state: SettingsState) -> None:
    name = t.board.name
    if firmware.setup.cpu_governor and not state.governors:
        raise EdgeTQSError(
            f"{name} has no CPU frequency governor interface ({firmware.setup.sysfs_root}/devices/system/cpu/cpu*/cpufreq/"
            "scaling_governor is missing)",
            "the board's kernel lacks cpufreq (a VM or container?): remove [settings] cpu_governor from firmware "
            f"config {firmware.name}, or point settings.sysfs_root at the right sysfs")
    if firmware.setup.nvpmodel_mode is not None and state.nvpmodel is None:
        raise EdgeTQSError(f"{name} has no '{firmware.setup.nvpmodel_tool}' on its PATH (set nvpmodel_mode asks for one)",
                           "install the JetPack tools (nvidia-l4t-tools) on the board, or remove [settings] "
                           f"nvpmodel_mode from firmware config {firmware.name} if it is not a Jetson")
    if firmware.setup.nvpmodel_mode is not None and state.nvpmodel == "?":
        raise EdgeTQSError(f"{name}: `{firmware.setup.nvpmodel_tool} -q` failed: {state.nvpmodel_error}",
                           _sudo_fix(firmware) if not state.root else "check nvpmodel on the board (sudo nvpmodel -q)")
    if firmware.setup.jetson_clocks and not state.jetson_clocks_found:
        raise EdgeTQSError(f"{name} has no '{firmware.setup.jetson_clocks_tool}' on its PATH (jetson_clocks = true asks for it)",
                           "install the JetPack tools (nvidia-l4t-tools) on the board, or set [settings] "
                           f"jetson_clocks = false in firmware config {firmware.name}")


def _sudo_fix(firmware: Firmware) -> str:
    return SUDO_FIX.format(tools=", ".join((firmware.setup.nvpmodel_tool, firmware.setup.jetson_clocks_tool)))


def _change(t: Transport, firmware: Firmware, cmd: str, what: str) -> None:
    result = t.run(cmd, timeout=120)
    if result.exit == 0:
        return
    error = (result.stderr or result.stdout).strip().splitlines()[-1:] or [f"exit {result.exit}"]
    refused = any(word in error[0].lower() for word in ("permission denied", "read-only", "password", "not permitted",
                                                        "sudo"))
    raise EdgeTQSError(f"{t.board.name}: {what} failed: {error[0]}",
                       _sudo_fix(firmware) if refused else f"run it by hand on the board to see why: {cmd}")


def _verified(t: Transport, firmware: Firmware, changes: list[SettingChange]) -> list[SettingChange]:
    """Read the board again: 'after' is what it now has, not what was asked for."""
    state = read_settings(t, firmware)
    now = {"nvpmodel_mode": state.nvpmodel or "missing",
           "cpu_governor": _summary(state.governors.values()),
           "jetson_clocks": {True: "on", False: "off", None: "unknown"}[state.clocks_pinned]}
    for change in changes:
        change.after = now[change.name] if now[change.name] != "unknown" else change.after
        if change.after != change.wanted:
            raise EdgeTQSError(f"{t.board.name}: {change.name} is {change.after} after setting it to {change.wanted}",
                               "something on the board resets it (another power manager?); check it by hand")
    return changes
