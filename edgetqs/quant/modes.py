"""Quantization modes: what is quantized besides the weights.

- ``weight_only``: weights stored quantized, dequantized once at load (an explicit
  DEQUANTIZE), float compute;
- ``dynamic``: integer weights, activations quantized to int8 on the fly per call;
- ``static``: integer weights and int8 activations with calibrated ranges.

A plan file stores the string value; code passes :class:`Mode` and parses
strings once, where they enter (``Mode.parse``).
"""

from __future__ import annotations

import enum

from edgetqs.errors import EdgeTQSError


class Mode(enum.StrEnum):
    WEIGHT_ONLY = "weight_only"
    DYNAMIC = "dynamic"
    STATIC = "static"

    @classmethod
    def parse(cls, text: str | Mode, where: str = "") -> Mode:
        """``text`` as a Mode, or an EdgeTQSError naming the choices (``where``: the file it came from)."""
        try:
            return cls(text)
        except ValueError:
            place = f" in {where}" if where else ""
            raise EdgeTQSError(f"unknown mode '{text}'{place}", f"use one of: {', '.join(MODE_NAMES)}") from None

    @property
    def quantizes_activations(self) -> bool:
        return self is Mode.STATIC

    @property
    def dequantizes_weights(self) -> bool:
        """The file keeps a DEQUANTIZE of every quantized weight (float compute)."""
        return self is Mode.WEIGHT_ONLY


MODE_NAMES: tuple[str, ...] = tuple(m.value for m in Mode)  # for argparse choices and messages
