"""Sweeps of many small models: the package's way (`udl_jax.train.fit_many`, one compilation,
all models vectorized) against the naive way (a fresh jitted step and a Python loop per model, so
one compilation and one sequential training per model), and against plain PyTorch.

Two sweeps, both the shape of chapter 10's (double descent):
- a width sweep: one-hidden-layer ReLU MLPs 40-w-10 over a log grid of widths, padded to the
  largest width so that they share one graph (`udl_jax.models.MLP(max_width=...)`);
- a seeds sweep: the same architecture, different initializations and minibatch streams.

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

from udl_jax import data, models, train

LEARNING_RATE = 1e-3
BATCH = 100


def sweep_models(widths, seeds, max_width):
    """One (width, seed) MLP per entry, padded to ``max_width`` (the package's way)."""
    return [models.MLP((40, w, 10), max_width=max_width, rngs=nnx.Rngs(s))
            for w, s in zip(widths, seeds, strict=True)]


def package(ds, labels, widths, seeds, steps):
    """fit_many over the whole sweep; returns (first call s, warm call s, final test accuracy)."""
    max_width = max(widths)
    kw = dict(key=jax.random.key(0), steps=steps, learning_rate=LEARNING_RATE, labels=labels,
              batch_size=BATCH, log_every=steps, progress=False)
    t0 = time.perf_counter()
    _, hist = train.fit_many(sweep_models(widths, seeds, max_width), ds, **kw)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    train.fit_many(sweep_models(widths, seeds, max_width), ds, **kw)
    warm = time.perf_counter() - t0
    return first, warm, np.asarray(hist.test_accuracy)[:, -1]


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
            lambda p: train.cross_entropy(apply_fn(p, x[idx]), y[idx]))(params)
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
    acc = float(train.accuracy(apply_fn(params, jnp.asarray(ds.x_test)), jnp.asarray(ds.y_test)))
    return t1 - t0, t2 - t1, acc


def naive(ds, labels, widths, seeds, steps):
    """Returns (total s, compile s, test accuracies): compile = first step minus a later one."""
    t0 = time.perf_counter()
    compile_s, accs = 0.0, []
    for y, w, s in zip(labels, widths, seeds, strict=True):
        first, rest, acc = naive_one(ds, y, w, s, steps)
        compile_s += first - rest / max(1, steps - 1)
        accs.append(acc)
    return time.perf_counter() - t0, compile_s, np.asarray(accs)


def pytorch(ds, labels, widths, seeds, steps):
    """The same sweep in plain PyTorch (eager, one thread), model after model."""
    import torch

    torch.set_num_threads(1)
    x = torch.from_numpy(np.asarray(ds.x, np.float32))
    t0 = time.perf_counter()
    for y, w, s in zip(labels, widths, seeds, strict=True):
        torch.manual_seed(int(s))
        net = torch.nn.Sequential(torch.nn.Linear(40, int(w)), torch.nn.ReLU(),
                                  torch.nn.Linear(int(w), 10))
        opt = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
        yt = torch.from_numpy(np.asarray(y, np.int64))
        gen = torch.Generator().manual_seed(int(s))
        for _ in range(steps):
            idx = torch.randint(0, len(x), (BATCH,), generator=gen)
            loss = torch.nn.functional.cross_entropy(net(x[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 steps, 4 models a sweep")
    parser.add_argument("--steps", type=int, default=None, help="Adam steps per model")
    parser.add_argument("--train", type=int, default=1000, help="training samples")
    parser.add_argument("--noise", type=float, default=0.15, help="label-noise probability")
    args = parser.parse_args()
    jax.config.update("jax_enable_compilation_cache", False)  # compile times must be real
    steps = args.steps or (300 if args.quick else 3000)
    n_models = 4 if args.quick else 12
    full = data.mnist1d()
    ds = full.replace(x=full.x[: args.train], y=full.y[: args.train])
    y_noisy = data.corrupt_labels(jax.random.key(1), ds.y, args.noise, 10)

    grid = np.unique(np.round(np.geomspace(2, 256, n_models)).astype(int))
    sweeps = {
        f"width sweep ({len(grid)} widths {grid[0]}..{grid[-1]}, 1 seed)":
            (list(grid), list(range(len(grid)))),
        f"seeds sweep (width 64, {n_models} seeds)": ([64] * n_models, list(range(n_models))),
    }
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cores; "
          f"MNIST-1D, {args.train} training samples, {args.noise:.0%} label noise, "
          f"{steps} Adam steps of batch {BATCH} per model\n")
    print("| sweep | way | total (s) | compile (s) | per model (s) | total / naive |")
    print("|---|---|---|---|---|---|")
    for name, (widths, seeds) in sweeps.items():
        labels = np.broadcast_to(y_noisy, (len(widths), len(y_noisy)))
        first, warm, acc_pkg = package(ds, labels, widths, seeds, steps)
        total_naive, compile_naive, acc_naive = naive(ds, labels, widths, seeds, steps)
        m = len(widths)
        rows = [("udl_jax fit_many (cold)", first, first - warm),
                ("udl_jax fit_many (warm)", warm, 0.0),
                ("naive: jit + Python loop per model", total_naive, compile_naive)]
        try:
            import torch

            rows.append((f"plain PyTorch {torch.__version__} (1 thread)",
                         pytorch(ds, labels, widths, seeds, steps), 0.0))
        except ImportError:
            rows.append(("plain PyTorch (not installed: pip install -e .[bench])", np.nan, 0.0))
        for way, total, comp in rows:
            print(f"| {name} | {way} | {total:.3g} | {comp:.2g} | {total / m:.3g} | "
                  f"{total / total_naive:.2g} |")
        # Same data, architecture and optimizer: the two ways must reach similar accuracy.
        gap = float(np.max(np.abs(acc_pkg - acc_naive)))
        print(f"| {name} | test accuracy, package vs naive: mean {acc_pkg.mean():.3f} vs "
              f"{acc_naive.mean():.3f}, max gap {gap:.3f} | | | | |")


if __name__ == "__main__":
    main()
