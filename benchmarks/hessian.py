"""Curvature from products: what a Hessian-vector product costs, how many products the top
eigenvalues need, and when stochastic Lanczos quadrature beats a dense eigendecomposition.

Everything is timed in one process and reported as ratios (to a gradient, or between methods),
so the numbers compare across machines. Run:

    python benchmarks/hessian.py            # the tables, in Markdown
    python benchmarks/hessian.py --quick    # fewer seeds and sizes (a smoke test)

Setup: MNIST-1D (4,000 training samples, full batch), ReLU MLPs trained with Adam, mean
softmax cross-entropy. The eigenvalue comparison uses a 40-64-64-10 MLP (7,434 parameters).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.flatten_util import ravel_pytree

from udl_jax import data, hessian, losses, models, train


def median_time(fn, repeats=7):
    """Median wall time of ``fn()`` over repeats, after one warm-up call."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def trained(widths, ds, steps=2000, seed=0):
    m = models.MLP(widths, rngs=nnx.Rngs(seed))
    m, _ = train.fit(m, ds, key=jax.random.key(seed), steps=steps, learning_rate=3e-3,
                     progress=False)
    apply_fn, params, _ = models.functional(m)
    x, y = jnp.asarray(ds.x), jnp.asarray(ds.y)

    def loss_fn(p):
        return losses.cross_entropy(apply_fn(p, x), y)

    return apply_fn, params, x, y, loss_fn


def product_costs(widths, ds):
    """Gradient and products on flat vectors, each jitted; times interleaved in 3 rounds."""
    apply_fn, params, x, y, loss_fn = trained(widths, ds, steps=200)
    flat, unravel = ravel_pytree(params)
    v = jax.random.normal(jax.random.key(1), flat.shape)

    def loss_flat(f):
        return loss_fn(unravel(f))

    grad = jax.jit(jax.grad(loss_flat))
    fwd_rev = hessian.hessian_operator(loss_fn, params)
    rev_rev = jax.jit(lambda f, v: jax.grad(lambda g: jnp.vdot(jax.grad(loss_flat)(g), v))(f))
    ggn = hessian.gauss_newton_operator(apply_fn, losses.cross_entropy, params, x, y)
    fisher = hessian.fisher_operator(apply_fn, params, x)
    calls = {"grad": lambda: grad(flat), "fwd_rev": lambda: fwd_rev(v),
             "rev_rev": lambda: rev_rev(flat, v), "ggn": lambda: ggn(v),
             "fisher": lambda: fisher(v)}
    t = {name: [] for name in calls}
    for _ in range(3):  # interleave, so that load on the machine hits all alike
        for name, call in calls.items():
            t[name].append(median_time(call))
    return flat.size, {name: min(val) for name, val in t.items()}


def eigen_comparison(ds, seeds, k_values, tol=1e-3, power_cap=200):
    """Products, time and true accuracy of Lanczos, eigsh and power iteration (two rules)."""
    _, params, _, _, loss_fn = trained((40, 64, 64, 10), ds)
    op = hessian.hessian_operator(loss_fn, params)
    ref, _, _ = hessian.top_eigenpairs(op, None, jax.random.key(99), k=max(k_values), tol=1e-5)
    ref = np.asarray(ref, np.float64)
    methods = {
        "Lanczos (residual)": lambda key, k: hessian.top_eigenpairs(op, None, key, k=k, tol=tol),
        "eigsh / ARPACK": lambda key, k: hessian.top_eigenpairs(op, None, key, k=k, tol=tol,
                                                                method="eigsh"),
        "power (residual)": lambda key, k: hessian.power_iteration(
            op, None, key, tol=tol, k=k, max_iter=power_cap),
        "power (PyHessian rule)": lambda key, k: hessian.power_iteration(
            op, None, key, tol=tol, k=k, stop="successive", max_iter=power_cap),
    }
    hessian.top_eigenpairs(op, None, jax.random.key(0), k=1, tol=tol)  # compile
    rows = []
    for k in k_values:
        for name, run in methods.items():
            products, times, res, err, failed = [], [], [], [], 0
            for seed in seeds[: 3 if k > 1 else None]:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", RuntimeWarning)
                    t0 = time.perf_counter()
                    vals, vecs, n = run(jax.random.key(seed), k)
                    times.append(time.perf_counter() - t0)
                failed += any(issubclass(w.category, RuntimeWarning) for w in caught)
                vals = np.sort(np.asarray(vals, np.float64))[::-1]
                products.append(n)
                rel = hessian.residual_norms(op, None, vals, vecs[np.argsort(-np.asarray(vals))])
                res.append(float(np.max(rel / np.abs(vals))))
                err.append(float(np.max(np.abs(vals - ref[:k]) / np.abs(ref[:k]))))
            rows.append((k, name, products, times, res, err, failed))
    return op.size, ref, rows


def slq_vs_dense(ds, widths_list, num_probes=4, num_iter=64):
    """Wall time of a dense Hessian + eigh against SLQ, as the model grows."""
    rows = []
    for w in widths_list:
        widths = (40, w, 10)
        _, params, _, _, loss_fn = trained(widths, ds, steps=300)
        op = hessian.hessian_operator(loss_fn, params)
        op(jnp.zeros(op.size))  # compile the product once for both
        t0 = time.perf_counter()
        h = np.asarray(hessian.to_dense(op), np.float64)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        exact = hessian.dense_eigenvalues(h)  # LAPACK, float64, BLAS on one thread
        t_eigh = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = hessian.slq_density(op, None, jax.random.key(0), num_probes=num_probes,
                                  num_iter=num_iter)
        t_slq = time.perf_counter() - t0
        tr_err = abs(hessian.spectral_sum(res, lambda t: t, op.size) / exact.sum() - 1)
        top_err = abs(res.nodes.max() - exact[0]) / exact[0]
        rows.append((widths, op.size, t_build, t_eigh, t_slq, tr_err, top_err))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer seeds and sizes")
    args = parser.parse_args()
    t_start = time.perf_counter()
    ds = data.mnist1d()
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cores; "
          f"MNIST-1D, {len(ds.x)} training samples, full batch.\n")

    sizes = [(40, 64, 64, 10)] if args.quick else [(40, 32, 10), (40, 64, 64, 10),
                                                    (40, 128, 128, 10)]
    print("**Cost of one product, as a multiple of one gradient** (median of 7 calls, best of "
          "3 interleaved rounds)\n")
    print("| MLP | P | gradient (ms) | Hv fwd-over-rev | Hv rev-over-rev | Gauss-Newton Gv | "
          "Fisher Fv |")
    print("|---|---|---|---|---|---|---|")
    for widths in sizes:
        p, t = product_costs(widths, ds)
        g = t["grad"]
        print(f"| {'-'.join(map(str, widths))} | {p:,} | {1e3 * g:.2f} | "
              f"{t['fwd_rev'] / g:.2f}x | {t['rev_rev'] / g:.2f}x | {t['ggn'] / g:.2f}x | "
              f"{t['fisher'] / g:.2f}x |")

    seeds = list(range(2 if args.quick else 5))
    p, ref, rows = eigen_comparison(ds, seeds, (1, 5))
    print(f"\n**Top eigenvalues of the Hessian of a trained 40-64-64-10 MLP (P = {p:,})**, "
          f"tolerance 1e-3, {len(seeds)} random starts for k = 1 and 3 for k = 5; reference "
          f"eigenvalues "
          f"{np.array2string(ref, precision=3)} (Lanczos, residual 1e-5). Residual = max over "
          "the k pairs of the true ||Hv - lambda v|| / |lambda| (one extra product each, not "
          "counted); error = max relative eigenvalue error. Power iteration capped at 200 "
          "products per pair.\n")
    print("| k | method | products (min-max) | time (s, median) | residual (max) | "
          "eigenvalue error (max) | runs that met the rule |")
    print("|---|---|---|---|---|---|---|")
    for k, name, products, times, res, err, failed in rows:
        print(f"| {k} | {name} | {min(products)}-{max(products)} | {np.median(times):.3f} | "
              f"{max(res):.1e} | {max(err):.1e} | {len(products) - failed}/{len(products)} |")

    widths_list = [8, 16] if args.quick else [8, 16, 32, 64]
    print("\n**Spectral density: dense Hessian + `eigh` (float64) against SLQ** (4 probes x 64 "
          "Lanczos steps = 256 products, whatever P); one-hidden-layer MLPs\n")
    print("| MLP | P | dense: build (s) | dense: eigh (s) | SLQ (s) | dense / SLQ | "
          "SLQ trace error | SLQ top-eigenvalue error |")
    print("|---|---|---|---|---|---|---|---|")
    for widths, p, t_build, t_eigh, t_slq, tr_err, top_err in slq_vs_dense(ds, widths_list):
        print(f"| {'-'.join(map(str, widths))} | {p:,} | {t_build:.2f} | {t_eigh:.2f} | "
              f"{t_slq:.2f} | {(t_build + t_eigh) / t_slq:.2f} | {tr_err:.1e} | {top_err:.1e} |")
    print(f"\nTotal {time.perf_counter() - t_start:.0f} s.")


if __name__ == "__main__":
    main()
