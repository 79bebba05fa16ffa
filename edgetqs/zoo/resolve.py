"""What every command's MODEL argument means: a model file or directory (through
model intake) or ``zoo:NAME`` (a zoo model, trained on first use).

This lives above ``edgetqs.model``: intake knows files, not the zoo.
"""

from __future__ import annotations

import os

from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import RolloutSpec
from edgetqs.model.intake import CanonicalModel
from edgetqs.model.intake import load_model as load_model_file
from edgetqs.zoo import build

ZOO_PREFIX = "zoo:"


def load_model(model: str | os.PathLike | CanonicalModel, rollout: RolloutSpec | None = None) -> CanonicalModel:
    """The canonical model for ``model``: a CanonicalModel (returned as is), a path, or ``zoo:NAME``."""
    if isinstance(model, CanonicalModel):
        return model
    text = str(model)
    if not text.startswith(ZOO_PREFIX):
        return load_model_file(model, rollout)
    canonical = build(text.removeprefix(ZOO_PREFIX))
    _check_zoo_rollout(canonical, rollout)
    return canonical


def _check_zoo_rollout(model: CanonicalModel, rollout: RolloutSpec | None) -> None:
    """A zoo model knows its rollout spec; a different one given on the command line is a mistake."""
    spec = model.card.rollout
    if rollout is not None and (rollout.window, rollout.features, rollout.patch) != (spec.window, spec.features, spec.patch):
        raise EdgeTQSError(f"--rollout window={rollout.window},features={rollout.features},patch={rollout.patch} does not "
                           f"match {model.card.name} (window={spec.window},features={spec.features},patch={spec.patch})",
                           "leave out --rollout for zoo models: they carry their spec")
