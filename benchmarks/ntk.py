"""What an empirical NTK costs: structured (layer by layer), Jacobian contraction and NTK-vector
products, against each other, against this CPU's matrix-product rate, and against the analytic
infinite-width kernel.

Every method is compiled for the whole kernel in one block (``chunk_size=N``) and timed in one
process; times are reported as ratios to the structured kernel, so they compare across machines.
For each compiled kernel XLA reports the floating-point operations it performs and the memory it
allocates (arguments, outputs and temporaries: the peak of its buffer plan), so the table also
says how close each method runs to the rate of a large float32 matrix product measured in the same
run. Run:

    python benchmarks/ntk.py            # the tables, in Markdown
    python benchmarks/ntk.py --quick    # two small cases (a smoke test)

Setup: ReLU MLPs 40-n-n-10 in NTK parametrization (`udl_jax.models.MLP`), N random Gaussian
inputs, full kernels (N, N, 10, 10). Novak et al. (2022), "Fast finite width neural tangent
kernel", Sec. 3, derive the costs compared here.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from udl_jax import models, ntk


def median_time(fn, *args, repeats=5, budget=10.0):
    """Median wall time of ``fn(*args)`` (already compiled) over at most ``repeats`` calls,
    fewer when a call is slow, so that one measurement takes about ``budget`` seconds."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t0
    times = [first]
    for _ in range(max(0, min(repeats - 1, int(budget / max(first, 1e-9))))):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def compiled_stats(compiled):
    """(flops, bytes): XLA's operation count and the peak of its buffer plan."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    mem = compiled.memory_analysis()
    peak = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
            - mem.alias_size_in_bytes)
    return float(cost.get("flops", np.nan)), int(peak)


def matmul_rate(n=4096):
    """FLOP/s of one jitted float32 (n, n) @ (n, n) product on this machine."""
    a = jax.random.normal(jax.random.key(0), (n, n))
    b = jax.random.normal(jax.random.key(1), (n, n))
    f = jax.jit(jnp.matmul).lower(a, b).compile()
    flops, _ = compiled_stats(f)
    return flops / median_time(f, a, b, repeats=7)


def kernels(width, n_inputs, methods):
    """Compile and time each method's full kernel; return {method: (seconds, flops, bytes)} and
    the largest relative difference from the structured kernel."""
    model = models.MLP((40, width, width, 10), parametrization="ntk", rngs=nnx.Rngs(0))
    apply_fn, params, _ = models.functional(model)
    x = jax.random.normal(jax.random.key(1), (n_inputs, 40))
    fns = {
        "structured": lambda p, x: ntk.mlp_ntk(model, x, params=p, chunk_size=n_inputs),
        "jacobian": lambda p, x: ntk.empirical_ntk(apply_fn, p, x, chunk_size=n_inputs,
                                                   method="jacobian"),
        "ntvp": lambda p, x: ntk.empirical_ntk(apply_fn, p, x, chunk_size=n_inputs,
                                               method="ntvp"),
    }
    out, values = {}, {}
    for name in methods:
        compiled = jax.jit(fns[name]).lower(params, x).compile()
        flops, peak = compiled_stats(compiled)
        seconds = median_time(compiled, params, x)
        out[name] = (seconds, flops, peak)
        values[name] = np.asarray(compiled(params, x), np.float64)
    ref = values["structured"]
    scale = np.max(np.abs(ref))
    err = max(float(np.max(np.abs(v - ref)) / scale) for v in values.values())
    return model, x, out, err


def analytic_cost(model, x):
    """Seconds for the analytic NNGP + NTK (float64 NumPy) of the same architecture."""
    return median_time(lambda: ntk.analytic_kernels(model, x), repeats=7)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two small cases")
    args = parser.parse_args()
    if args.quick:
        cases = [(128, 32, ("structured", "jacobian", "ntvp")),
                 (256, 64, ("structured", "jacobian", "ntvp"))]
    else:
        cases = [(128, 64, ("structured", "jacobian", "ntvp")),
                 (512, 64, ("structured", "jacobian", "ntvp")),
                 (512, 256, ("structured", "jacobian", "ntvp")),
                 (1024, 64, ("structured", "jacobian", "ntvp")),
                 (2048, 256, ("structured",)),  # contraction and products: tens of GB here
                 (512, 1024, ("structured",))]
    rate = matmul_rate()
    print(f"JAX {jax.__version__}, {jax.devices()[0].platform}, "
          f"{jax.device_count()} device(s); float32 4096^3 matmul: {rate / 1e9:.1f} GFLOP/s\n")
    print("| MLP | N | params | method | time (s) | × structured | GFLOP | % of matmul rate "
          "| XLA peak (MB) | analytic / structured |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for width, n_inputs, methods in cases:
        model, x, res, err = kernels(width, n_inputs, methods)
        n_params = models.param_count(models.functional(model)[1])
        t_ref = res["structured"][0]
        t_analytic = analytic_cost(model, x)
        for name in methods:
            seconds, flops, peak = res[name]
            ratio = t_analytic / t_ref if name == "structured" else None
            print(f"| 40-{width}-{width}-10 | {n_inputs} | {n_params:,} | {name} | "
                  f"{seconds:.3g} | {seconds / t_ref:.3g} | {flops / 1e9:.3g} | "
                  f"{100 * flops / seconds / rate:.0f} | {peak / 2**20:.4g} | "
                  f"{'' if ratio is None else f'{ratio:.2g}'} |")
        assert err < 1e-4, f"methods disagree: relative difference {err:.2e}"
    print("\nAll methods agree with the structured kernel to a relative 1e-4 (float32).")


if __name__ == "__main__":
    main()
