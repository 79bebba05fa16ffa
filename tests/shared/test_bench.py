"""`make bench` runs a script that exists, and every benchmark it names exists too."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_make_bench_runs_a_script_that_exists():
    recipe = re.search(r"^bench:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    assert recipe, "the Makefile has no bench target"
    scripts = re.findall(r"(benchmarks/\S+\.py)", recipe.group(1))
    assert scripts and all((ROOT / s).is_file() for s in scripts), scripts


def test_run_all_lists_only_existing_benchmarks_with_their_quick_arguments():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--list"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) >= 6
    for line in lines:
        script = line.split()[0]
        assert (ROOT / script).is_file(), line
    assert any("evaluate.py --quick" in line for line in lines)
    refused = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--only", "nope", "--list"],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert refused.returncode != 0 and "known:" in refused.stderr
