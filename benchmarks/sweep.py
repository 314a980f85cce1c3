"""Sweeps of many small models: the package's way (`udl_jax.train.fit_many`, one compilation,
all models vectorized) against the naive way (a fresh jitted step and a Python loop per model, so
one compilation and one sequential training per model), and against plain PyTorch.

Two sweeps, on chapter 10's data and settings (double descent: 1,000 MNIST-1D training samples,
20% label noise, Adam, 4,000 steps of batch 100):
- the chapter's width sweep, `udl_jax.sweeps.mlp_width_sweep`: one-hidden-layer ReLU MLPs 40-w-10
  for 16 widths from 1 to 256 and 3 seeds (48 networks), padded into buckets of allocated width
  16, 64 and 256 (one compilation each); also with a single bucket (everything padded to 256);
- a seeds sweep: 12 initializations of one width (64, the interpolation threshold).

Everything is timed in one process and reported as ratios (package / naive), so the numbers
compare across machines: total wall time, compile time (first call minus a warm call for the
package; the first step minus a later step, summed over models, for the naive way) and time per
model. The JAX persistent compilation cache is switched off here, so that compile times are real.
Run:

    python benchmarks/sweep.py            # the tables, in Markdown
    python benchmarks/sweep.py --quick    # fewer steps and models (a smoke test)
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from udl_jax import data, losses, models, sweeps, train

LEARNING_RATE = 3e-3  # chapter 10's settings
BATCH = 100
NOISE = 0.2
TRAIN = 1000


def package_widths(ds, widths, seeds, steps, buckets, key):
    """The chapter's call, `udl_jax.sweeps.mlp_width_sweep`, twice: (first s, warm s, result)."""
    kw = dict(key=key, seeds=seeds, label_noise=NOISE, buckets=buckets, steps=steps,
              learning_rate=LEARNING_RATE, batch_size=BATCH, log_every=steps)
    t0 = time.perf_counter()
    res = sweeps.mlp_width_sweep(ds, widths, **kw)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    sweeps.mlp_width_sweep(ds, widths, **kw)
    return first, time.perf_counter() - t0, res


def package_seeds(ds, labels, width, seeds, steps):
    """`udl_jax.train.fit_many` on ``seeds`` MLPs of one width: (first s, warm s, test acc)."""
    kw = dict(key=jax.random.key(0), steps=steps, learning_rate=LEARNING_RATE,
              labels=np.broadcast_to(labels, (seeds, len(labels))), batch_size=BATCH,
              log_every=steps, progress=False)

    def run():
        nets = [models.MLP((40, width, 10), rngs=nnx.Rngs(s)) for s in range(seeds)]
        return train.fit_many(nets, ds, **kw)[1]

    t0 = time.perf_counter()
    hist = run()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    run()
    return first, time.perf_counter() - t0, np.asarray(hist.test_accuracy)[:, -1]


def naive_one(ds, y, width, seed, steps):
    """The loop most notebooks write: a new jitted step per model, one Python call per step.
    Returns (seconds for the first step, seconds for all other steps, test accuracy)."""
    apply_fn, params, _ = models.functional(models.MLP((40, width, 10), rngs=nnx.Rngs(seed)))
    tx = optax.adam(LEARNING_RATE)
    x, y = jnp.asarray(ds.x), jnp.asarray(y)

    @jax.jit
    def step(params, opt_state, key):
        idx = jax.random.randint(key, (BATCH,), 0, x.shape[0])
        loss, g = jax.value_and_grad(
            lambda p: losses.cross_entropy(apply_fn(p, x[idx]), y[idx]))(params)
        updates, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = tx.init(params)
    keys = jax.random.split(jax.random.key(seed), steps)
    t0 = time.perf_counter()
    params, opt_state, loss = jax.block_until_ready(step(params, opt_state, keys[0]))
    t1 = time.perf_counter()
    for k in keys[1:]:
        params, opt_state, loss = step(params, opt_state, k)
    jax.block_until_ready(loss)
    t2 = time.perf_counter()
    acc = float(losses.accuracy(apply_fn(params, jnp.asarray(ds.x_test)), jnp.asarray(ds.y_test)))
    return t1 - t0, t2 - t1, acc


def naive(ds, labels, widths, seeds, steps):
    """One `naive_one` per (width, seed): (total s, compile s, test accuracies (M,))."""
    t0 = time.perf_counter()
    compile_s, accs = 0.0, []
    for w, s in zip(widths, seeds, strict=True):
        first, rest, acc = naive_one(ds, labels, w, s, steps)
        compile_s += first - rest / max(1, steps - 1)
        accs.append(acc)
    return time.perf_counter() - t0, compile_s, np.asarray(accs)


def pytorch(ds, labels, widths, seeds, steps):
    """The same sweep in plain PyTorch (eager, one thread), model after model: total s."""
    import torch

    torch.set_num_threads(1)
    x = torch.from_numpy(np.asarray(ds.x, np.float32))
    y = torch.from_numpy(np.asarray(labels, np.int64))
    t0 = time.perf_counter()
    for w, s in zip(widths, seeds, strict=True):
        torch.manual_seed(int(s))
        net = torch.nn.Sequential(torch.nn.Linear(40, int(w)), torch.nn.ReLU(),
                                  torch.nn.Linear(int(w), 10))
        opt = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
        gen = torch.Generator().manual_seed(int(s))
        for _ in range(steps):
            idx = torch.randint(0, len(x), (BATCH,), generator=gen)
            loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return time.perf_counter() - t0


def rows_for(name, m, package_rows, naive_total, naive_compile, torch_run):
    rows = [*package_rows, ("naive: new jit + Python loop per model", naive_total, naive_compile)]
    try:
        import torch

        rows.append((f"plain PyTorch {torch.__version__} (eager, 1 thread)", torch_run(), 0.0))
    except ImportError:
        rows.append(("plain PyTorch (not installed: pip install -e .[bench])", np.nan, np.nan))
    for way, total, comp in rows:
        print(f"| {name} | {way} | {total:.3g} | {comp:.2g} | {total / m:.3g} | "
              f"{total / naive_total:.2g} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 steps, a few small models")
    args = parser.parse_args()
    jax.config.update("jax_enable_compilation_cache", False)  # compile times must be real
    if args.quick:
        steps, widths, buckets, seeds, n_seeds = 300, (2, 8, 32), (8, 32), 1, 4
    else:  # chapter 10's sweep
        steps = 4000
        widths = (1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 90, 128, 181, 256)
        buckets, seeds, n_seeds = (16, 64, 256), 3, 12
    mnist = data.mnist1d()
    ds = mnist.replace(x=mnist.x[:TRAIN], y=mnist.y[:TRAIN])
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cores; "
          f"MNIST-1D, {TRAIN} training samples, {NOISE:.0%} label noise, {steps} Adam steps "
          f"of batch {BATCH} per model, one-hidden-layer ReLU MLPs\n")
    print("| sweep | way | total (s) | compile (s) | per model (s) | total / naive |")
    print("|---|---|---|---|---|---|")

    # Width sweep: every width x seed, as chapter 10 trains it.
    first, warm, res = package_widths(ds, widths, seeds, steps, buckets, jax.random.key(0))
    flat_w = [int(w) for _ in range(seeds) for w in res.widths]
    flat_s = [1000 * s + i for s in range(seeds) for i in range(len(res.widths))]
    name = f"widths {widths[0]}..{widths[-1]} ({len(widths)}) x {seeds} seeds"
    one_bucket = package_widths(ds, widths, seeds, steps, None, jax.random.key(0))
    total, comp, acc_naive = naive(ds, res.labels, flat_w, flat_s, steps)
    rows_for(name, len(flat_w), [
        (f"udl_jax mlp_width_sweep, buckets {buckets} (cold)", first, first - warm),
        (f"udl_jax mlp_width_sweep, buckets {buckets} (warm)", warm, 0.0),
        (f"udl_jax, one bucket: all padded to {widths[-1]} (cold)", one_bucket[0],
         one_bucket[0] - one_bucket[1]),
    ], total, comp, lambda: pytorch(ds, res.labels, flat_w, flat_s, steps))
    acc_pkg = 1 - res.test_error[:, :, -1].mean(0)
    acc_nv = acc_naive.reshape(seeds, -1).mean(0)
    print(f"| {name} | seed-mean test accuracy, package vs naive: max gap over widths "
          f"{np.max(np.abs(acc_pkg - acc_nv)):.3f} | | | | |")

    # Seeds sweep: one width, many initializations.
    name = f"width 64 x {n_seeds} seeds"
    first, warm, acc_pkg = package_seeds(ds, res.labels, 64, n_seeds, steps)
    total, comp, acc_naive = naive(ds, res.labels, [64] * n_seeds, list(range(n_seeds)), steps)
    rows_for(name, n_seeds, [("udl_jax fit_many (cold)", first, first - warm),
                             ("udl_jax fit_many (warm)", warm, 0.0)],
             total, comp, lambda: pytorch(ds, res.labels, [64] * n_seeds, range(n_seeds), steps))
    print(f"| {name} | mean test accuracy, package vs naive: {acc_pkg.mean():.3f} vs "
          f"{acc_naive.mean():.3f} | | | | |")


if __name__ == "__main__":
    main()
