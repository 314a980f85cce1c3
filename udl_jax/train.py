"""Training on a functional core: one NNX model, or many at once.

An NNX model is split once into ``(graphdef, params, rest)``; the optimizer steps then run
inside ``lax.scan`` chunks under a single ``jax.jit``, and the Python loop only sees one call
per logged step. This is what keeps training at the speed of a hand-written scan loop (see
``benchmarks/train.py``). `fit_many` trains a stack of models of one shape together: seeds,
learning rates, weight decays, label noise, and (with padded MLPs) widths.

Optimizers come from optax as a *factory* (``optax.adam``, ``optax.sgd``, ``optax.adamw`` ...)
wrapped in ``optax.inject_hyperparams``, so hyperparameters live in the optimizer state and may
differ between the models of a stack.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from .data import Dataset
from .losses import accuracy, resolve

__all__ = [
    "fit",
    "fit_many",
    "evaluate",
    "History",
    "TrainingDiverged",
    "optimizer_step",
    "optimize",
]


class TrainingDiverged(FloatingPointError):
    """Raised when the training loss becomes non-finite. ``step`` is the first bad step."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


@dataclasses.dataclass(frozen=True)
class History:
    """Metrics logged during training, on the *whole* train and test sets.

    Attributes:
      steps: (T,) the step after which each entry was logged (0 = initialization).
      train_loss, test_loss: (T,) or, for `fit_many`, (M, T).
      train_accuracy, test_accuracy: like the losses; NaN-free, all zero for regression.
      diverged_at: first step with a non-finite loss when ``on_divergence="stop"`` ended the
        run early, else None.
      test_outputs: with ``record_outputs=True``, the model's outputs (logits for a classifier)
        on the whole test set at every log, in evaluation mode: (T, n_test, k), or
        (M, T, n_test, k) for `fit_many`. They are the outputs from which ``test_loss`` was
        computed, taken from the same forward pass. None when not recorded.
    """

    steps: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray
    train_accuracy: np.ndarray
    test_accuracy: np.ndarray
    diverged_at: int | None = None
    test_outputs: np.ndarray | None = None


# --------------------------------------------------------------------------- the step


def optimizer_step(loss_fn: Callable, tx: optax.GradientTransformation, params, opt_state, *args):
    """One step of an optax optimizer on ``loss_fn``: the step every training loop here takes.

    Pure and traceable: `optimize` scans it, `fit` and `fit_many` build their minibatch step on
    it, and ``jax.vmap`` runs it for a stack of models.

    Args:
      loss_fn: ``loss_fn(params, *args) -> (loss, aux)``, a scalar loss and any auxiliary pytree
        (e.g. updated batch-norm statistics; ``None`` when there is none). Gradients are taken
        with respect to ``params`` only.
      tx: an optax gradient transformation, e.g. ``optax.sgd(0.1)``.
      params: the parameter pytree.
      opt_state: ``tx``'s state for ``params`` (``tx.init(params)``).
      *args: further arguments of ``loss_fn`` (a minibatch, a PRNG key, a model's state).

    Returns:
      ``(params, opt_state, loss, aux)``: the parameters and optimizer state after the step, and
      the loss and auxiliary output at the parameters *before* it.
    """
    params, opt_state, loss, aux, _ = _step(loss_fn, tx, params, opt_state, *args)
    return params, opt_state, loss, aux


def _step(loss_fn, tx, params, opt_state, *args):
    """`optimizer_step` that also returns the gradient (for `optimize`'s ``record``)."""
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, *args)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, aux, grads


def optimize(
    loss_fn: Callable,
    tx: optax.GradientTransformation,
    params,
    steps: int | None = None,
    *,
    xs=None,
    opt_state=None,
    record: Callable | None = None,
):
    """``steps`` optimizer steps on ``loss_fn`` inside one ``lax.scan`` (`optimizer_step`).

    Pure and traceable (jit it, or vmap it over initializations); the loop is compiled once.

    Args:
      loss_fn: ``loss_fn(params) -> (loss, aux)``, or with ``xs``, ``loss_fn(params, x_t) ->
        (loss, aux)`` where ``x_t`` is step t's slice of ``xs`` (a minibatch index, a PRNG key).
      tx: an optax gradient transformation.
      params: the initial parameter pytree.
      steps: the number of steps; may be omitted when ``xs`` is given (its leading length).
      xs: optional per-step inputs, a pytree of arrays with leading axis ``steps``.
      opt_state: the optimizer state to continue from (default ``tx.init(params)``).
      record: optional ``record(params, grads, new_params) -> pytree``, a measurement of each
        step (norms of weights, gradients, updates); its outputs are stacked over steps and
        returned in place of ``aux``.

    Returns:
      ``(params, opt_state, losses, aux)``: the final parameters and state, the (steps,) losses
      and the stacked auxiliary outputs (or ``record``'s), each taken *before* its step.
    """
    if xs is None:
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps: expected a positive int, got {steps!r}")
    elif steps is not None and jax.tree.leaves(xs)[0].shape[0] != steps:
        raise ValueError(
            f"xs: expected a leading axis of length steps={steps}, "
            f"got {jax.tree.leaves(xs)[0].shape[0]}"
        )
    if opt_state is None:
        opt_state = tx.init(params)

    def body(carry, x):
        args = () if xs is None else (x,)
        params, opt_state, loss, aux, grads = _step(loss_fn, tx, *carry, *args)
        if record is not None:
            aux = record(carry[0], grads, params)
        return (params, opt_state), (loss, aux)

    (params, opt_state), (losses, aux) = jax.lax.scan(
        body, (params, opt_state), xs, length=steps if xs is None else None
    )
    return params, opt_state, losses, aux


# ------------------------------------------------------------------------------ the core


def _check(data, steps, batch_size, log_every, loss, on_divergence):
    if not isinstance(data, Dataset):
        raise TypeError(f"data: expected a udl_jax.data.Dataset, got {type(data).__name__}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive int, got {steps!r}")
    if batch_size is not None and not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(
            f"batch_size: expected a positive int or None (full batch), got {batch_size!r}"
        )
    if log_every is None:
        target = max(1, steps // 40)
        log_every = max(d for d in range(1, target + 1) if steps % d == 0)
    if not isinstance(log_every, int) or log_every < 1 or steps % log_every:
        raise ValueError(
            f"log_every: expected a positive divisor of steps={steps}, got {log_every!r}"
        )
    loss = resolve(loss)
    if on_divergence not in ("raise", "stop"):
        raise ValueError(f"on_divergence: expected 'raise' or 'stop', got {on_divergence!r}")
    return log_every, loss


def _functions(graphdef_train, graphdef_eval, loss_fn, tx, batch_size):
    """Pure per-model functions: one optimizer step and a full-data evaluation."""

    def step(carry, key, x, y):
        params, rest, opt_state = carry
        if batch_size is None:
            xb, yb = x, y
        else:
            idx = jax.random.randint(key, (batch_size,), 0, x.shape[0])
            xb, yb = x[idx], y[idx]

        def objective(p):
            model = nnx.merge(graphdef_train, p, rest, copy=True)
            out = model(xb)
            return loss_fn(out, yb), nnx.state(model, nnx.Not(nnx.Param))

        params, opt_state, value, new_rest = optimizer_step(objective, tx, params, opt_state)
        return (params, new_rest, opt_state), value

    def evaluate(params, rest, x, y, x_test, y_test):
        # One forward pass over train and test inputs together: in evaluation mode every
        # output depends on its own input only, and the model is traced once, not twice.
        n = x.shape[0]
        both = nnx.merge(graphdef_eval, params, rest, copy=True)(jnp.concatenate([x, x_test]))
        out = both[n:]
        train_loss, train_acc = loss_fn(both[:n], y), accuracy(both[:n], y)
        return train_loss, train_acc, loss_fn(out, y_test), accuracy(out, y_test), out

    return step, evaluate


def _template(factory, hparams):
    """The hashable part of a set of hyperparameters: numeric values (which ``inject_hyperparams``
    keeps in the optimizer state) become None; static ones (e.g. ``nesterov=True``) stay."""

    def numeric(v):
        return isinstance(v, (int, float, np.ndarray, jax.Array, list, tuple)) and not isinstance(
            v, bool
        )

    return factory, tuple(sorted((k, None if numeric(v) else v) for k, v in hparams.items()))


def _tx(template):
    factory, items = template
    return factory(**{k: 0.0 if v is None else v for k, v in items})


@functools.lru_cache(maxsize=64)
def _compiled_single(graphdef_train, graphdef_eval, loss_fn, template, batch_size, record=False):
    """Jitted chunk and evaluation functions for `fit`, built once per architecture and setting.

    The evaluation returns train loss, train accuracy, test loss, test accuracy and, with
    ``record``, the test outputs of the same forward pass that gave the test metrics.
    """
    step, evaluate_both = _functions(
        graphdef_train, graphdef_eval, loss_fn, _tx(template), batch_size
    )

    def chunk(carry, keys, x, y):
        return jax.lax.scan(lambda c, k: step(c, k, x, y), carry, keys)

    def evaluate(params, rest, x, y, x_test, y_test):
        *metrics, out = evaluate_both(params, rest, x, y, x_test, y_test)
        return (*metrics, out) if record else tuple(metrics)

    return jax.jit(chunk), jax.jit(evaluate), chunk, evaluate


@functools.lru_cache(maxsize=64)
def _compiled_many(graphdef_train, graphdef_eval, loss_fn, template, batch_size, record=False):
    """`_compiled_single`'s functions vectorized over a leading model axis, for `fit_many`."""
    _, _, chunk, evaluate = _compiled_single(
        graphdef_train, graphdef_eval, loss_fn, template, batch_size, record
    )
    return (
        jax.jit(jax.vmap(chunk, in_axes=(0, 0, None, 0), out_axes=(0, 1))),
        jax.jit(jax.vmap(evaluate, in_axes=(0, 0, None, 0, None, None))),
    )


def _split(model):
    """Graph definitions for training and evaluation mode, plus the state."""
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model: expected a flax.nnx.Module, got {type(model).__name__}")
    m = nnx.clone(model)
    m.eval()
    graphdef_eval = nnx.graphdef(m)
    m.train()
    graphdef_train, params, rest = nnx.split(m, nnx.Param, ...)
    return graphdef_train, graphdef_eval, params, rest


def _progress(total: int, enabled: bool | None):
    """A progress bar for runs longer than two seconds.

    With ``enabled=None`` it is shown only where it renders as one bar: a notebook front-end with
    ipywidgets (Colab, Jupyter) or a terminal. In a kernel without widgets (nbval, the book
    build) text bars would print a line per update into the chapter, so none is drawn.
    """
    if enabled is None:
        try:
            import ipywidgets  # noqa: F401
            from IPython import get_ipython

            enabled = get_ipython() is not None and "IPKernelApp" in get_ipython().config
        except (ImportError, AttributeError):
            enabled = False
        enabled = enabled or sys.stderr.isatty()
    if enabled:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(total=total, delay=2.0, disable=not enabled, leave=False, unit="step")


def _learning_rate(hparams) -> str:
    lr = hparams.get("learning_rate", np.nan)
    if callable(lr):  # an optax schedule (inject_hyperparams evaluates it at every step)
        return "set by a schedule"
    lr = np.asarray(lr)
    return np.array2string(lr, precision=4) if lr.ndim else f"{float(lr):.4g}"


def _run(
    carry,
    chunk,
    evaluate,
    step_keys,
    x,
    y,
    x_test,
    y_test,
    log_every,
    hparams,
    on_divergence,
    progress,
    n_models=None,
):
    """Python loop over jitted scan chunks; logs after each chunk and watches for divergence."""
    n_chunks = step_keys.shape[0]
    logs = [evaluate(carry[0], carry[1], x, y, x_test, y_test)]
    diverged_at = None
    with _progress(n_chunks * log_every, progress) as bar:
        for c in range(n_chunks):
            new_carry, batch_losses = chunk(carry, step_keys[c], x, y)
            batch_losses = np.asarray(batch_losses)
            metrics = evaluate(new_carry[0], new_carry[1], x, y, x_test, y_test)
            bad = ~np.isfinite(batch_losses)
            if bad.any() or not all(np.isfinite(np.asarray(m)).all() for m in metrics[:4]):
                first = (
                    np.argmax(bad.reshape(bad.shape[0], -1).any(-1)) if bad.any() else log_every - 1
                )
                diverged_at = c * log_every + int(first) + 1
                which = ""
                if n_models is not None:
                    models = np.flatnonzero(bad.any(0) if bad.any() else np.ones(n_models, bool))
                    which = f" (models {models.tolist()})"
                msg = (
                    f"training diverged at step {diverged_at}{which} with learning rate "
                    f"{_learning_rate(hparams)}: the loss is not finite. Lower the learning rate."
                )
                if on_divergence == "raise":
                    raise TrainingDiverged(msg, diverged_at)
                warnings.warn(
                    msg + " Returning the history up to the last finite log.", stacklevel=3
                )
                break
            carry = new_carry
            logs.append(metrics)
            bar.update(log_every)
    steps = np.arange(len(logs)) * log_every
    train_loss, train_acc, test_loss, test_acc = (
        np.stack([np.asarray(m[i]) for m in logs], axis=-1) for i in range(4)
    )
    outputs = None
    if len(logs[0]) > 4:  # recorded test outputs: the log axis goes after the model axis
        outputs = np.stack([np.asarray(m[4]) for m in logs], axis=0 if n_models is None else 1)
    return carry, History(
        steps,
        train_loss=train_loss,
        test_loss=test_loss,
        train_accuracy=train_acc,
        test_accuracy=test_acc,
        diverged_at=diverged_at,
        test_outputs=outputs,
    )


def _check_record(record_outputs) -> bool:
    if not isinstance(record_outputs, (bool, np.bool_)):
        raise TypeError(f"record_outputs: expected True or False, got {record_outputs!r}")
    return bool(record_outputs)


def _optimizer(optimizer, learning_rate, optimizer_kwargs):
    if not callable(optimizer) or isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            "optimizer: expected an optax optimizer *factory* such as optax.adam "
            "(not optax.adam(1e-3)); pass the learning rate as learning_rate="
        )
    hparams = {"learning_rate": learning_rate, **dict(optimizer_kwargs or {})}
    return _injected(optimizer), hparams


@functools.lru_cache(maxsize=32)
def _init_many(factory):
    """Jitted optimizer-state initialization vectorized over models (numeric hparams only)."""
    return jax.jit(jax.vmap(lambda params, hparams: factory(**hparams).init(params)))


@functools.lru_cache(maxsize=32)
def _injected(optimizer):
    """``optax.inject_hyperparams(optimizer)``, made once per factory so compiled functions
    keyed on it are reused across calls."""
    return optax.inject_hyperparams(optimizer)


def fit(
    model: nnx.Module,
    data: Dataset,
    *,
    key: jax.Array,
    steps: int,
    learning_rate: float,
    optimizer: Callable[..., optax.GradientTransformation] = optax.adam,
    optimizer_kwargs: Mapping[str, float] | None = None,
    batch_size: int | None = 100,
    loss: str | Callable = "cross_entropy",
    log_every: int | None = None,
    on_divergence: str = "raise",
    progress: bool | None = None,
    record_outputs: bool = False,
):
    """Train one model with an optax optimizer.

    Minibatches are drawn with replacement (``batch_size`` indices per step, uniformly);
    ``batch_size=None`` is full-batch gradient descent. Metrics are computed on the whole
    train and test sets every ``log_every`` steps, in evaluation mode.

    Args:
      model: an NNX module; it is not modified.
      data: a `udl_jax.data.Dataset`.
      key: PRNG key for the minibatches (and nothing else: the model holds its own init).
      steps: number of optimizer steps.
      learning_rate: step size, or an optax schedule (a function of the step count).
      optimizer: an optax optimizer factory, e.g. ``optax.adam``, ``optax.sgd``, ``optax.adamw``.
      optimizer_kwargs: its other hyperparameters, e.g. ``{"weight_decay": 1e-4}``.
      batch_size: minibatch size, or None for full batch.
      loss: ``"cross_entropy"``, ``"mse"`` (`udl_jax.losses`), or a function ``loss(outputs, y)``.
      log_every: steps between logs; must divide ``steps`` (default: about 40 logs).
      on_divergence: ``"raise"`` a `TrainingDiverged` error at the first non-finite loss, or
        ``"stop"``: warn and return the model and history of the last finite log.
      progress: show a progress bar (None: where one can be drawn, and only if the run
        lasts more than 2 s).
      record_outputs: also keep the model's test-set outputs at every log
        (``history.test_outputs``, shape (T, n_test, k)). They come from the forward pass
        that computes the test metrics, inside the compiled evaluation: nothing is re-run.
        Memory is T x n_test x k floats.

    Returns:
      ``(trained_model, history)``: a new NNX model and a `History` with (T,) arrays.
    """
    log_every, loss_fn = _check(data, steps, batch_size, log_every, loss, on_divergence)
    record = _check_record(record_outputs)
    factory, hparams = _optimizer(optimizer, learning_rate, optimizer_kwargs)
    graphdef_train, graphdef_eval, params, rest = _split(model)
    chunk, evaluate, _, _ = _compiled_single(
        graphdef_train, graphdef_eval, loss_fn, _template(factory, hparams), batch_size, record
    )
    x, y, x_test, y_test = (jnp.asarray(a) for a in (data.x, data.y, data.x_test, data.y_test))
    keys = jax.random.split(key, steps).reshape(steps // log_every, log_every)
    carry = (params, rest, factory(**hparams).init(params))
    carry, history = _run(
        carry,
        chunk,
        evaluate,
        keys,
        x,
        y,
        x_test,
        y_test,
        log_every,
        hparams,
        on_divergence,
        progress,
    )
    trained = nnx.merge(graphdef_eval, carry[0], carry[1])
    trained.train()
    return trained, history


# Stacking and unstacking pytrees along the model axis go through NumPy: done with jnp leaf by
# leaf, every leaf shape would compile its own small XLA program (a hundred of them for a deep
# MLP, seconds on a cold start), and one jitted function per structure costs about as much.
# PRNG key arrays (e.g. dropout's RNG state) have no NumPy dtype and stay in jnp.
def _is_key(a) -> bool:
    return jnp.issubdtype(a.dtype, jax.dtypes.prng_key)


def _stack(trees):
    def stack(*leaves):
        if _is_key(leaves[0]):
            return jnp.stack(leaves)
        return jnp.asarray(np.stack([np.asarray(a) for a in leaves]))

    return jax.tree.map(stack, *trees)


def _unstack(tree, count):
    """The first ``count`` entries along axis 0, as a list of pytrees."""
    leaves, treedef = jax.tree.flatten(tree)
    rows = [a if _is_key(a) else np.asarray(a) for a in leaves]
    return [
        treedef.unflatten([a[i] if _is_key(a) else jnp.asarray(a[i]) for a in rows])
        for i in range(count)
    ]


# Padding, slicing and concatenation are needed only when models are trained in groups.


@functools.partial(jax.jit, static_argnums=1)
def _pad(tree, pad):
    """Repeat the last entry along axis 0 ``pad`` times."""
    return jax.tree.map(lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad, 0)]), tree)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _rows(tree, start, stop):
    return jax.tree.map(lambda a: a[start:stop], tree)


@jax.jit
def _concatenate(trees):
    return jax.tree.map(lambda *a: jnp.concatenate(a), *trees)


def _stack_models(models):
    """``(graphdef_train, graphdef_eval, params, rest)`` of M models of one graph definition,
    their states stacked along a leading model axis."""
    splits = [_split(m) for m in models]
    graphdef_train, graphdef_eval = splits[0][0], splits[0][1]
    for i, s in enumerate(splits[1:], 1):
        if s[0] != graphdef_train:
            raise ValueError(
                f"models: model {i} has a different graph definition from model 0 "
                "(architecture or static attributes differ); fit_many needs one shape"
            )
    params, rest = _stack([s[2] for s in splits]), _stack([s[3] for s in splits])
    return graphdef_train, graphdef_eval, params, rest


def _per_model(hparams, m_count):
    """Each hyperparameter as (M,) values: a scalar is repeated, M values are kept."""
    per_model = {}
    for name, value in hparams.items():
        v = jnp.asarray(value, jnp.float32)
        if v.ndim == 0:
            v = jnp.full((m_count,), v)
        if v.shape != (m_count,):
            raise ValueError(
                f"{name}: expected a scalar or {m_count} values (one per model), "
                f"got shape {v.shape}"
            )
        per_model[name] = v
    return per_model


def _labels_per_model(data, labels, m_count):
    """(M, n, ...) training labels: ``labels`` if given, else ``data.y`` for every model."""
    y_all = np.asarray(data.y) if labels is None else np.asarray(labels)
    if labels is None:
        y_all = np.broadcast_to(y_all, (m_count, *y_all.shape))
    if y_all.shape != (m_count, *np.shape(data.y)):
        raise ValueError(
            f"labels: expected shape {(m_count, *np.shape(data.y))}, got {y_all.shape}"
        )
    return y_all


def _model_sharding(group):
    """A sharding of the model axis over the devices, or None on one device (or when the group
    does not divide evenly)."""
    devices = jax.devices()
    if len(devices) > 1 and group % len(devices) == 0:
        mesh = jax.sharding.Mesh(np.array(devices), ("models",))
        return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("models"))
    return None


def _join_histories(histories, m_count, record):
    """One `History` (M, T) from the groups' histories; a group that stopped early (divergence)
    cuts every group to its length."""
    if len({len(h.steps) for h in histories}) > 1:
        t = min(len(h.steps) for h in histories)
        histories = [
            dataclasses.replace(
                h,
                **{
                    f: getattr(h, f)[..., :t]
                    for f in ("steps", "train_loss", "test_loss", "train_accuracy", "test_accuracy")
                },
                test_outputs=None if h.test_outputs is None else h.test_outputs[:, :t],
            )
            for h in histories
        ]
    diverged = [h.diverged_at for h in histories if h.diverged_at is not None]
    fields = ["train_loss", "test_loss", "train_accuracy", "test_accuracy"]
    if record:
        fields.append("test_outputs")
    cat = {f: np.concatenate([getattr(h, f) for h in histories])[:m_count] for f in fields}
    return History(histories[0].steps, **cat, diverged_at=min(diverged) if diverged else None)


def fit_many(
    models: Sequence[nnx.Module],
    data: Dataset,
    *,
    key: jax.Array,
    steps: int,
    learning_rate: float | Sequence[float],
    optimizer: Callable[..., optax.GradientTransformation] = optax.adam,
    optimizer_kwargs: Mapping[str, float | Sequence[float]] | None = None,
    labels: np.ndarray | None = None,
    batch_size: int | None = 100,
    loss: str | Callable = "cross_entropy",
    log_every: int | None = None,
    models_per_batch: int | None = None,
    on_divergence: str = "raise",
    progress: bool | None = None,
    record_outputs: bool = False,
):
    """Train M models of one shape together, vectorized with ``vmap``.

    The models must share one graph definition (same architecture and static attributes;
    e.g. different seeds, or padded `udl_jax.models.MLP` of different true widths with one
    ``max_width``). Each model gets its own minibatch stream, hyperparameters and labels.
    When several devices are present the model axis is sharded across them
    (``jax.sharding``); ``models_per_batch`` trains the stack in groups (1 = sequentially,
    reusing one compilation), which can be faster on a small CPU.

    Args:
      models: M NNX modules with identical graph definitions.
      data: the shared inputs (and labels unless ``labels`` is given).
      key: PRNG key; split into one minibatch stream per model.
      steps, batch_size, loss, log_every, on_divergence, progress: as in `fit`.
      record_outputs: as in `fit`; ``history.test_outputs`` then has shape
        (M, T, n_test, k).
      learning_rate: a scalar, or M values (one per model).
      optimizer: an optax optimizer factory.
      optimizer_kwargs: other hyperparameters, each a scalar or M values.
      labels: optional (M, n) training labels, one row per model (e.g. different label noise);
        test labels stay ``data.y_test``.
      models_per_batch: group size along the model axis (default: all M at once).

    Returns:
      ``(trained_models, history)``: a list of M NNX models and a `History` whose metric
      arrays have shape (M, T).
    """
    models = list(models)
    if not models:
        raise ValueError("models: expected at least one model")
    log_every, loss_fn = _check(data, steps, batch_size, log_every, loss, on_divergence)
    record = _check_record(record_outputs)
    m_count = len(models)
    graphdef_train, graphdef_eval, params, rest = _stack_models(models)
    factory, hparams = _optimizer(optimizer, learning_rate, optimizer_kwargs)
    per_model = _per_model(hparams, m_count)
    y_all = _labels_per_model(data, labels, m_count)

    chunk, evaluate = _compiled_many(
        graphdef_train, graphdef_eval, loss_fn, _template(factory, hparams), batch_size, record
    )
    opt_state = _init_many(factory)(params, per_model)

    group = m_count if models_per_batch is None else models_per_batch
    if not isinstance(group, int) or group < 1:
        raise ValueError(
            f"models_per_batch: expected a positive int or None, got {models_per_batch!r}"
        )
    group = min(group, m_count)
    n_groups = math.ceil(m_count / group)
    pad = n_groups * group - m_count

    def padded(tree):  # repeat the last model so every group has the same shape
        return _pad(tree, pad) if pad else tree

    carry = padded((params, rest, opt_state))
    y_all = padded(jnp.asarray(y_all))
    model_keys = padded(jax.random.split(key, m_count))
    step_keys = jax.vmap(lambda k: jax.random.split(k, steps))(model_keys)
    step_keys = step_keys.reshape(-1, steps // log_every, log_every).swapaxes(0, 1)
    x, x_test, y_test = jnp.asarray(data.x), jnp.asarray(data.x_test), jnp.asarray(data.y_test)

    sharding = _model_sharding(group)

    carries, histories = [], []
    for g in range(n_groups):
        sl = slice(g * group, (g + 1) * group)
        c = carry if n_groups == 1 else _rows(carry, sl.start, sl.stop)
        if n_groups == 1:
            keys_g, y_g, hp = step_keys, y_all, per_model
        else:
            keys_g, y_g = step_keys[:, sl], y_all[sl]
            hp = {k: v[sl] for k, v in padded(per_model).items()}
        if sharding is not None:
            c, y_g = jax.device_put((c, y_g), sharding)
        c, h = _run(
            c,
            chunk,
            evaluate,
            keys_g,
            x,
            y_g,
            x_test,
            y_test,
            log_every,
            hp,
            on_divergence,
            progress,
            n_models=group,
        )
        carries.append(c)
        histories.append(h)

    history = _join_histories(histories, m_count, record)
    params, rest = carries[0][:2] if n_groups == 1 else _concatenate([c[:2] for c in carries])
    trained = []
    for p, r in zip(_unstack(params, m_count), _unstack(rest, m_count), strict=True):
        m = nnx.merge(graphdef_eval, p, r)
        m.train()
        trained.append(m)
    return trained, history


def evaluate(
    model: nnx.Module, x: np.ndarray, y: np.ndarray, loss: str | Callable = "cross_entropy"
):
    """Loss and accuracy of a model (evaluation mode) on ``(x, y)``; returns two floats."""
    loss_fn = resolve(loss)
    _, graphdef_eval, params, rest = _split(model)
    out = nnx.merge(graphdef_eval, params, rest)(jnp.asarray(x))
    y = jnp.asarray(y)
    return float(loss_fn(out, y)), float(accuracy(out, y))
