"""The converter: a plan becomes a verified mixed-precision LiteRT model and a
deployment bundle. ``convert(model, plan, out)`` is the entry point; see
pipeline.py for the order of the steps and docs/ARCHITECTURE.md for the files."""

from edgetqs.converter.pipeline import ConversionResult, convert

__all__ = ["ConversionResult", "convert"]
