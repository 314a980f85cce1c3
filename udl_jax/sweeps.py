"""Model-wise sweeps: many networks of different widths, trained together.

Deep double descent (Nakkiran et al. 2020) is a curve over model size, and drawing it takes
one training run per width and seed. `mlp_width_sweep` trains all of them with
`udl_jax.train.fit_many`: networks of different true widths are zero-padded to a common
allocated width (`udl_jax.models.MLP` with ``max_width``) so that they share one compiled
training step. Padding a width-1 network to width 512 would waste almost all of its compute,
so widths are grouped into *buckets* (e.g. all widths <= 32 padded to 32, the rest to 512):
one compilation and one `fit_many` call per bucket.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx

from . import data as data_mod
from . import models, train

__all__ = ["mlp_width_sweep", "WidthSweep"]


@dataclasses.dataclass(frozen=True)
class WidthSweep:
    """Result of `mlp_width_sweep`.

    Attributes:
      widths: (W,) true hidden widths, ascending.
      num_params: (W,) trainable parameters of each (unpadded) network.
      steps: (T,) steps at which the metrics were logged (0 = initialization).
      train_error, test_error: (S, W, T) classification error (1 - accuracy), seeds by widths
        by logs. Train error is measured against the (noisy) labels the networks were trained on.
      train_loss, test_loss: (S, W, T) mean cross-entropy (or the chosen loss).
      labels: (n,) the training labels used (after label noise).
      noisy: (n,) bool, which training labels differ from the clean ones.
    """

    widths: np.ndarray
    num_params: np.ndarray
    steps: np.ndarray
    train_error: np.ndarray
    test_error: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray
    labels: np.ndarray
    noisy: np.ndarray


def mlp_width_sweep(
    dataset: data_mod.Dataset,
    widths: Sequence[int],
    *,
    key: jax.Array,
    seeds: int = 2,
    depth: int = 1,
    label_noise: float = 0.0,
    buckets: Sequence[int] | None = None,
    steps: int = 4000,
    learning_rate: float = 3e-3,
    batch_size: int | None = 100,
    log_every: int | None = None,
    loss: str = "cross_entropy",
) -> WidthSweep:
    """Train ReLU MLPs ``d -> width (x depth) -> k`` for every width and seed; Adam, fixed steps.

    The setting of Nakkiran et al. (2020, Sec. 4) at small scale: labels are corrupted once
    (`udl_jax.data.corrupt_labels`, with probability ``label_noise`` a label is replaced by a
    uniformly random class), every network is trained to a fixed number of steps (no early
    stopping, no regularization), and the test error is measured on clean test labels.

    Args:
      dataset: a classification `udl_jax.data.Dataset` (integer labels).
      widths: hidden widths, positive ints (sorted and deduplicated).
      key: PRNG key; split into the label noise, the initializations and the minibatches.
      seeds: number of independent initializations (and minibatch streams) per width.
      depth: number of hidden layers (all of the same width).
      label_noise: corruption probability in [0, 1].
      buckets: allocated widths; each width is padded to the smallest bucket >= it, and each
        bucket is one `fit_many` call. Default: one bucket, ``max(widths)``.
      steps, learning_rate, batch_size, log_every, loss: as in `udl_jax.train.fit_many`
        (optimizer: Adam).

    Returns:
      A `WidthSweep` with (seeds, W, T) metric arrays.
    """
    if not isinstance(dataset, data_mod.Dataset) or not dataset.is_classification:
        raise ValueError("dataset: expected a udl_jax.data.Dataset with integer class labels")
    ws = np.unique(np.asarray(widths))
    if ws.size == 0 or not np.issubdtype(ws.dtype, np.integer) or ws[0] < 1:
        raise ValueError(f"widths: expected positive ints, got {widths!r}")
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds: expected a positive int, got {seeds!r}")
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth: expected a positive int, got {depth!r}")
    if not 0 <= label_noise <= 1:
        raise ValueError(f"label_noise: expected a probability in [0, 1], got {label_noise!r}")
    caps = np.unique(np.asarray([int(ws[-1])] if buckets is None else buckets))
    if caps.size == 0 or caps[-1] < ws[-1]:
        raise ValueError(
            f"buckets: expected the largest bucket >= max(widths) = {ws[-1]}, got {buckets!r}"
        )

    k_labels, k_init, k_train = jax.random.split(key, 3)
    n_classes = dataset.n_classes
    labels = (
        data_mod.corrupt_labels(k_labels, dataset.y, label_noise, n_classes)
        if label_noise > 0
        else np.asarray(dataset.y, np.int32)
    )
    noisy_ds = dataset.replace(y=labels)
    d = int(dataset.x.shape[1])
    init_seeds = np.asarray(jax.random.randint(k_init, (seeds, ws.size), 0, 2**31 - 1))

    bucket_of = np.searchsorted(caps, ws)  # smallest cap >= width
    out = {f: [None] * ws.size for f in ("train_loss", "test_loss", "train_acc", "test_acc")}
    steps_logged = None
    for b, cap in enumerate(caps):
        idx = np.flatnonzero(bucket_of == b)
        if idx.size == 0:
            continue
        nets = [
            models.MLP(
                (d, *([int(ws[j])] * depth), n_classes),
                max_width=int(cap),
                rngs=nnx.Rngs(int(init_seeds[s, j])),
            )
            for s in range(seeds)
            for j in idx
        ]
        _, hist = train.fit_many(
            nets,
            noisy_ds,
            key=jax.random.fold_in(k_train, int(cap)),
            steps=steps,
            learning_rate=learning_rate,
            batch_size=batch_size,
            log_every=log_every,
            loss=loss,
            progress=False,
        )
        steps_logged = hist.steps
        shape = (seeds, idx.size, len(hist.steps))
        for f, h in (
            ("train_loss", hist.train_loss),
            ("test_loss", hist.test_loss),
            ("train_acc", hist.train_accuracy),
            ("test_acc", hist.test_accuracy),
        ):
            h = np.asarray(h).reshape(shape)
            for i, j in enumerate(idx):
                out[f][j] = h[:, i]
    stack = {f: np.stack(v, axis=1) for f, v in out.items()}  # (S, W, T)
    return WidthSweep(
        widths=ws,
        num_params=np.array(
            [models.MLPSpec((d, *[int(w)] * depth, n_classes)).num_params for w in ws]
        ),
        steps=np.asarray(steps_logged),
        train_error=1.0 - stack["train_acc"],
        test_error=1.0 - stack["test_acc"],
        train_loss=stack["train_loss"],
        test_loss=stack["test_loss"],
        labels=labels,
        noisy=labels != np.asarray(dataset.y),
    )
