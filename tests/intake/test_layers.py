"""edgetqs.model sits below the zoo: importing intake and every format reader
must not pull in edgetqs.zoo (or anything above the model layer)."""

import subprocess
import sys

from edgetqs.model.formats import FORMATS


def test_model_layer_imports_nothing_above_it():
    modules = ["edgetqs.model.intake"] + [f"edgetqs.model.formats.{name}" for name in FORMATS]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules) +
            "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('edgetqs.')}))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # quant (op descriptions, formats) is a lower layer than model in docs/ARCHITECTURE.md's layering
    assert set(eval(loaded)) <= {"errors", "files", "quant", "model"}  # noqa: S307 - our own subprocess's list literal


def test_every_format_in_the_table_converts_by_its_own_module():
    for name, source_format in FORMATS.items():
        assert source_format.convert.__module__ == f"edgetqs.model.formats.{name}"
