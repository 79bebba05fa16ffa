"""The model card: what edgetqs knows about a canonical float TFLite model.

A card holds the model's rollout spec (METHOD.md §1) and its layer table, and
is saved as JSON next to the canonical .tflite (``model.tflite`` +
``model.card.json``). Every stage after intake reads models through a card.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgetqs.errors import EdgeTQSError
from edgetqs.files import JsonKind, read_json, write_json

CARD_VERSION = 3
# [batch, window, features] and [batch, features, window]
INPUT_LAYOUTS = ("channels_last", "channels_first")

# The routes intake takes from a source to the canonical .tflite (ModelCard.intake_route): name -> what it does.
# The one list of them: converters name their route with these constants, inspect explains it from here.
TFLITE_CONVERTER = "tflite-converter"
TFLITE_CONVERTER_LOOP_FLATTENED = "tflite-converter (batch-1 tensor lists), WHILE loops flattened"
KERAS_UNROLLED = "keras unroll=True -> tflite-converter"
LITERT_TORCH = "litert-torch"
ONNX2TF = "onnx2tf"
ONNX2TORCH = "onnx2torch -> litert-torch"
AS_GIVEN = "as given"
WHILE_FLATTENED = "as given, WHILE loops flattened"
INTAKE_ROUTES = {
    TFLITE_CONVERTER: "the TFLite converter on the source graph as written",
    TFLITE_CONVERTER_LOOP_FLATTENED: "the TFLite converter on the frozen graph with its recurrent loop's tensor "
                                     "lists fixed to batch 1, then its WHILE loops copied step by step",
    KERAS_UNROLLED: "Keras recurrent layers rebuilt with unroll=True over the fixed window, then the TFLite converter",
    LITERT_TORCH: "litert-torch on the torch.export program (recurrent cells come out unrolled)",
    ONNX2TF: "onnx2tf on the ONNX graph",
    ONNX2TORCH: "onnx2torch rebuilds the ONNX graph as torch modules, litert-torch converts them",
    AS_GIVEN: "a float .tflite, checked and taken as it is",
    WHILE_FLATTENED: "a float .tflite whose WHILE loops (static trip count) are copied step by step into the main "
                     "graph, each weight kept one shared constant; checked against the file run in LiteRT",
}
# What a version-2 card's source format says about its route when only one route reads that format.
_ONLY_ROUTE = {"savedmodel": TFLITE_CONVERTER, "pytorch": LITERT_TORCH, "tflite": AS_GIVEN}

# The card carries a version but no format name (kept as it is on disk).


def _card_from_v1(document: dict) -> dict:
    """Version 1 predates covariates: every input feature was fed back."""
    document["rollout"] = {**document["rollout"], "covariates": []}
    return document


def _card_from_v2(document: dict) -> dict:
    """Version 2 predates the intake route: known where the source format has one route, else left empty."""
    route = _ONLY_ROUTE.get(document.get("source_format", ""), "")
    return {**document, "intake_route": route, "intake_note": ""}


CARD = JsonKind(None, CARD_VERSION, "model card",
                "re-run intake (`edgetqs inspect MODEL`) with this edgetqs to rebuild the card",
                upgrades={1: _card_from_v1, 2: _card_from_v2})


@dataclass
class RolloutSpec:
    """How the model is rolled out.

    The canonical model takes one input of shape ``[batch, window, features]``
    and returns ``[batch, patch, features]`` (or ``[batch, features]`` when
    ``patch == 1`` and ``output_rank == 2``). A rollout appends each output
    patch to the window and drops the oldest ``patch`` steps ("append_shift").
    """

    window: int
    features: int
    patch: int = 1
    feedback: str = "append_shift"
    output_rank: int = 3
    # Optional affine normalisation the model expects: model_input = (x - mean) / std.
    # Kept in the card so on-device code and metrics can un-normalise.
    norm_mean: list[float] | None = None
    norm_std: list[float] | None = None
    # The *source's* input layout; the canonical model always takes [batch, window, features]
    # (intake puts a TRANSPOSE in front of a channels_first source).
    input_layout: str = "channels_last"
    covariates: list[int] = field(default_factory=list)

    @property
    def fed_back(self) -> list[int]:
        """Input features the model predicts, in input order (its output's features)."""
        return [i for i in range(self.features) if i not in self.covariates]

    @property
    def outputs(self) -> int:
        """Features per output step: the fed-back ones."""
        return self.features - len(self.covariates)

    def validate(self) -> "RolloutSpec":
        problems = []
        if self.window < 1:
            problems.append(f"window must be >= 1 (got {self.window})")
        if self.features < 1:
            problems.append(f"features must be >= 1 (got {self.features})")
        if not 1 <= self.patch <= self.window:
            problems.append(f"patch must be between 1 and the window {self.window} (got {self.patch})")
        if self.feedback != "append_shift":
            problems.append(f"feedback '{self.feedback}' is unknown (known: append_shift)")
        if self.input_layout not in INPUT_LAYOUTS:
            problems.append(f"input_layout '{self.input_layout}' is unknown (known: {', '.join(INPUT_LAYOUTS)})")
        if self.output_rank not in (2, 3):
            problems.append(f"output_rank must be 2 or 3 (got {self.output_rank})")
        if self.output_rank == 2 and self.patch != 1:
            problems.append("a rank-2 output ([batch, features]) means patch 1")
        problems += self._covariate_problems()
        if problems:
            raise EdgeTQSError("invalid rollout spec: " + "; ".join(problems),
                               "give --window/--features/--patch that match the model's input and output")
        return self

    def _covariate_problems(self) -> list[str]:
        given = self.covariates
        if any(not 0 <= i < self.features for i in given) or len(set(given)) != len(given):
            return [f"covariates must be distinct feature indices 0..{self.features - 1} (got {given})"]
        if len(given) >= self.features:
            return [f"covariates {given} leave no feature to predict"]
        return []

    @classmethod
    def parse(cls, text: str) -> "RolloutSpec":
        """Parse ``window=16,features=40,patch=1`` as given on the command line."""
        values: dict[str, object] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            if not sep or key not in ("window", "features", "patch", "feedback", "output_rank", "input_layout",
                                      "covariates"):
                raise EdgeTQSError(f"cannot read rollout spec item '{part}'", _SPEC_FORM)
            values[key] = value if key in ("feedback", "input_layout", "covariates") else _int(value, part)
        if "window" not in values or "features" not in values:
            raise EdgeTQSError("a rollout spec needs at least window and features", "write window=W,features=F[,patch=P]")
        if "covariates" in values:
            values["covariates"] = _covariate_indices(str(values["covariates"]), int(values["features"]))
        return cls(**values).validate()  # type: ignore[arg-type]


_SPEC_FORM = ("write it as window=W,features=F[,patch=P][,input_layout=channels_first]"
              "[,covariates=C or covariates=i+j] (the last C features, or features i and j, are given, not predicted)")


def _int(value: str, part: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise EdgeTQSError(f"rollout spec item '{part}' is not a whole number", _SPEC_FORM) from None


def _covariate_indices(text: str, features: int) -> list[int]:
    """``covariates=2``: the last two features; ``covariates=0+3``: features 0 and 3; ``covariates=1+``: feature 1.

    (``+`` joins indices because ``,`` separates spec items.)
    """
    if "+" not in text:
        count = _int(text, f"covariates={text}")
        return list(range(features - count, features)) if count > 0 else []
    return sorted(_int(i, f"covariates={text}") for i in text.split("+") if i)


@dataclass
class LayerInfo:
    """One row of the layer table: a weighted op of the canonical TFLite model."""

    name: str  # unit name at layer granularity (stable, derived from the op's output tensor)
    op_type: str  # TFLite builtin name, e.g. FULLY_CONNECTED
    op_index: int
    weight_tensors: list[str]  # names as they appear in the .tflite
    shapes: list[list[int]]
    params: int
    float_bytes: int
    block: str = ""  # unit name at block granularity
    # The layer's main weight (kernel); the other weight_tensors are its biases.
    # weight_tensors[0] is always the main weight.
    main_weight: str = ""


@dataclass
class ModelCard:
    name: str
    source: str  # where the model came from (path or zoo:NAME)
    source_format: str  # keras | savedmodel | onnx | tflite
    tflite_path: str
    tflite_sha256: str
    rollout: RolloutSpec
    layers: list[LayerInfo] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # zoo metadata: system, training time, float rollout quality
    intake_route: str = ""  # a name in INTAKE_ROUTES ("" on an upgraded card whose route was not recorded)
    intake_note: str = ""  # why that route: e.g. what made ONNX intake leave onnx2tf for PyTorch
    version: int = CARD_VERSION

    @property
    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelCard":
        data = CARD.check(dict(data), "the model card")
        data["rollout"] = RolloutSpec(**data["rollout"])
        data["layers"] = [LayerInfo(**layer) for layer in data["layers"]]
        return cls(**data)

    def save(self, path: str | Path) -> Path:
        return write_json(path, CARD, self.to_dict(), indent=2)

    @classmethod
    def load(cls, path: str | Path) -> "ModelCard":
        data = read_json(path, CARD)
        try:
            return cls.from_dict(data)
        except (TypeError, KeyError) as exc:
            raise EdgeTQSError(f"model card {path} is missing or has unexpected fields ({exc})", CARD.fix) from exc
