"""Data for the book: MNIST-1D made offline, toy sets, randomization transforms.

MNIST-1D (Greydanus & Kobak 2024) is the book's workhorse: 40-dimensional, 10 classes, small
enough to train hundreds of models on a CPU, yet hard enough that a CNN beats an MLP which beats
a linear model. We always *generate* it with the `mnist1d` package (never its download path)
and cache the arrays on disk. Every function here takes an explicit PRNG key where it is random
and never touches NumPy's or Python's global random state.

The small tabular sets that ship with scikit-learn are loaded and split by
`udl_jax.tabular_benchmark`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Dataset",
    "mnist1d",
    "cache_dir",
    "sklearn_seed",
    "toy_regression_1d",
    "moons",
    "corrupt_labels",
    "shuffle_pixels",
    "random_pixels",
    "gaussian_inputs",
]


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A train/test split. Arrays are NumPy: inputs float32, class labels int32.

    Attributes:
      x: training inputs, shape (n, d).
      y: training targets, shape (n,) int32 class labels (or float32 regression targets,
        shape (n,) or (n, k)).
      x_test: test inputs, shape (m, d).
      y_test: test targets, shaped like ``y``.
    """

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def __post_init__(self):
        for name in ("x", "x_test"):
            if np.ndim(getattr(self, name)) != 2:
                raise ValueError(
                    f"{name}: expected a 2D array (samples, features), "
                    f"got shape {np.shape(getattr(self, name))}"
                )
        if len(self.x) != len(self.y) or len(self.x_test) != len(self.y_test):
            raise ValueError(
                f"x/y and x_test/y_test must have equal lengths, got "
                f"{len(self.x)}/{len(self.y)} and {len(self.x_test)}/{len(self.y_test)}"
            )

    @property
    def is_classification(self) -> bool:
        """True when targets are integer class labels."""
        return np.issubdtype(np.asarray(self.y).dtype, np.integer)

    @property
    def n_classes(self) -> int:
        """Number of classes (max label + 1); raises for regression data."""
        if not self.is_classification:
            raise ValueError("n_classes: this dataset has real-valued targets")
        return int(max(self.y.max(), self.y_test.max())) + 1

    def replace(self, **changes) -> Dataset:
        """A copy with some fields replaced (e.g. ``ds.replace(y=noisy_y)``)."""
        return dataclasses.replace(self, **changes)


def _make(x, y, x_test, y_test) -> Dataset:
    def cast(a):
        a = np.asarray(a)
        return a.astype(np.int32) if np.issubdtype(a.dtype, np.integer) else a.astype(np.float32)

    return Dataset(cast(x), cast(y), cast(x_test), cast(y_test))


def sklearn_seed(key: jax.Array) -> int:
    """An int seed for libraries that want one (scikit-learn), derived from a JAX key.

    Returns:
      An int in [0, 2^31 - 1), a deterministic function of ``key``.
    """
    return int(jax.random.randint(key, (), 0, 2**31 - 1))


def cache_dir() -> Path:
    """Where generated data are cached: ``$UDL_JAX_CACHE``, else ``$XDG_CACHE_HOME/udl_jax``,
    else ``~/.cache/udl_jax``."""
    if os.environ.get("UDL_JAX_CACHE"):
        return Path(os.environ["UDL_JAX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "udl_jax"


def mnist1d(num_samples: int = 5000, seed: int = 42, *, cache: bool = True, **overrides) -> Dataset:
    """MNIST-1D (Greydanus & Kobak 2024), generated offline and cached.

    Uses ``mnist1d.data.make_dataset(get_dataset_args())``; with the defaults this is the
    standard dataset: 4000 training and 1000 test sequences of length 40, 10 classes.
    ``make_dataset`` reseeds NumPy's and Python's global generators; their states are saved
    and restored around the call, so importing this data changes no other randomness.

    Args:
      num_samples: total samples (80% train, 20% test).
      seed: the generator's seed (42 is the published dataset).
      cache: read/write the arrays under `cache_dir`.
      **overrides: other fields of ``get_dataset_args()`` (e.g. ``iid_noise_scale``).

    Returns:
      A `Dataset` with x (n, 40) float32 and y (n,) int32.
    """
    if not isinstance(num_samples, int) or num_samples < 10:
        raise ValueError(f"num_samples: expected an int >= 10, got {num_samples!r}")
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args(as_dict=True)
    unknown = set(overrides) - set(args)
    if unknown:
        raise ValueError(
            f"overrides: unknown MNIST-1D arguments {sorted(unknown)}; "
            f"expected some of {sorted(args)}"
        )
    args.update(num_samples=num_samples, seed=seed, **overrides)
    args.pop("url")
    tag = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"mnist1d-{tag}.npz"
    if cache and path.exists():
        with np.load(path) as f:
            return _make(f["x"], f["y"], f["x_test"], f["y_test"])

    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002 (restored below)
    try:
        raw = make_dataset(get_dataset_args().__class__({**args, "url": None}))
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)
    ds = _make(raw["x"], raw["y"], raw["x_test"], raw["y_test"])
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, x=ds.x, y=ds.y, x_test=ds.x_test, y_test=ds.y_test)
        os.replace(tmp, path)
    return ds


# ----------------------------------------------------------------------------- toy sets


def toy_regression_1d(
    key: jax.Array,
    n: int = 20,
    n_test: int = 200,
    noise: float = 0.1,
    fn=None,
    xlim: tuple[float, float] = (-1.0, 1.0),
) -> Dataset:
    """A 1D regression problem ``y = fn(x) + noise * eps``.

    Training inputs are uniform on ``xlim``; test inputs are an even grid on it (noise-free
    targets), handy for plotting.

    Args:
      key: PRNG key.
      n: training points; n_test: grid points.
      noise: standard deviation of the Gaussian label noise.
      fn: target function of a NumPy array (default ``sin(pi x) + 0.3 x``).
      xlim: input interval.

    Returns:
      A `Dataset` with x (n, 1), y (n,) float32; x_test (n_test, 1), y_test (n_test,).
    """
    if n < 1 or n_test < 1 or noise < 0:
        raise ValueError(f"expected n >= 1, n_test >= 1, noise >= 0; got {n}, {n_test}, {noise}")
    fn = fn or (lambda x: np.sin(np.pi * x) + 0.3 * x)
    kx, ke = jax.random.split(key)
    x = np.sort(np.asarray(jax.random.uniform(kx, (n,), minval=xlim[0], maxval=xlim[1])))
    y = fn(x) + noise * np.asarray(jax.random.normal(ke, (n,)))
    xt = np.linspace(*xlim, n_test)
    return _make(x[:, None], y, xt[:, None], fn(xt))


def moons(key: jax.Array, n: int = 200, n_test: int = 1000, noise: float = 0.15) -> Dataset:
    """Two interleaved half-moons in 2D (scikit-learn's ``make_moons``), standardized.

    Returns:
      A `Dataset` with x (n, 2) float32 and y (n,) int32 in {0, 1}.
    """
    from sklearn.datasets import make_moons

    if n < 2 or n_test < 2:
        raise ValueError(f"n and n_test: expected >= 2, got {n}, {n_test}")
    x, y = make_moons(n + n_test, noise=noise, random_state=sklearn_seed(key))
    x = (x - x[:n].mean(0)) / x[:n].std(0)
    return _make(x[:n], y[:n], x[n:], y[n:])


# ----------------------------------------------------------------------- randomization tests


def corrupt_labels(key: jax.Array, y: np.ndarray, prob: float, n_classes: int) -> np.ndarray:
    """Zhang et al. (2017)'s partially corrupted labels.

    Convention (theirs): each label is, independently with probability ``prob``, replaced by a
    class drawn uniformly from *all* ``n_classes`` classes, so it may by chance stay correct.
    The expected fraction of wrong labels is therefore ``prob * (1 - 1/n_classes)``;
    ``prob=1`` gives completely random labels.

    Args:
      key: PRNG key.
      y: int labels, shape (n,).
      prob: corruption probability in [0, 1].
      n_classes: number of classes.

    Returns:
      int32 labels, shape (n,).
    """
    if not 0 <= prob <= 1:
        raise ValueError(f"prob: expected a probability in [0, 1], got {prob}")
    prob = float(prob)  # jax.random.bernoulli rejects an int (e.g. prob=0 or 1)
    y = np.asarray(y)
    kc, kl = jax.random.split(key)
    flip = np.asarray(jax.random.bernoulli(kc, prob, y.shape))
    rand = np.asarray(jax.random.randint(kl, y.shape, 0, n_classes))
    return np.where(flip, rand, y).astype(np.int32)


def shuffle_pixels(key: jax.Array, ds: Dataset) -> Dataset:
    """One fixed random permutation of the input features, applied to every train and test
    sample (Zhang et al. 2017, "shuffled pixels"): destroys spatial structure, keeps information."""
    perm = np.asarray(jax.random.permutation(key, ds.x.shape[1]))
    return ds.replace(x=ds.x[:, perm], x_test=ds.x_test[:, perm])


def random_pixels(key: jax.Array, ds: Dataset) -> Dataset:
    """A *different* random permutation of the features for every sample (Zhang et al. 2017,
    "random pixels"). Each sample keeps its histogram of values, nothing else."""
    k1, k2 = jax.random.split(key)

    def permute(k, x):
        keys = jax.random.split(k, x.shape[0])
        return np.asarray(jax.vmap(jax.random.permutation)(keys, jnp.asarray(x)))

    return ds.replace(x=permute(k1, ds.x), x_test=permute(k2, ds.x_test))


def gaussian_inputs(key: jax.Array, ds: Dataset) -> Dataset:
    """Replace inputs by Gaussian noise with the training set's per-feature mean and standard
    deviation (Zhang et al. 2017, "Gaussian"). Labels are kept."""
    k1, k2 = jax.random.split(key)
    mu, sd = ds.x.mean(0), ds.x.std(0)

    def draw(k, n):
        return (mu + sd * np.asarray(jax.random.normal(k, (n, ds.x.shape[1])))).astype(np.float32)

    return ds.replace(x=draw(k1, len(ds.x)), x_test=draw(k2, len(ds.x_test)))
