"""Probe perturbations (METHOD.md §2) and the divergence they cause.

- quant: ``delta = Q_b(W) - W``, the reference quantizer's residual at the probe
  bit-width (per output channel, see quantizers.py);
- gauss: ``delta ~ N(0, s^2)`` per tensor, ``s`` the RMS of that tensor's quant
  residual. The noise is seeded by (seed, tensor name), so a unit's delta does
  not depend on chunking or on which backend rolls it out.
"""

from __future__ import annotations

import zlib

import numpy as np

from edgetqs.quant.quantizer import probe_format, residual
from edgetqs.tqs.units import Unit

PROBE_CHOICES = ("quant", "gauss", "both")

# A perturbed trajectory that overflows still diverged: its distance is pinned
# to the largest float32 instead of poisoning the mean with inf/NaN.
DIVERGED_DISTANCE = float(np.finfo(np.float32).max)
# Residuals this small relative to the weights are float32 round-off of an exact grid.
ROUNDOFF_RELATIVE = 1e-6
# log() of an exactly-zero distance (a unit that never reaches the output).
ZERO_DISTANCE = 1e-30


def probes_for(choice: str) -> list[str]:
    return ["quant", "gauss"] if choice == "both" else [choice]


def unit_delta(unit: Unit, weights: dict[str, np.ndarray], probe: str, bits: int, seed: int,
               residuals: dict | None = None) -> dict[str, np.ndarray]:
    """Tensor name -> perturbation for one unit and one probe.

    ``residuals``: an optional cache of quant residuals shared across calls, so
    the two probes of a sweep quantize each tensor once.
    """
    fmt = probe_format(bits)
    delta = {}
    for name in unit.weight_tensors:
        key = (name, bits, unit.channel_axes.get(name, 0))
        quant_residual = residuals.get(key) if residuals is not None else None
        if quant_residual is None:
            quant_residual = _snap_roundoff(residual(weights[name], fmt, key[2]), weights[name])
            if residuals is not None:
                residuals[key] = quant_residual
        if probe == "quant":
            delta[name] = quant_residual
        else:
            rms = float(np.sqrt(np.mean(np.square(quant_residual, dtype=np.float64))))
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            delta[name] = (rms * rng.standard_normal(quant_residual.shape)).astype(np.float32)
    return delta


def _snap_roundoff(quant_residual: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """A residual at float32 round-off is an exact quantization: make it exactly zero.

    A tensor with one weight per output channel (a 1-feature input projection,
    a 1x1 conv on one channel) sits on the per-channel grid by construction;
    its residual is a few ulps of ``q * scale`` vs ``w``, and scoring that
    noise would rank it at random. Zeroed, the unit scores the floor and is dead:
    quantizing it at the probe format costs nothing.
    """
    if np.linalg.norm(quant_residual) <= ROUNDOFF_RELATIVE * np.linalg.norm(weights):
        return np.zeros_like(quant_residual)
    return quant_residual


def delta_norm(delta: dict[str, np.ndarray]) -> float:
    return float(np.sqrt(sum(np.sum(np.square(d, dtype=np.float64)) for d in delta.values())))


def step_distances(perturbed: np.ndarray, reference: np.ndarray, patch: int) -> np.ndarray:
    """d_t per model call: ``[..., K, T*patch, F]`` vs ``[K, T*patch, F]`` -> ``[..., K, T]``.

    Each model call emits one patch; d_t is the norm of the difference over that patch.
    """
    diff = perturbed.astype(np.float64) - reference.astype(np.float64)
    steps = reference.shape[-2] // patch
    diff = diff.reshape(*diff.shape[:-2], steps, patch * diff.shape[-1])
    with np.errstate(over="ignore", invalid="ignore"):
        d = np.sqrt(np.sum(diff * diff, axis=-1))
    return np.where(np.isfinite(d), d, DIVERGED_DISTANCE)


def gamma_from_distances(d_final: np.ndarray, norm: float, horizon: int) -> float:
    """mean over windows of (1/T) log(d_T / ||delta||).

    A zero perturbation (weights already on the quantizer's grid) moves nothing:
    it scores the floor log(ZERO_DISTANCE) / T, and the unit comes out dead.
    """
    if norm <= 0:
        return float(np.log(ZERO_DISTANCE) / horizon)
    d = np.maximum(d_final, ZERO_DISTANCE)
    return float(np.mean(np.log(d / max(norm, ZERO_DISTANCE))) / horizon)
