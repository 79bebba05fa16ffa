"""The zoo's catalogue: which architecture learns which system, and how."""

from __future__ import annotations

from dataclasses import dataclass, field

# Bump to retrain every zoo model (changes the cache directory names).
ZOO_VERSION = 7


@dataclass(frozen=True)
class ZooEntry:
    name: str  # <arch>-<system>[-variant]
    arch: str  # mlp | gru | lstm | transformer | tcn
    system: str  # lorenz96 | ks | sunspots | co2 | duffing (with covariates: zoo/data.py SYSTEMS)
    window: int
    patch: int = 1  # output steps per model call (> 1: [batch, patch, features] output)
    # keras | onnx (trained in torch, exported by torch.onnx) | pytorch (trained in torch, saved by torch.export)
    source_format: str = "keras"
    arch_options: dict = field(default_factory=dict, hash=False)
    epochs: int = 8
    horizon: int = 50  # steps of the float rollout quality check
    seed: int = 0
    shift_copies: int = 3  # cyclic-shift copies of the training data (periodic systems only)
    input_noise: float = 0.03  # std of the noise added to training windows (normalised units)
    description: str = ""
    tier: str = "core"  # core: CI builds and tests it; deep: many units, trained on demand (minutes, see DEEP)


ENTRIES = [
    ZooEntry("mlp-lorenz96", "mlp", "lorenz96", 4, arch_options={"width": 128, "blocks": 2}, epochs=4, horizon=100),
    ZooEntry("gru-lorenz96", "gru", "lorenz96", 4, arch_options={"units": 64}, epochs=3, horizon=100),
    ZooEntry("transformer-lorenz96", "transformer", "lorenz96", 4, arch_options={"dim": 32, "heads": 2}, epochs=3, horizon=100),
    ZooEntry("tcn-lorenz96", "tcn", "lorenz96", 4, arch_options={"channels": 32, "dilations": (1, 2)}, epochs=3, horizon=100),
    ZooEntry("mlp-ks", "mlp", "ks", 4, arch_options={"width": 512, "blocks": 2}, epochs=3, horizon=100, shift_copies=2,
             description="the large one (>1M parameters), for speed work"),
    ZooEntry("gru-ks", "gru", "ks", 4, arch_options={"units": 64}, epochs=3, horizon=100),
    ZooEntry("transformer-ks", "transformer", "ks", 4, arch_options={"dim": 32, "heads": 2}, epochs=3, horizon=100),
    ZooEntry("tcn-ks", "tcn", "ks", 4, arch_options={"channels": 32, "dilations": (1, 2)}, epochs=3, horizon=100,
             input_noise=0.1),  # with less noise a quarter of its rollouts blew up
    ZooEntry("mlp-lorenz96-patch4", "mlp", "lorenz96", 8, patch=4, arch_options={"width": 128, "blocks": 2}, epochs=4,
             horizon=100, description="emits 4 steps per call: exercises patch feedback"),
    ZooEntry("mlp-sunspots", "mlp", "sunspots", 12, arch_options={"width": 32, "blocks": 1}, epochs=40, horizon=30),
    ZooEntry("gru-sunspots", "gru", "sunspots", 12, arch_options={"units": 16}, epochs=40, horizon=30),
    ZooEntry("lstm-sunspots", "lstm", "sunspots", 12, arch_options={"units": 16}, epochs=40, horizon=30,
             description="Keras LSTM saved with default settings (unroll=False): unrolled at intake"),
    ZooEntry("tcn-sunspots", "tcn", "sunspots", 12, arch_options={"channels": 16, "dilations": (1, 2, 4)}, epochs=40, horizon=30),
    ZooEntry("mlp-sunspots-onnx", "mlp", "sunspots", 12, source_format="onnx", arch_options={"width": 32},
             epochs=200, horizon=30, description="trained in torch, exported by torch.onnx, intake via onnx2tf"),
    ZooEntry("gru-sunspots-torch", "gru", "sunspots", 12, source_format="pytorch", arch_options={"units": 16},
             epochs=200, horizon=30, description="nn.GRU trained in torch, saved by torch.export, intake via litert-torch"),
    ZooEntry("patchtst-sunspots-torch", "patchtst", "sunspots", 12, source_format="pytorch",
             arch_options={"patch_len": 4, "dim": 16, "heads": 2}, epochs=200, horizon=30,
             description="PatchTST-style encoder trained in torch, saved by torch.export, intake via litert-torch"),
    ZooEntry("mlp-duffing", "mlp", "duffing", 8, arch_options={"width": 64, "blocks": 1}, epochs=6, horizon=50,
             description="reads the driving force's phase (cos, sin) as covariates, predicts position and velocity"),
    ZooEntry("mlp-co2", "mlp", "co2", 52, arch_options={"width": 64, "blocks": 1}, epochs=20, horizon=104),
    ZooEntry("tcn-co2", "tcn", "co2", 52, arch_options={"channels": 16, "dilations": (1, 4, 16)}, epochs=20, horizon=104),
    ZooEntry("transformer-co2", "transformer", "co2", 52, arch_options={"dim": 16, "heads": 2}, epochs=20, horizon=104),
]
# Deep models (issue 13): >= 24 weighted units and 1-10 M parameters, so that
# allocation is a real choice. Training takes a minute or more each on 2 cores:
# they are outside CI's path (tier "deep"; `edgetqs zoo build --tier deep`).
DEEP = [
    ZooEntry("mlp-lorenz96-deep", "mlp", "lorenz96", 4, arch_options={"width": 256, "blocks": 12}, epochs=4,
             horizon=100, tier="deep", description="12 residual blocks: 26 Dense units, chaotic system"),
    ZooEntry("transformer-ks-deep", "transformer", "ks", 4, arch_options={"dim": 160, "heads": 4, "blocks": 6},
             epochs=3, horizon=100, shift_copies=2, tier="deep",
             description="6 layers, separate q/k/v/o/FFN tensors: 38 units, chaotic system"),
    ZooEntry("tcn-co2-deep", "tcn", "co2", 32, arch_options={"channels": 128, "dilations": (1, 2, 4, 8) * 3},
             epochs=8, horizon=104, tier="deep", description="12 residual blocks: 26 Conv units, forgets its errors"),
]
ENTRIES = ENTRIES + DEEP
TIERS = ("core", "deep", "all")
BY_NAME = {entry.name: entry for entry in ENTRIES}
