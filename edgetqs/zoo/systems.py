"""Simulated dynamical systems the zoo's forecasters learn: Lorenz-96,
Kuramoto–Sivashinsky and a forced Duffing oscillator. All are chaotic, so a
forecaster can only track them for a finite time — which is what makes rollout
error growth (TQS) meaningful. The Duffing oscillator is driven by a known
periodic force: its forecaster reads the force's phase as covariates.

Simulations are deterministic given a seed (the seed only picks the initial
state; integration is plain floating point on one thread).
"""

from __future__ import annotations

import numpy as np


def _sample(step, state, steps: int, sample_every: int, burn_in: int, observe) -> np.ndarray:
    """Integrate ``burn_in`` steps to reach the attractor, then record ``observe(state)``
    every ``sample_every`` integration steps, ``steps`` times."""
    for _ in range(burn_in):
        state = step(state)
    out = []
    for _ in range(steps):
        for _ in range(sample_every):
            state = step(state)
        out.append(observe(state))
    return np.asarray(out)


def lorenz96_tendency(x: np.ndarray, forcing: float) -> np.ndarray:
    """dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F, cyclic in i."""
    return (np.roll(x, -1) - np.roll(x, 2)) * np.roll(x, 1) - x + forcing


def simulate_lorenz96(steps: int, seed: int = 0, variables: int = 40, forcing: float = 8.0,
                      dt: float = 0.01, sample_every: int = 2, burn_in: int = 1000) -> np.ndarray:
    """[steps, variables] states sampled every ``dt * sample_every`` time units (RK4).

    The burn-in (in integration steps) lets the state settle on the attractor
    before sampling starts.
    """
    rng = np.random.default_rng(seed)
    x = forcing + 0.01 * rng.standard_normal(variables)

    def rk4(state):
        k1 = lorenz96_tendency(state, forcing)
        k2 = lorenz96_tendency(state + 0.5 * dt * k1, forcing)
        k3 = lorenz96_tendency(state + 0.5 * dt * k2, forcing)
        k4 = lorenz96_tendency(state + dt * k3, forcing)
        return state + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)

    return _sample(rk4, x, steps, sample_every, burn_in, observe=lambda state: state)


def _etdrk4_coefficients(linear: np.ndarray, h: float, contour_points: int = 16):
    """ETDRK4 coefficients (Kassam & Trefethen 2005), evaluated by a complex
    contour mean to avoid cancellation where the linear operator is near zero."""
    e = np.exp(h * linear)
    e2 = np.exp(h * linear / 2)
    roots = np.exp(1j * np.pi * (np.arange(1, contour_points + 1) - 0.5) / contour_points)
    lr = h * linear[:, None] + roots[None, :]
    q = h * np.real(np.mean((np.exp(lr / 2) - 1) / lr, axis=1))
    f1 = h * np.real(np.mean((-4 - lr + np.exp(lr) * (4 - 3 * lr + lr**2)) / lr**3, axis=1))
    f2 = h * np.real(np.mean((2 + lr + np.exp(lr) * (-2 + lr)) / lr**3, axis=1))
    f3 = h * np.real(np.mean((-4 - 3 * lr - lr**2 + np.exp(lr) * (4 - lr)) / lr**3, axis=1))
    return e, e2, q, f1, f2, f3


def simulate_ks(steps: int, seed: int = 0, grid_points: int = 64, length: float = 22.0,
                h: float = 0.25, sample_every: int = 4, burn_in: int = 2000) -> np.ndarray:
    """[steps, grid_points] states of u_t = -u u_x - u_xx - u_xxxx on a periodic
    domain of ``length`` (L=22: chaotic, a few unstable modes), ETDRK4 in Fourier space."""
    rng = np.random.default_rng(seed)
    x = length * np.arange(grid_points) / grid_points
    u = np.cos(2 * np.pi * x / length) * (1 + np.sin(2 * np.pi * x / length)) + 0.1 * rng.standard_normal(grid_points)
    v = np.fft.rfft(u)
    k = 2 * np.pi / length * np.fft.rfftfreq(grid_points, d=1.0 / grid_points)
    linear = k**2 - k**4
    nonlinear_factor = -0.5j * k
    e, e2, q, f1, f2, f3 = _etdrk4_coefficients(linear, h)

    def nonlinear(spectrum):
        return nonlinear_factor * np.fft.rfft(np.fft.irfft(spectrum, n=grid_points) ** 2)

    def step(v):
        nv = nonlinear(v)
        a = e2 * v + q * nv
        na = nonlinear(a)
        b = e2 * v + q * na
        nb = nonlinear(b)
        c = e2 * a + q * (2 * nb - nv)
        nc = nonlinear(c)
        return e * v + nv * f1 + 2 * (na + nb) * f2 + nc * f3

    return _sample(step, v, steps, sample_every, burn_in, observe=lambda spectrum: np.fft.irfft(spectrum, n=grid_points))


def duffing_tendency(x: float, v: float, t: float, damping: float, stiffness: float, cubic: float,
                     amplitude: float, frequency: float) -> tuple[float, float]:
    """x' = v, v' = -damping v - stiffness x - cubic x^3 + amplitude cos(frequency t)."""
    return v, -damping * v - stiffness * x - cubic * x**3 + amplitude * np.cos(frequency * t)


def simulate_duffing(steps: int, seed: int = 0, damping: float = 0.3, stiffness: float = -1.0, cubic: float = 1.0,
                     amplitude: float = 0.5, frequency: float = 1.2, dt: float = 0.01, sample_every: int = 10,
                     burn_in: int = 5000) -> np.ndarray:
    """[steps, 4]: position, velocity and the force's phase (cos, sin of frequency*t), RK4.

    The classic chaotic parameter set (two wells, strange attractor). The phase
    columns are what a user would feed as covariates: known ahead, not predicted.
    """
    rng = np.random.default_rng(seed)
    args = (damping, stiffness, cubic, amplitude, frequency)

    def rk4(state):
        x, v, t = state
        k1 = duffing_tendency(x, v, t, *args)
        k2 = duffing_tendency(x + 0.5 * dt * k1[0], v + 0.5 * dt * k1[1], t + 0.5 * dt, *args)
        k3 = duffing_tendency(x + 0.5 * dt * k2[0], v + 0.5 * dt * k2[1], t + 0.5 * dt, *args)
        k4 = duffing_tendency(x + dt * k3[0], v + dt * k3[1], t + dt, *args)
        return (x + dt / 6.0 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0]),
                v + dt / 6.0 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1]), t + dt)

    start = (1.0 + 0.1 * rng.standard_normal(), 0.1 * rng.standard_normal(), 0.0)
    return _sample(rk4, start, steps, sample_every, burn_in,
                   observe=lambda s: (s[0], s[1], np.cos(frequency * s[2]), np.sin(frequency * s[2])))
