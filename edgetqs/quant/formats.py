"""Weight formats a unit can be assigned, as data.

A format is what the planner allocates and the converter emits. Which formats
a given runtime *executes correctly* per op is decided by the conformance
matrix (planner/conformance.py), not here.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgetqs.errors import EdgeTQSError


@dataclass(frozen=True)
class WeightFormat:
    name: str
    bits: int  # bits per stored weight value
    kind: str  # "float" or "int"
    granularity: str  # "tensor", "channel" or "block"
    block_size: int = 0  # values per scale for blockwise formats

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def tflite_type(self) -> str:
        """The tensor type the .tflite stores these weights as (FLOAT16, INT4, ...)."""
        return f"{'FLOAT' if self.is_float else 'INT'}{self.bits}"


FORMATS: dict[str, WeightFormat] = {
    f.name: f
    for f in (
        WeightFormat("fp32", 32, "float", "tensor"),
        WeightFormat("fp16", 16, "float", "tensor"),
        WeightFormat("int8", 8, "int", "channel"),
        WeightFormat("int4", 4, "int", "channel"),
        WeightFormat("int2", 2, "int", "channel"),
        WeightFormat("int8_b32", 8, "int", "block", 32),
        WeightFormat("int4_b32", 4, "int", "block", 32),
        WeightFormat("int4_b64", 4, "int", "block", 64),
    )
}

# Cheapest to most precise, the order allocators walk.
DEFAULT_LADDER = ("int2", "int4", "int8", "fp16", "fp32")


def get_format(name: str) -> WeightFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise EdgeTQSError(
            f"unknown weight format '{name}'", f"use one of: {', '.join(FORMATS)}"
        ) from None
