"""Small tabular benchmarks: the same repeated splits for every learner, each tuned on its
training part only.

A comparison of learners on a few hundred samples is decided as much by the protocol as by
the learners: one random split can favour either, and a method tuned on the test set wins
unfairly. So everything here works on *repeated stratified splits* shared by all methods
(`stratified_splits`), standardizes with the training part's statistics (`make_split`), and
chooses hyperparameters without looking at the test part: by cross-validation for the SVM
(`svm_accuracy`), on a validation split carved from the training part for kernel regression
(`kernel_accuracy`, given the kernels) and for the network's weight decay and early-stopping step
(`mlp_accuracy`). The winners are refit on the whole training part and scored once on the test
part. `paired_difference` compares two methods split by split. `compare_methods` runs the
book's six learners (majority class, logistic regression, RBF SVM, the NNGP and NTK of an MLP,
the MLP itself) on one split, and `benchmark` on repeated splits of several datasets: the
protocol of Arora et al. (2020) on the question "do networks beat kernels on small data?".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import jax
import numpy as np
import optax
import threadpoolctl
from flax import nnx

from . import kernel_regression, models, ntk, train
from .data import Dataset, sklearn_seed

__all__ = [
    "DATASETS",
    "load",
    "stratified_splits",
    "make_split",
    "validation_indices",
    "majority_accuracy",
    "logistic_accuracy",
    "svm_accuracy",
    "kernel_accuracy",
    "mlp_accuracy",
    "MLPResult",
    "METHODS",
    "compare_methods",
    "benchmark",
    "Benchmark",
    "paired_difference",
    "one_thread",
]


DATASETS = ("wine", "breast_cancer", "digits")
"""The classification sets that ship with scikit-learn and are used here."""


def one_thread():
    """A context manager that holds BLAS and OpenMP (NumPy, SciPy, scikit-learn) to one thread.

    The problems here are small (at most 1,797 samples), and on a 2-core CPU shared with JAX's
    own threads, multithreaded BLAS and OpenMP spend their time waiting for each other: logistic
    regression on digits was measured 30 times slower with two threads than with one (1.1 s
    against 0.04 s, with other work on the machine). Used inside the scikit-learn and SciPy
    steps below (``threadpoolctl`` is a dependency of scikit-learn).
    """
    return threadpoolctl.threadpool_limits(1)


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw features and labels of a scikit-learn dataset.

    Args:
      name: ``"wine"`` (178 x 13, 3 classes), ``"breast_cancer"`` (569 x 30, 2 classes) or
        ``"digits"`` (1797 x 64, 10 classes).

    Returns:
      ``(x, y)``: float64 features (n, d) and int32 labels (n,).
    """
    from sklearn import datasets

    if name not in DATASETS:
        raise ValueError(f"name: expected one of {DATASETS}, got {name!r}")
    x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    return np.asarray(x, np.float64), np.asarray(y, np.int32)


def stratified_splits(
    y: np.ndarray, key: jax.Array, n_splits: int, test_fraction: float = 0.3
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Repeated random train/test splits that keep the class proportions.

    Args:
      y: (n,) integer labels.
      key: PRNG key (seeds scikit-learn's ``StratifiedShuffleSplit``).
      n_splits: number of splits, >= 1.
      test_fraction: fraction of samples in each test part, in (0, 1).

    Returns:
      ``n_splits`` pairs ``(train_idx, test_idx)`` of sorted disjoint index arrays covering
      ``range(n)``.
    """
    from sklearn.model_selection import StratifiedShuffleSplit

    if not isinstance(n_splits, int) or n_splits < 1:
        raise ValueError(f"n_splits: expected a positive int, got {n_splits!r}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction}")
    y = np.asarray(y)
    sss = StratifiedShuffleSplit(n_splits, test_size=test_fraction, random_state=sklearn_seed(key))
    return [(np.sort(tr), np.sort(te)) for tr, te in sss.split(np.zeros((len(y), 1)), y)]


def make_split(x: np.ndarray, y: np.ndarray, train_idx, test_idx) -> Dataset:
    """A `Dataset` for one split, standardized with the training part's mean and std.

    Constant features (std 0) are only centred.
    """
    from sklearn.preprocessing import StandardScaler

    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x, y: expected equal lengths, got {len(x)} and {len(y)}")
    scaler = StandardScaler().fit(x[train_idx])
    return Dataset(
        scaler.transform(x[train_idx]).astype(np.float32),
        y[train_idx].astype(np.int32),
        scaler.transform(x[test_idx]).astype(np.float32),
        y[test_idx].astype(np.int32),
    )


def validation_indices(
    y: np.ndarray, key: jax.Array, fraction: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    """A stratified ``(fit_idx, val_idx)`` split of a training part with labels ``y``."""
    return stratified_splits(y, key, 1, fraction)[0]


def majority_accuracy(ds: Dataset) -> float:
    """Test accuracy of always predicting the most frequent training class."""
    return float(np.mean(ds.y_test == np.bincount(ds.y).argmax()))


def logistic_accuracy(ds: Dataset, C: float = 1.0) -> float:
    """Test accuracy of multinomial logistic regression (scikit-learn, L2 penalty ``1/C``)."""
    from sklearn.linear_model import LogisticRegression

    with one_thread():
        clf = LogisticRegression(C=C, max_iter=2000).fit(ds.x, ds.y)
        return float(clf.score(ds.x_test, ds.y_test))


def svm_accuracy(
    ds: Dataset,
    Cs: Sequence[float] = (0.3, 3.0, 30.0),
    gammas: Sequence[float] = (0.3, 1.0),
    cv: int = 3,
) -> tuple[float, dict]:
    """Test accuracy of an RBF-kernel SVM whose ``C`` and ``gamma`` are chosen by
    cross-validation on the training part (scikit-learn ``GridSearchCV``, refit on all of it).

    Args:
      ds: a standardized `Dataset`.
      Cs: grid of margin penalties C.
      gammas: grid of RBF widths in units of ``1/d`` (scikit-learn's ``gamma="scale"`` for
        standardized features), so ``gamma = g / d``.
      cv: number of stratified folds.

    Returns:
      ``(accuracy, best_params)`` with ``best_params = {"C": ..., "gamma": ...}``.
    """
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    d = ds.x.shape[1]
    grid = {"C": list(Cs), "gamma": [g / d for g in gammas]}
    with one_thread():
        search = GridSearchCV(SVC(kernel="rbf"), grid, cv=cv, n_jobs=1).fit(ds.x, ds.y)
        return float(search.score(ds.x_test, ds.y_test)), dict(search.best_params_)


def kernel_accuracy(
    k_train: np.ndarray,
    k_test_train: np.ndarray,
    y: np.ndarray,
    y_test: np.ndarray,
    key: jax.Array,
    ridges: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0),
    val_fraction: float = 0.25,
) -> tuple[float, float]:
    """Test accuracy of kernel regression on one-hot targets, the ridge chosen on a validation
    split of the training part.

    With the NNGP or NTK of a network (`udl_jax.ntk.nngp_kernel`, `udl_jax.ntk.ntk_kernel`) this
    is the infinite-width Bayesian network's posterior mean (Lee et al. 2018) or the
    infinitely wide network trained by gradient flow on the squared loss (Jacot et al. 2018),
    as used on small data by Arora et al. (2020). The prediction is
    ``k(x, X) (K + r I)^-1 Y`` (`udl_jax.kernel_regression.kernel_regression`) with
    ``r = ridge * mean(diag K)``, and the class is its arg-max. The relative ridge with the best
    validation accuracy (ties: the larger) is refit on the whole training part.

    Args:
      k_train: (n, n) kernel on the training inputs.
      k_test_train: (m, n) kernel between test and training inputs.
      y: (n,) training labels; y_test: (m,) test labels.
      key: PRNG key for the validation split.
      ridges: grid of relative ridges, each > 0.
      val_fraction: fraction of the training part held out for choosing the ridge.

    Returns:
      ``(accuracy, relative_ridge)``.
    """
    k_train, k_test_train = np.asarray(k_train), np.asarray(k_test_train)
    y, y_test = np.asarray(y), np.asarray(y_test)
    n = len(y)
    if k_train.shape != (n, n) or k_test_train.shape != (len(y_test), n):
        raise ValueError(
            f"k_train, k_test_train: expected shapes ({n}, {n}) and ({len(y_test)}, {n}), "
            f"got {k_train.shape} and {k_test_train.shape}"
        )
    if not ridges or min(ridges) <= 0:
        raise ValueError(f"ridges: expected positive values, got {ridges}")
    with one_thread():
        onehot = np.eye(int(max(y.max(), y_test.max())) + 1)[y]
        fit, val = validation_indices(y, key, val_fraction)
        k_fit = k_train[np.ix_(fit, fit)]
        scale = np.mean(np.diag(k_fit))
        val_acc = [
            np.mean(
                kernel_regression.kernel_regression(
                    k_fit, k_train[np.ix_(val, fit)], onehot[fit], ridge=r * scale
                ).argmax(1)
                == y[val]
            )
            for r in ridges
        ]
        best = len(ridges) - 1 - int(np.argmax(val_acc[::-1]))  # ties: the larger ridge
        ridge = ridges[best] * np.mean(np.diag(k_train))
        pred = kernel_regression.kernel_regression(k_train, k_test_train, onehot, ridge=ridge)
        return float(np.mean(pred.argmax(1) == y_test)), float(ridges[best])


@dataclasses.dataclass(frozen=True)
class MLPResult:
    """What `mlp_accuracy` chose and measured.

    Attributes:
      accuracy: test accuracy of the refit network.
      weight_decay: chosen AdamW weight decay.
      steps: chosen number of steps (early stopping).
      val_steps: (T,) logged steps of the tuning runs.
      val_accuracy: (M, T) validation accuracy of each weight decay at each logged step.
      fit_accuracy: (M, T) accuracy on the part it was trained on, likewise.
    """

    accuracy: float
    weight_decay: float
    steps: int
    val_steps: np.ndarray
    val_accuracy: np.ndarray
    fit_accuracy: np.ndarray


def mlp_accuracy(
    ds: Dataset,
    widths: Sequence[int],
    weight_decays: Sequence[float],
    key: jax.Array,
    *,
    steps: int = 1000,
    learning_rate: float = 1e-3,
    batch_size: int = 64,
    log_every: int = 50,
    val_fraction: float = 0.25,
    seed: int = 0,
) -> MLPResult:
    """Test accuracy of a ReLU MLP trained with AdamW (Loshchilov & Hutter 2019) whose weight
    decay and stopping step are chosen on a validation split of the training part.

    One network per weight decay, all from the same initialization, is trained on the fit part
    with `udl_jax.train.fit_many` for ``steps`` steps, logging validation accuracy every
    ``log_every`` steps. The (weight decay, step) with the best validation accuracy (ties: the
    lower validation cross-entropy) is then retrained from the same initialization on the whole
    training part for that many steps, and scored once on the test part (early stopping with a
    retrain, Goodfellow et al. 2016, Algorithm 7.2).

    Args:
      ds: a standardized `Dataset`.
      widths: network widths; ``widths[0]`` = features, ``widths[-1]`` = classes.
      weight_decays: AdamW decoupled weight-decay grid.
      key: PRNG key for the validation split and the minibatches.
      steps, learning_rate, batch_size, log_every: as in `udl_jax.train.fit_many`.
      val_fraction: fraction of the training part held out for validation.
      seed: seed of the network initialization (``nnx.Rngs(seed)``).

    Returns:
      An `MLPResult`.
    """
    widths = tuple(int(w) for w in widths)
    if widths[0] != ds.x.shape[1]:
        raise ValueError(f"widths: widths[0] = {widths[0]} != number of features {ds.x.shape[1]}")
    weight_decays = [float(w) for w in weight_decays]
    if not weight_decays or min(weight_decays) < 0:
        raise ValueError(f"weight_decays: expected non-negative values, got {weight_decays}")
    k_val, k_train, k_refit = jax.random.split(key, 3)
    fit, val = validation_indices(ds.y, k_val, val_fraction)
    tuning = Dataset(ds.x[fit], ds.y[fit], ds.x[val], ds.y[val])
    nets = [models.MLP(widths, rngs=nnx.Rngs(seed)) for _ in weight_decays]
    common = dict(
        steps=steps,
        learning_rate=learning_rate,
        optimizer=optax.adamw,
        batch_size=batch_size,
        log_every=log_every,
        progress=False,
    )
    _, hist = train.fit_many(
        nets, tuning, key=k_train, optimizer_kwargs={"weight_decay": weight_decays}, **common
    )
    acc, loss = hist.test_accuracy[:, 1:], hist.test_loss[:, 1:]  # skip the initialization
    score = np.where(acc >= acc.max(), -loss, -np.inf)
    m, t = np.unravel_index(np.argmax(score), score.shape)
    best_steps = int(hist.steps[1 + t])
    _, h = train.fit(
        models.MLP(widths, rngs=nnx.Rngs(seed)),
        ds,
        key=k_refit,
        optimizer_kwargs={"weight_decay": weight_decays[m]},
        **{**common, "steps": best_steps},
    )
    return MLPResult(
        float(h.test_accuracy[-1]),
        weight_decays[m],
        best_steps,
        np.asarray(hist.steps),
        np.asarray(hist.test_accuracy),
        np.asarray(hist.train_accuracy),
    )


METHODS = ("majority", "logistic", "SVM", "NNGP", "NTK", "MLP")
"""The learners `compare_methods` scores, in the order of the book's tables."""


def compare_methods(
    ds: Dataset,
    key: jax.Array,
    *,
    hidden: Sequence[int] = (128, 128),
    weight_decays: Sequence[float] = (0.0, 0.03, 0.3, 3.0),
    bias_var: float = 0.1,
    steps: int = 1000,
    seed: int = 0,
) -> tuple[dict[str, float], MLPResult]:
    """Test accuracy of each of `METHODS` on one split, every one tuned on the training part.

    ``majority``: `majority_accuracy`; ``logistic``: `logistic_accuracy`; ``SVM``:
    `svm_accuracy`; ``NNGP`` and ``NTK``: `kernel_accuracy` with the analytic kernels
    (`udl_jax.ntk.analytic_kernels`) of the ReLU MLP ``(d, *hidden, k)`` in NTK
    parametrization, the infinite-width limits of the network (Lee et al. 2018; Jacot et al.
    2018; Arora et al. 2020); ``MLP``: `mlp_accuracy`, that network at finite width, trained
    with AdamW, weight decay and stopping step chosen on validation. Accuracies are returned as
    exact fractions ``j / m`` of the m test examples (the MLP's comes as float32), so that equal
    scores compare equal.

    Args:
      ds: a standardized `Dataset` (`make_split`); the number of classes k is
        ``max(ds.y) + 1``.
      key: PRNG key; split into the kernels' validation key and the MLP's key.
      hidden: hidden widths of the MLP and of its kernels.
      weight_decays: the MLP's AdamW weight-decay grid.
      bias_var: sigma_b^2 of the MLP and of its kernels.
      steps: the MLP's training steps while tuning (`mlp_accuracy`).
      seed: seed of the MLP's initialization.

    Returns:
      ``(accuracy, mlp)``: a dict from each of `METHODS` to its test accuracy, and the
      `MLPResult` of the network.
    """
    hidden = tuple(hidden)
    if not hidden or not all(isinstance(h, int) and h > 0 for h in hidden):
        raise ValueError(f"hidden: expected one or more positive int widths, got {hidden!r}")
    d, k = ds.x.shape[1], int(ds.y.max()) + 1
    k_ker, k_mlp = jax.random.split(key)
    spec = models.MLPSpec((d, *hidden, k), parametrization="ntk", bias_var=bias_var)
    # small matrices: one BLAS thread is faster (see `one_thread`)
    with one_thread():
        kern_train = ntk.analytic_kernels(spec, ds.x)
        kern_test = ntk.analytic_kernels(spec, ds.x_test, ds.x)
    mlp = mlp_accuracy(ds, (d, *hidden, k), weight_decays, k_mlp, steps=steps, seed=seed)
    acc = {
        "majority": majority_accuracy(ds),
        "logistic": logistic_accuracy(ds),
        "SVM": svm_accuracy(ds)[0],
        "NNGP": kernel_accuracy(kern_train.nngp, kern_test.nngp, ds.y, ds.y_test, k_ker)[0],
        "NTK": kernel_accuracy(kern_train.ntk, kern_test.ntk, ds.y, ds.y_test, k_ker)[0],
        "MLP": mlp.accuracy,
    }
    m = len(ds.y_test)
    return {name: round(a * m) / m for name, a in acc.items()}, mlp


class Benchmark(NamedTuple):
    """Result of `benchmark`.

    Attributes:
      accuracy: ``accuracy[dataset][method]``, the (S,) test accuracies over the splits.
      mlp: ``mlp[dataset]``, the S `MLPResult` of the network (its tuning curves).
    """

    accuracy: dict[str, dict[str, np.ndarray]]
    mlp: dict[str, list[MLPResult]]


def benchmark(
    key: jax.Array,
    *,
    datasets: Sequence[str] = DATASETS,
    n_splits: int = 5,
    test_fraction: float = 0.3,
    hidden: Sequence[int] = (128, 128),
    weight_decays: Sequence[float] = (0.0, 0.03, 0.3, 3.0),
    bias_var: float = 0.1,
    steps: int = 1000,
    seed: int = 0,
) -> Benchmark:
    """`compare_methods` on repeated stratified splits of several datasets.

    Dataset ``i`` is split by `stratified_splits` with key ``fold_in(key, i)``, and its split
    ``s`` is standardized (`make_split`) and scored with key ``fold_in(fold_in(key, i), s)``:
    every method sees the same splits, so they can be compared split by split
    (`paired_difference`), the protocol of Arora et al. (2020) on small UCI sets.

    Args:
      key: PRNG key of the splits, validation splits and minibatches.
      datasets: names accepted by `load`.
      n_splits: number S of random splits per dataset.
      test_fraction: fraction of each dataset held out for testing.
      hidden, weight_decays, bias_var, steps, seed: as in `compare_methods`.

    Returns:
      A `Benchmark`.
    """
    datasets = tuple(datasets)
    if not datasets:
        raise ValueError("datasets: expected at least one dataset name")
    accuracy = {name: {m: [] for m in METHODS} for name in datasets}
    mlp = {name: [] for name in datasets}
    options = dict(
        hidden=hidden, weight_decays=weight_decays, bias_var=bias_var, steps=steps, seed=seed
    )
    for i, name in enumerate(datasets):
        x, y = load(name)
        k_data = jax.random.fold_in(key, i)
        splits = stratified_splits(y, k_data, n_splits, test_fraction=test_fraction)
        for s, (train_idx, test_idx) in enumerate(splits):
            acc, run = compare_methods(
                make_split(x, y, train_idx, test_idx), jax.random.fold_in(k_data, s), **options
            )
            for m in METHODS:
                accuracy[name][m].append(acc[m])
            mlp[name].append(run)
    return Benchmark(
        {name: {m: np.array(v) for m, v in d.items()} for name, d in accuracy.items()}, mlp
    )


def paired_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, int, int]:
    """Paired comparison of two methods scored on the same splits.

    Args:
      a, b: (S,) scores of methods A and B on S >= 2 shared splits.

    Returns:
      ``(mean, stderr, wins_a, wins_b)``: the mean of ``a - b``, its standard error
      ``std(a - b, ddof=1) / sqrt(S)``, and the number of splits each method won outright.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"a, b: expected two (S,) arrays with S >= 2, got {a.shape} and {b.shape}")
    d = a - b
    return (
        float(d.mean()),
        float(d.std(ddof=1) / np.sqrt(len(d))),
        int((d > 0).sum()),
        int((d < 0).sum()),
    )
