"""Sweeps on a real Dask cluster (a `dask scheduler` and two `dask worker`s on 127.0.0.1)
give the single-process sweep's scores bit for bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgetqs.errors import EdgeTQSError
from edgetqs.tqs.score import ScoreSettings, score_model

ROOT = Path(__file__).resolve().parents[2]
DASK = str(Path(sys.executable).parent / "dask")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A real scheduler and two single-threaded workers on loopback; yields the scheduler address."""
    work = tmp_path_factory.mktemp("dask")
    scheduler_file = work / "scheduler.json"
    env = dict(os.environ, NUMBA_NUM_THREADS="1", PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    common = ["--no-dashboard"]
    processes = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                   "--scheduler-file", str(scheduler_file), *common],
                                  env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        for _ in range(2):
            processes.append(subprocess.Popen([DASK, "worker", address, "--host", "127.0.0.1", "--nworkers", "1",
                                               "--nthreads", "1", *common],
                                              env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def _as_json(scores) -> str:
    return json.dumps(scores.to_dict(), sort_keys=True)


@pytest.mark.slow
def test_dask_sweep_equals_single_process_bit_for_bit(cluster):
    from edgetqs import zoo
    from edgetqs.tqs.distributed import DaskRunner

    model = zoo.build("transformer-lorenz96")
    settings = ScoreSettings(horizon=6, windows=6)  # 6 windows: chunks of 4 + 2, uneven on purpose
    local = score_model(model.graph, model.card, settings, progress=False)
    runner = DaskRunner.connect(cluster, model.graph, model.card, settings.probe_bits, settings.seed, window_chunk=4)
    try:
        remote = score_model(model.graph, model.card, settings, progress=False, runner=runner)
        workers = runner.client.run(lambda: os.getpid())
    finally:
        runner.client.close()
    assert len(set(workers.values())) == 2  # the tasks really ran in two other processes
    assert _as_json(remote) == _as_json(local)


def _in_process_and_on_dask(cluster, model, settings: ScoreSettings, window_chunk: int = 2):
    """The same sweep in this process and as tasks on the cluster (windows in chunks of ``window_chunk``)."""
    from edgetqs.tqs.distributed import DaskRunner

    local = score_model(model.graph, model.card, settings, progress=False)
    runner = DaskRunner.connect(cluster, model.graph, model.card, settings.probe_bits, settings.seed,
                                window_chunk=window_chunk)
    try:
        return local, score_model(model.graph, model.card, settings, progress=False, runner=runner)
    finally:
        runner.client.close()


@pytest.mark.slow
def test_adaptive_sweep_on_dask_equals_adaptive_in_process(cluster):
    from edgetqs import zoo

    local, remote = _in_process_and_on_dask(cluster, zoo.build("mlp-lorenz96"),
                                            ScoreSettings(horizon=16, windows=8, adaptive=True))
    assert _as_json(remote) == _as_json(local)


@pytest.mark.slow
def test_covariate_sweep_on_dask_equals_single_process(cluster, tmp_path):
    """Each window chunk's task gets its own rows of the data's covariates."""
    from edgetqs.model.card import RolloutSpec
    from edgetqs.model.intake import load_model
    from tests.engine.covariate_standin import SPEC, build_covariate_standin, write_covariate_series

    model = load_model(build_covariate_standin(tmp_path), RolloutSpec.parse(SPEC))
    settings = ScoreSettings(horizon=6, windows=5, data=write_covariate_series(tmp_path / "series.csv"))
    local, remote = _in_process_and_on_dask(cluster, model, settings)
    assert _as_json(remote) == _as_json(local)


@pytest.mark.slow
def test_resumed_adaptive_sweep_on_dask_equals_in_process(cluster, tmp_path):
    """Horizon growth resumes every task's rollouts from the windows they reached (covariates offset, window
    chunks of 3 over 4 then 8 windows: uneven): the same scores and the same work as in this process."""
    from edgetqs.model.card import RolloutSpec
    from edgetqs.model.intake import load_model
    from tests.engine.covariate_standin import SPEC, build_covariate_standin, write_covariate_series

    model = load_model(build_covariate_standin(tmp_path), RolloutSpec.parse(SPEC))
    settings = ScoreSettings(horizon=16, windows=8, adaptive=True, settled=1.0,
                             data=write_covariate_series(tmp_path / "series.csv"))
    local, remote = _in_process_and_on_dask(cluster, model, settings, window_chunk=3)
    assert any(stage.get("resumed") for stage in remote.settings["adaptive"]["stages"])
    assert _as_json(remote) == _as_json(local)


@pytest.mark.slow
def test_scheduler_setting_scores_on_the_cluster(cluster):
    from edgetqs import api

    scores = api.score("zoo:mlp-lorenz96", horizon=4, windows=4, scheduler=cluster)
    local = api.score("zoo:mlp-lorenz96", horizon=4, windows=4)
    assert _as_json(scores) == _as_json(local)


@pytest.mark.slow
def test_score_cli_with_scheduler(cluster, tmp_path):
    out = tmp_path / "scores.json"
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    result = subprocess.run([sys.executable, "-m", "edgetqs.cli.app", "score", "zoo:mlp-lorenz96", "--horizon", "4",
                             "--windows", "4", "--scheduler", cluster, "-o", str(out), "--json"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["units"]


def test_unreachable_scheduler_names_the_fix():
    from edgetqs.tqs.distributed import connect_client

    with pytest.raises(EdgeTQSError) as caught:
        connect_client("tcp://127.0.0.1:9", timeout=2)  # discard port: nothing listens
    assert "dask scheduler" in caught.value.fix


@pytest.mark.slow
def test_local_cluster_scheduler_on_loopback():
    from edgetqs import zoo

    model = zoo.build("mlp-lorenz96")
    settings = ScoreSettings(horizon=3, windows=2)
    local = score_model(model.graph, model.card, settings, progress=False)
    from dataclasses import replace

    remote = score_model(model.graph, model.card, replace(settings, scheduler="local:1"), progress=False)
    assert _as_json(remote) == _as_json(local)
