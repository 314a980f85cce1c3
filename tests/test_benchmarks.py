"""Smoke tests: the benchmark scripts still run, on tiny cases, and their methods agree."""

import importlib.util
from pathlib import Path

import jax
import numpy as np

from udl_jax import data

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ntk_benchmark_methods_agree():
    ntk_bench = _load("ntk")
    _, _, res, err = ntk_bench.kernels(16, 6, ("structured", "jacobian", "ntvp"))
    assert err < 1e-4
    for seconds, flops, peak in res.values():
        assert seconds > 0 and flops > 0 and peak > 0
    # The contraction does more arithmetic than the structured kernel (Novak et al. 2022).
    assert res["jacobian"][1] > res["structured"][1]


def test_sweep_benchmark_ways_agree():
    sweep = _load("sweep")
    full = data.mnist1d()
    ds = full.replace(x=full.x[:200], y=full.y[:200])
    first, warm, res = sweep.package_widths(ds, [4, 8], 1, 20, None, jax.random.key(0))
    assert first > 0 and warm > 0 and res.test_error.shape == (1, 2, 2)
    total, compile_s, acc = sweep.naive(ds, res.labels, [4, 8], [0, 1], 20)
    assert total > 0 and compile_s > 0 and acc.shape == (2,)
    first, warm, acc = sweep.package_seeds(ds, res.labels, 8, 2, 20)
    assert first > 0 and warm > 0 and acc.shape == (2,)
    assert np.all((acc >= 0) & (acc <= 1))
