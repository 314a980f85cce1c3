"""Training speed: udl_jax.train against a hand-written scan loop and plain PyTorch, and the
many-models paths (vmap, grouped, sequential, sharded across host devices).

Everything is timed in one process, and reported as ratios to the hand-written `lax.scan` loop
measured in the same run, so the numbers compare across machines. Run:

    python benchmarks/train.py            # the table, in Markdown
    python benchmarks/train.py --quick    # fewer steps (a smoke test)

Setup: MNIST-1D, a 40-100-100-10 ReLU MLP, Adam (learning rate 1e-3), batch 100.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from udl_jax import data, losses, models, train

WIDTHS = (40, 100, 100, 10)


def best_of(fn, repeats=3):
    """Minimum wall time over repeats (after one warm-up call that compiles)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return first, min(times)


def hand_written(ds, steps):
    """The reference: the smallest correct scan loop, data closed over as constants."""
    apply_fn, params, _ = models.functional(models.MLP(WIDTHS, rngs=nnx.Rngs(0)))
    x, y = jnp.asarray(ds.x), jnp.asarray(ds.y)
    tx = optax.adam(1e-3)

    def step(carry, key):
        p, o = carry
        idx = jax.random.randint(key, (100,), 0, x.shape[0])
        loss, g = jax.value_and_grad(lambda p: losses.cross_entropy(apply_fn(p, x[idx]), y[idx]))(p)
        u, o = tx.update(g, o, p)
        return (optax.apply_updates(p, u), o), loss

    run = jax.jit(lambda c, k: jax.lax.scan(step, c, k))
    keys = jax.random.split(jax.random.key(0), steps)
    carry = (params, tx.init(params))
    return lambda: jax.block_until_ready(run(carry, keys))


def package(ds, steps):
    m = models.MLP(WIDTHS, rngs=nnx.Rngs(0))
    return lambda: train.fit(m, ds, key=jax.random.key(0), steps=steps, learning_rate=1e-3,
                             log_every=steps // 10, progress=False)


def pytorch(ds, steps):
    import torch

    # One intra-op thread: for a model this small, PyTorch's thread pool only adds overhead, and
    # on a busy 2-core machine its spinning threads made 6000 steps take 90 s instead of 9 s.
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(40, 100), torch.nn.ReLU(), torch.nn.Linear(100, 100),
                              torch.nn.ReLU(), torch.nn.Linear(100, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = torch.from_numpy(ds.x), torch.from_numpy(ds.y.astype(np.int64))
    gen = torch.Generator().manual_seed(0)

    def run():
        for _ in range(steps):
            idx = torch.randint(0, len(x), (100,), generator=gen)
            loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()

    return run


def many(ds, steps, n_models, how):
    ms = [models.MLP(WIDTHS, rngs=nnx.Rngs(s)) for s in range(n_models)]
    kw = dict(key=jax.random.key(0), steps=steps, learning_rate=1e-3, log_every=steps // 10,
              progress=False)
    if how == "vmap":
        return lambda: train.fit_many(ms, ds, **kw)
    if how == "grouped by 4":
        return lambda: train.fit_many(ms, ds, models_per_batch=4, **kw)
    if how == "one at a time (fit_many, 1 per group)":
        return lambda: train.fit_many(ms, ds, models_per_batch=1, **kw)
    if how == "naive: fit() per model":
        return lambda: [train.fit(m, ds, **kw) for m in ms]
    raise ValueError(how)


def sharded(steps, n_models, n_devices):
    """fit_many with the model axis sharded over `n_devices` host devices (a fresh process,
    because the device count is fixed when JAX starts)."""
    code = f"""
import json, time, jax
from flax import nnx
from udl_jax import data, models, train
ds = data.mnist1d()
ms = [models.MLP({WIDTHS}, rngs=nnx.Rngs(s)) for s in range({n_models})]
kw = dict(key=jax.random.key(0), steps={steps}, learning_rate=1e-3, log_every={steps // 10},
          progress=False)
train.fit_many(ms, ds, **kw)
ts = []
for _ in range(3):
    t = time.perf_counter(); train.fit_many(ms, ds, **kw); ts.append(time.perf_counter() - t)
print(json.dumps(min(ts)))
"""
    flags = f"--xla_force_host_platform_device_count={n_devices}"
    if n_devices > 1:  # one XLA worker thread per device, so devices do not fight for cores
        flags += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    env = {**os.environ, "XLA_FLAGS": flags}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="600 steps instead of 6000")
    parser.add_argument("--models", type=int, default=8, help="models in the many-models rows")
    parser.add_argument("--single", action="store_true", help="only the one-model table")
    args = parser.parse_args()
    steps = 600 if args.quick else 6000
    ds = data.mnist1d()
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cores; "
          f"{steps} Adam steps, batch 100, MLP {WIDTHS}\n")

    rows = []
    first, base = best_of(hand_written(ds, steps))
    rows.append(("hand-written lax.scan loop (baseline)", first, base))
    rows.append(("udl_jax.train.fit", *best_of(package(ds, steps))))
    try:
        import torch

        torch_first, torch_t = best_of(pytorch(ds, steps), repeats=1)
        rows.append((f"plain PyTorch {torch.__version__} (eager, 1 thread)", torch_first, torch_t))
    except ImportError:
        rows.append(("plain PyTorch (not installed: pip install -e .[bench])", np.nan, np.nan))
    print("| one model | first call (s) | warm (s) | warm / baseline |")
    print("|---|---|---|---|")
    for name, f, t in rows:
        print(f"| {name} | {f:.2f} | {t:.2f} | {t / base:.2f} |")

    if args.single:
        return
    n = args.models
    print(f"\n| {n} models (seeds) | first call (s) | warm, per model (s) | per model / baseline |")
    print("|---|---|---|---|")
    for how in ("vmap", "grouped by 4", "one at a time (fit_many, 1 per group)",
                "naive: fit() per model"):
        f, t = best_of(many(ds, steps, n, how), repeats=1)
        print(f"| {how} | {f:.2f} | {t / n:.2f} | {t / n / base:.2f} |")
    for d in (2, 4):
        t = sharded(steps, n, d)
        print(f"| vmap, sharded over {d} host devices | - | {t / n:.2f} | {t / n / base:.2f} |")


if __name__ == "__main__":
    main()
