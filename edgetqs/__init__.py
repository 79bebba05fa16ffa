"""edgetqs: trajectory-based quantization sensitivity for autoregressive forecasters on edge boards.

The public Python API (edgetqs/api.py) is re-exported here::

    import edgetqs
    model = edgetqs.load("zoo:mlp-sunspots")
    scores = model.score(method="tqs-quant", horizon=8, windows=4)
    plan = model.plan(scores, budget="12KiB")
    result = model.convert(plan, "mlp-sunspots.bundle")
"""

__version__ = "0.1.0"

# The API pulls in TensorFlow, AI Edge Quantizer and paramiko; loading it on first use keeps
# `import edgetqs` (and so every `edgetqs --help`) fast.
_API = ("Model", "load", "score", "plan", "convert", "board", "flash", "validate", "methods", "backends",
        "ScoreFile", "Plan", "ConversionResult", "EdgeTQSError")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from edgetqs import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgetqs' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
