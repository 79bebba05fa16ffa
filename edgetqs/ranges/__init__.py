"""Probabilistic activation ranges (METHOD.md §4) and activation fake-quant rollouts.

    from edgetqs.ranges.executor import FakeQuantEngine, QuantConfig
    from edgetqs.ranges.calibration import calibrate
    eng = FakeQuantEngine(graph, spec, QuantConfig(mode="probabilistic", act_bits=8, weight_bits=8,
                                                   granularity="tensor"), stride=1)
    calibrate(eng, windows)                  # static min/max, estimator priors, alpha/beta (8 windows is plenty)
    traj = eng.rollout(contexts, horizon)    # weight + activation fake-quantized rollout
    eng.set_mode("dynamic")                  # float | static | dynamic | probabilistic

    from edgetqs.ranges.report import miss_rates, working_memory, weight_histograms
    from edgetqs.ranges.export import estimator_ranges, write_ranges_json

Modules: ``moments`` (closed-form and Gaussian moment rules), ``estimator``
(per-site predicted moments and intervals), ``executor`` (the quantizing
engine, three modes), ``calibration``, ``report``, ``export``.
"""
