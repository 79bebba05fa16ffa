"""Reports (working memory, weight histograms) and the `edgetqs ranges` command."""

import argparse
import json

import numpy as np
import pytest

from edgetqs.cli import ranges as ranges_cli
from edgetqs.ranges.calibration import calibrate
from edgetqs.ranges.executor import FakeQuantEngine, QuantConfig
from edgetqs.ranges.export import read_ranges_json
from edgetqs.ranges.report import weight_histograms, working_memory


def test_working_memory_static_is_smallest_and_dynamic_grows_with_the_activations(standin_graphs, spec):
    for name, graph in standin_graphs.items():
        memory = working_memory(FakeQuantEngine(graph, spec, QuantConfig("dynamic")))
        assert memory["static"] < memory["dynamic"], name
        assert memory["static"] < memory["probabilistic"] <= memory["hybrid"], name
    # the attention stand-in holds [16, 16] score maps per head: buffering them costs more than the statistics
    attention = working_memory(FakeQuantEngine(standin_graphs["attention"], spec, QuantConfig("dynamic")))
    assert attention["probabilistic"] < attention["dynamic"]


def test_layer_weight_statistics_cost_two_floats_per_layer(standin_graphs, spec):
    graph = standin_graphs["tcn"]
    by_channel = working_memory(FakeQuantEngine(graph, spec, QuantConfig("dynamic")))
    engine = FakeQuantEngine(graph, spec, QuantConfig("dynamic"), per_channel_weights=False)
    by_layer = working_memory(engine)
    layers = len(engine.estimator.weight_stats)
    assert by_layer["probabilistic"] == by_layer["static"] + 8 * layers + 12
    assert by_layer["probabilistic"] < by_channel["probabilistic"]
    assert by_layer["probabilistic"] < by_layer["dynamic"]


def test_unrolled_rnn_counts_its_shared_weight_statistics_once(standin_graphs, spec):
    engine = FakeQuantEngine(standin_graphs["gru"], spec, QuantConfig("dynamic"))
    memory = working_memory(engine)
    shared = {n.inputs[1] for n in engine.estimator.nodes if n.index in engine.estimator.weight_stats}
    assert len(shared) < len(engine.estimator.weight_stats)  # 16 time steps read the same kernels
    stats_bytes = memory["probabilistic"] - memory["static"] - 12
    assert stats_bytes == sum(8 * engine.constants[w].shape[1] for w in shared)


def test_weight_histograms_png(standin_graphs, spec, tmp_path):
    engine = FakeQuantEngine(standin_graphs["tcn"], spec, QuantConfig("dynamic", weight_bits=None))
    path = weight_histograms(engine, tmp_path / "w.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.tmp*"))


def _run_cli(argv):
    parser = argparse.ArgumentParser()
    ranges_cli.register(parser.add_subparsers())
    args = parser.parse_args(["ranges", *argv])
    return args.func(args)


@pytest.mark.slow
def test_ranges_command_writes_ranges_report_and_png(standin_dir, standin_graphs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGETQS_CACHE", str(tmp_path / "cache"))
    model = standin_dir / "mlp.tflite"
    out = tmp_path / "mlp.ranges.json"
    assert _run_cli([str(model), "-o", str(out), "--windows", "4", "--horizon", "3", "--compare", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    ranges = read_ranges_json(out)
    assert len(ranges) == len(summary["miss"])
    assert all(low <= 0 <= high for low, high in ranges.values())
    assert {row["mode"] for row in summary["comparison"]} == {"float", "static", "dynamic", "probabilistic", "hybrid"}
    report = json.loads((tmp_path / "mlp.ranges.report.json").read_text())
    assert report["memory_bytes"]["static"] > 0
    assert (tmp_path / "mlp.ranges.weights.png").exists()


def test_ranges_command_refuses_bad_counts(standin_dir, tmp_path):
    from edgetqs.errors import EdgeTQSError

    with pytest.raises(EdgeTQSError, match="at least 1"):
        _run_cli([str(standin_dir / "mlp.tflite"), "-o", str(tmp_path / "r.json"), "--windows", "0"])
