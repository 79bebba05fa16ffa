"""Where the emulated board's memory cgroup goes (emulated_board.memory_cgroup_candidates),
on the three layouts: v1, hybrid (cgroup2 mounted at /sys/fs/cgroup/unified,
memory bound to v1) and pure v2 — the files a kernel shows, faked under tmp_path."""

from __future__ import annotations

from pathlib import Path

from edgetqs.remote.emulated_board import memory_cgroup_candidates


def mountinfo(*mounts: tuple[str, str, str]) -> str:
    """/proc/self/mountinfo lines for (mount point, fs type, super options)."""
    return "".join(f"{30 + i} 23 0:{40 + i} / {point} rw,relatime - {fstype} {fstype} {options}\n"
                   for i, (point, fstype, options) in enumerate(mounts))


def controllers(directory: Path, available: str, delegated: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cgroup.controllers").write_text(available + "\n")
    (directory / "cgroup.subtree_control").write_text(delegated + "\n")
    return directory


def test_hybrid_with_memory_on_v1_uses_the_v1_hierarchy_at_its_mount(tmp_path):
    unified = controllers(tmp_path / "unified", "hugetlb")  # as on the machine this was written on
    mounts = mountinfo((str(tmp_path / "mem"), "cgroup", "rw,memory"), (str(unified), "cgroup2", "rw"))
    found = memory_cgroup_candidates("4:memory:/jobs/a\n1:cpu:/\n0::/\n", mounts)
    assert found == [tmp_path / "mem" / "jobs" / "a"]


def test_pure_v2_root_that_delegates_memory_is_the_parent(tmp_path):
    root = controllers(tmp_path / "cg", "cpu memory", delegated="memory")
    assert memory_cgroup_candidates("0::/\n", mountinfo((str(root), "cgroup2", "rw"))) == [root]


def test_pure_v2_inner_cgroup_gets_a_sibling_when_memory_reaches_it(tmp_path):
    root = controllers(tmp_path / "cg", "cpu memory", delegated="memory")
    controllers(root / "session", "memory")  # processes live here, so it cannot delegate
    assert memory_cgroup_candidates("0::/session\n", mountinfo((str(root), "cgroup2", "rw"))) == [root]


def test_v2_without_the_memory_controller_and_no_v1_gives_nothing(tmp_path):
    root = controllers(tmp_path / "cg", "cpu io")
    assert memory_cgroup_candidates("0::/\n", mountinfo((str(root), "cgroup2", "rw"))) == []


def test_a_container_mount_below_the_root_is_read_relative_to_it(tmp_path):
    line = f"35 31 0:32 /docker/abc {tmp_path / 'mem'} rw,relatime - cgroup cgroup rw,memory\n"
    assert memory_cgroup_candidates("4:memory:/docker/abc\n", line) == [tmp_path / "mem"]
