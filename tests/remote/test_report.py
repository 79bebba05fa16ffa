"""The validation report: one self-contained HTML page with its plots inlined."""

from __future__ import annotations

import base64
import dataclasses
import re

import pytest
from tests.remote.forecast_bundle import build_forecaster, write_forecast_bundle

from edgetqs.bundle import load_bundle
from edgetqs.remote.report import write_report
from edgetqs.remote.validate import judge, run_locally
from edgetqs.runtimes import DEFAULT_HOST_RUNTIME

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    bundle = write_forecast_bundle(tmp / "bundle", build_forecaster())
    board = run_locally(bundle, tmp / "board", threads=1)
    host = run_locally(bundle, tmp / "host")
    return load_bundle(bundle), board, host


def inlined_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(b64) for b64 in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_report_is_self_contained_with_every_plot_and_fact(runs, tmp_path):
    bundle, board, host = runs
    validation = judge(bundle, board, host, board_name="pi-kitchen")
    path = write_report(validation, tmp_path / "out" / "report.html")
    page = path.read_text()

    pngs = inlined_pngs(page)
    assert len(pngs) == 3 and all(png.startswith(PNG_MAGIC) and len(png) > 5000 for png in pngs)
    for alt in ("rollout error per horizon step", "latency histogram", "peak memory"):
        assert f'alt="{alt}"' in page
    assert 'class="verdict pass">PASS' in page and "pi-kitchen" in page
    assert DEFAULT_HOST_RUNTIME.module in page and DEFAULT_HOST_RUNTIME.version in page  # the runtime
    assert f"{board.results['latency_ms']['p50']:.4g}" in page  # latency percentiles table
    assert bundle.model_sha256 in page
    assert "http" not in page.replace("http-equiv", "")  # nothing fetched from elsewhere
    assert not list(path.parent.glob("*.partial"))


def test_report_of_a_failed_validation_shows_why(runs, tmp_path):
    bundle, board, host = runs
    # What the runner leaves when the board's numbers differ: other outputs, and its agreement saying so.
    agreement = dict(board.results["probes"], max_abs=0.5, normalised=0.5)
    wrong = dataclasses.replace(board, probe_outputs=board.probe_outputs + 0.5,
                                results=dict(board.results, probes=agreement))
    validation = judge(bundle, wrong, host, board_name="pi-shed")
    page = write_report(validation, tmp_path / "report.html").read_text()
    assert 'class="verdict fail">FAIL' in page
    assert "computes different numbers than the host" in page


def test_rollout_error_plot_says_exact_match_when_every_error_is_zero(runs):
    """All-zero errors used to give an empty log-scale axis; now a linear one that says so."""
    from edgetqs.remote.report import error_curves_figure

    bundle, board, host = runs
    same = judge(bundle, host, host)
    assert not any(same.vs_host.rmse_per_step)
    exact = dataclasses.replace(same, vs_float=same.vs_host, host_vs_float=same.vs_host, vs_truth=None)
    axis = error_curves_figure(exact).axes[0]
    assert axis.get_yscale() == "linear"
    assert any("exact match" in text.get_text() for text in axis.texts)
    assert all(len(line.get_ydata()) and not any(line.get_ydata()) for line in axis.get_lines())
    assert error_curves_figure(same).axes[0].get_yscale() == "log"  # real errors keep the log axis
