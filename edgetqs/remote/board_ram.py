"""Start the emulated board's qemu inside the board's memory cgroup, charged
the same whatever the page cache holds (why: edgetqs.remote.emulated_board).

    python board_ram.py --cgroup DIR --root ROOT --stage DIR -- qemu-aarch64-static ... [--bundle B ...]

Run by the emulated board's shim with the host's Python; only the standard
library, and everything before the join happens outside the cgroup: a task
that moves keeps its pages charged where they were, and exec drops them.
  1. reads qemu, every file of the root and the bundle's, so their page-cache
     pages are charged to the caller's cgroup and never to the board's;
  2. turns transparent huge pages off for itself and qemu (inherited through
     exec): qemu asks for them for its code buffer, and how many it gets
     depends on the host's memory fragmentation (~5 MiB either way);
  3. joins the cgroup, copies the bundle to --stage (a tmpfs the shim removes
     afterwards), so the model LiteRT maps is charged to the board whole and
     cannot be reclaimed at the limit, and points --bundle at the copy;
  4. execs qemu.
"""

import ctypes
import os
import shutil
import sys

PR_SET_THP_DISABLE = 41  # <linux/prctl.h>
BLOCK = 1 << 20


def read_files(paths):
    """Read every regular file under ``paths`` (files or directories) into the page cache."""
    buffer = bytearray(BLOCK)
    for top in paths:
        for directory, _, names in os.walk(top) if os.path.isdir(top) else [("", [], [top])]:
            for name in names:
                path = os.path.join(directory, name)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                try:
                    with open(path, "rb", buffering=0) as handle:
                        while handle.readinto(buffer):
                            pass
                except OSError:
                    pass


def disable_transparent_huge_pages():
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)
    except (OSError, AttributeError):  # no glibc prctl: the host's THP setting applies
        pass


def bundle_index(command):
    """Index of the --bundle value in ``command``, or None."""
    for i, arg in enumerate(command[:-1]):
        if arg == "--bundle":
            return i + 1
    return None


def main(argv):
    split = argv.index("--")
    options, command = dict(zip(argv[:split:2], argv[1:split:2])), argv[split + 1:]
    at = bundle_index(command)
    read_files([options["--root"], shutil.which(command[0]) or command[0]] + ([command[at]] if at else []))
    disable_transparent_huge_pages()
    try:
        with open(os.path.join(options["--cgroup"], "cgroup.procs"), "w") as procs:
            procs.write(str(os.getpid()))
    except OSError as exc:
        sys.stderr.write("emulated board: cannot join the memory cgroup: %s\n" % exc)
        return 70
    if at:
        try:
            shutil.copytree(command[at], options["--stage"])
        except OSError as exc:
            sys.stderr.write("emulated board: cannot copy the bundle to %s: %s\n" % (options["--stage"], exc))
            return 70
        command[at] = options["--stage"]
    os.execvp(command[0], command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
