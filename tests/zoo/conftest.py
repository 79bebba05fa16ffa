"""Zoo models built once per session (and cached in $EDGETQS_CACHE across runs,
shared with the other areas' tests): one Keras, one ONNX-exported."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def keras_zoo_model():
    from edgetqs import zoo

    return zoo.build("mlp-lorenz96")


@pytest.fixture(scope="session")
def onnx_zoo_model():
    from edgetqs import zoo

    return zoo.build("mlp-sunspots-onnx")
