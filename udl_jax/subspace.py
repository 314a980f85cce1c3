"""Networks trained in a random subspace, and Gaussian posteriors over it, for bounds.

A network with D parameters is restricted to ``theta = theta0 + P z``: ``theta0`` is its
initialization, ``P`` a fixed random (D, d) matrix and only the d coordinates ``z`` are trained
(Li et al. 2018, "intrinsic dimension"). The random matrix is fixed by a seed chosen before the
data are seen, so ``z`` alone describes the trained network: quantized and entropy-coded it
gives a short codeword, hence an Occam bound (Lotfi et al. 2022; see `udl_jax.bounds`). The
same d coordinates carry a Gaussian posterior ``N(mu, diag sigma^2)`` whose PAC-Bayes bound
against a prior ``N(0, lambda I)`` centred at the initialization is optimized as in Dziugaite &
Roy (2017), who did the same over all D weights.

`SubspaceMLP` is an NNX module (its only `nnx.Param` is ``z``), so `udl_jax.train.fit` and
`udl_jax.train.fit_many` train it like any other model; `mlp_apply` is the pure forward pass of
a flat parameter vector (the one MLP forward pass, `udl_jax.models.mlp_forward`, on weights
read from the vector), used for posterior samples.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from . import bounds, losses, models, train
from .models import MLP

__all__ = [
    "SubspaceMLP",
    "Frozen",
    "flatten_mlp",
    "mlp_apply",
    "gaussian_posterior_bound_objective",
    "optimize_gaussian_posterior",
    "snap_to_grid",
    "gibbs_errors",
]


class Frozen(nnx.Variable):
    """State that is part of a model but not trained (the initialization and the projection)."""


def flatten_mlp(mlp: MLP) -> jax.Array:
    """The parameters of a standard-parametrized `MLP` as one vector, layer by layer (W, then b).

    Args:
      mlp: an unpadded `udl_jax.models.MLP` in standard parametrization.

    Returns:
      A (D,) float32 array, the order `mlp_apply` reads.
    """
    _check_mlp(mlp)
    parts = []
    for layer in mlp.layers:
        parts += [layer.w[...].ravel(), layer.b[...]]
    return jnp.concatenate(parts)


def mlp_apply(widths: tuple[int, ...], activation: str, theta: jax.Array, x: jax.Array):
    """Forward pass of an MLP whose parameters are the flat vector `theta`.

    Args:
      widths: layer sizes, input to output (e.g. ``(40, 64, 64, 10)``).
      activation: a key of `udl_jax.models.ACTIVATIONS`.
      theta: (D,) parameters in the order of `flatten_mlp`, D = ``MLPSpec(widths).num_params``.
      x: (..., widths[0]) inputs.

    Returns:
      (..., widths[-1]) outputs; the same as the `MLP` whose `flatten_mlp` is `theta`.
    """
    num = models.MLPSpec(tuple(widths)).num_params
    if theta.shape != (num,):
        raise ValueError(f"theta: expected shape ({num},) for widths {widths}, got {theta.shape}")
    weights, start = [], 0
    for a, b in zip(widths[:-1], widths[1:], strict=False):
        w = theta[start : start + a * b].reshape(a, b)
        weights.append((w, theta[start + a * b : start + (a + 1) * b]))
        start += (a + 1) * b

    def affine(i, h):
        w, bias = weights[i]
        return h @ w + bias

    return models.mlp_forward(affine, x, num_layers=len(weights), activation=activation).outputs


def _check_mlp(mlp):
    if not isinstance(mlp, MLP):
        raise ValueError(f"mlp: expected a udl_jax.models.MLP, got {type(mlp).__name__}")
    if mlp.parametrization != "standard" or mlp.max_width is not None or mlp.residual:
        raise ValueError(
            "mlp: expected a standard-parametrized MLP without max_width padding or residuals"
        )


class SubspaceMLP(nnx.Module):
    """An MLP restricted to the random affine subspace ``theta = theta0 + P z`` (Li et al. 2018).

    ``theta0`` is the MLP's initialization and ``P`` has i.i.d. ``N(0, 1 / D)`` entries, so its
    d columns are nearly orthonormal and ``|P z| ~ |z|``: a step in ``z`` moves the weights by
    about as much. Only ``z`` (initialized at 0, i.e. at ``theta0``) is an `nnx.Param`; ``theta0``
    and ``P`` are `Frozen`. Two instances built with the same ``dim`` and architecture share one
    graph definition, so `udl_jax.train.fit_many` trains them together (seeds, labels).

    Args:
      mlp: the network to restrict (see `flatten_mlp`); its weights become ``theta0``.
      dim: subspace dimension d >= 1.
      key: PRNG key for ``P`` (the decoder of a compression bound needs only this key).

    Call: ``model(x)`` with x (..., widths[0]) returns (..., widths[-1]).
    """

    def __init__(self, mlp: MLP, dim: int, *, key: jax.Array):
        _check_mlp(mlp)
        if not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim: expected a positive int, got {dim!r}")
        theta0 = flatten_mlp(mlp)
        num = theta0.shape[0]
        self.widths, self.activation = tuple(mlp.widths), mlp.activation
        self.theta0 = Frozen(theta0)
        self.projection = Frozen(jax.random.normal(key, (num, int(dim))) / math.sqrt(num))
        self.z = nnx.Param(jnp.zeros(int(dim)))

    def theta(self, z: jax.Array | None = None) -> jax.Array:
        """The full (D,) parameter vector ``theta0 + P z`` (default: the model's own z)."""
        z = self.z[...] if z is None else z
        return self.theta0[...] + self.projection[...] @ z

    def apply(self, z: jax.Array, x: jax.Array) -> jax.Array:
        """Outputs at subspace coordinates `z` (a pure function of z, for posterior samples)."""
        return mlp_apply(self.widths, self.activation, self.theta(z), x)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.apply(self.z[...], x)


# --------------------------------------------------------------------- Dziugaite & Roy (2017)


def gaussian_posterior_bound_objective(model, mu, log_sigma, log_lambda, x, y, key, n, delta):
    """Differentiable surrogate of the PAC-Bayes bound, Dziugaite & Roy (2017, eq. 6 with kl
    relaxed by Pinsker): ``CE(one posterior sample on the batch) + sqrt((KL + ln(2 sqrt(n) /
    delta)) / (2 n))``, with ``KL = KL(N(mu, diag sigma^2) || N(0, lambda I))`` in subspace
    coordinates (the prior is centred at ``z = 0``, the initialization).

    Args:
      model: a `SubspaceMLP`.
      mu, log_sigma: (d,) posterior mean and log standard deviations.
      log_lambda: log of the prior variance (scalar).
      x, y: a minibatch of inputs and integer labels.
      key: PRNG key for the one posterior sample (reparametrization trick).
      n, delta: the training-set size and failure probability of the bound.

    Returns:
      ``(objective, kl)``, two scalars (the objective in nats, kl in nats).
    """
    sigma = jnp.exp(log_sigma)
    z = mu + sigma * jax.random.normal(key, mu.shape)
    logits = model.apply(z, x)
    ce = losses.cross_entropy(logits, y)
    kl = bounds.kl_diag_gaussians(mu, sigma, 0.0, jnp.exp(0.5 * log_lambda))
    return ce + jnp.sqrt((kl + jnp.log(2 * jnp.sqrt(n) / delta)) / (2 * n)), kl


def optimize_gaussian_posterior(
    model: SubspaceMLP,
    x,
    y,
    *,
    key: jax.Array,
    delta: float,
    steps: int = 300,
    learning_rate: float = 0.01,
    batch_size: int = 500,
    sigma_init: float = 0.01,
    lambda_init: float = 1.0,
):
    """Optimize a Gaussian posterior ``N(mu, diag sigma^2)`` over the subspace coordinates.

    Dziugaite & Roy (2017, sec. 3): start ``mu`` at the trained coordinates ``model.z``, and
    minimize `gaussian_posterior_bound_objective` over ``mu``, ``log sigma`` and the prior
    variance ``log lambda`` with Adam, on minibatches and one posterior sample per step (the
    reparametrization trick). The prior variance must afterwards be rounded to a grid fixed in
    advance, and the union bound over that grid paid (see `snap_to_grid`).

    Args:
      model: a trained `SubspaceMLP`.
      x, y: training data (n, widths[0]) and (n,) integer labels; n is the bound's n.
      key: PRNG key for the minibatches and posterior samples.
      delta: the failure probability of the bound being optimized.
      steps, learning_rate, batch_size: the optimization.
      sigma_init, lambda_init: starting posterior standard deviation and prior variance.

    Returns:
      ``(mu, sigma, lam)``: (d,) posterior mean and standard deviations, and the (continuous)
      optimized prior variance.
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    n = x.shape[0]
    if batch_size > n:
        raise ValueError(f"batch_size: expected <= n = {n}, got {batch_size}")
    mu0 = model.z[...]
    params = (mu0, jnp.full_like(mu0, math.log(sigma_init)), jnp.asarray(math.log(lambda_init)))
    tx = optax.adam(learning_rate)
    mu, log_sigma, log_lam = _optimize(model, params, tx, x, y, key, steps, batch_size, delta)
    return mu, jnp.exp(log_sigma), float(jnp.exp(log_lam))


@nnx.jit(static_argnums=(2, 6, 7))
def _optimize(model, params, tx, x, y, key, steps, batch_size, delta):
    n = x.shape[0]

    def loss_fn(p, k):  # the bound's objective on the minibatch and noise that k draws
        k_batch, k_noise = jax.random.split(k)
        idx = jax.random.randint(k_batch, (batch_size,), 0, n)
        value = gaussian_posterior_bound_objective(model, *p, x[idx], y[idx], k_noise, n, delta)
        return value[0], None

    params, *_ = train.optimize(loss_fn, tx, params, xs=jax.random.split(key, steps))
    return params


def snap_to_grid(value: float, grid) -> tuple[float, int]:
    """The grid point nearest to `value` in log scale, and the grid size K (for the union
    bound: each grid point is given ``delta / K``). Returns ``(grid_value, K)``."""
    grid = np.asarray(grid, np.float64)
    if grid.ndim != 1 or grid.size == 0 or not np.all(grid > 0):
        raise ValueError(f"grid: expected a non-empty 1D array of positive values, got {grid!r}")
    if not value > 0:
        raise ValueError(f"value: expected a positive number, got {value!r}")
    return float(grid[np.argmin(np.abs(np.log(grid) - math.log(value)))]), int(grid.size)


def gibbs_errors(model: SubspaceMLP, mu, sigma, x, y, *, key: jax.Array, num_samples: int):
    """0-1 errors on ``(x, y)`` of `num_samples` networks drawn from ``N(mu, diag sigma^2)``.

    The mean is a Monte Carlo estimate of the Gibbs classifier's error; Dziugaite & Roy
    (2017, sec. 3) bound the true Gibbs train error by ``kl_inverse_upper(mean,
    ln(2 / delta') / num_samples)`` (a Chernoff bound on the sample mean, probability
    ``1 - delta'``).

    Returns:
      A (num_samples,) NumPy array of error rates.
    """
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples: expected a positive int, got {num_samples!r}")
    return np.asarray(
        _gibbs(
            model,
            jnp.asarray(mu),
            jnp.asarray(sigma),
            jnp.asarray(x),
            jnp.asarray(y),
            key,
            num_samples,
        )
    )


@nnx.jit(static_argnums=(6,))
def _gibbs(model, mu, sigma, x, y, key, num_samples):
    def one(k):
        z = mu + sigma * jax.random.normal(k, mu.shape)
        return jnp.mean(jnp.argmax(model.apply(z, x), -1) != y)

    return jax.lax.map(one, jax.random.split(key, num_samples))
