"""edgetqs: trajectory-based quantization sensitivity for autoregressive forecasters on edge boards."""

__version__ = "0.1.0"
