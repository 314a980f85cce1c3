"""Models for the book: a Flax NNX MLP, a 1D CNN, and the bridge to pure functions.

Chapters build models as NNX modules (readable, stateful objects) but the theory is about
functions of parameters: an NTK differentiates with respect to them, a Hessian takes their
second derivative, training scans over them. `functional` is the one bridge between the two
worlds: it returns ``(apply_fn, params, rest)`` with ``apply_fn(params, x)`` pure.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from . import losses

__all__ = [
    "MLP",
    "MLPSpec",
    "mlp_forward",
    "Forward",
    "CNN1D",
    "Dense",
    "Mask",
    "functional",
    "loss_fn",
    "recompute_batch_stats",
    "param_count",
    "standard_normal",
    "ACTIVATIONS",
    "PARAMETRIZATIONS",
    "NORMALIZATIONS",
]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "erf": jax.scipy.special.erf,
    "identity": lambda z: z,
    "gelu": jax.nn.gelu,
}
"""Activations by name. The analytic kernels of the infinite-width chapters exist for
``relu``, ``erf`` and ``identity``."""

PARAMETRIZATIONS = ("standard", "ntk")

NORMALIZATIONS = (None, "batch")
"""Normalizations an `MLP` may put after each hidden affine layer: none, or batch norm."""

_DEFAULT_WEIGHT_VAR = {"relu": 2.0, "gelu": 2.0}


_BLOCK = 1 << 16


@jax.jit
def _normal_block(key: jax.Array, i: jax.Array) -> jax.Array:
    return jax.random.normal(jax.random.fold_in(key, i), (_BLOCK,))


def standard_normal(key: jax.Array, shape: tuple[int, ...]):
    """Standard normal draws of any shape, made from blocks of one fixed size.

    Eager ``jax.random.normal(key, shape)`` compiles a kernel for every new shape (seconds for
    each new architecture on a small CPU); fixed-size blocks compile once per process. Inside a
    transformation (e.g. ``jax.vmap`` over keys) it falls back to ``jax.random.normal``.

    Returns:
      A float32 NumPy array of ``shape`` (a JAX array when ``key`` is traced).
    """
    if isinstance(key, jax.core.Tracer):
        return jax.random.normal(key, shape)
    n = int(np.prod(shape))
    blocks = [np.asarray(_normal_block(key, i)) for i in range(-(-n // _BLOCK))]
    return np.concatenate(blocks)[:n].reshape(shape) if blocks else np.zeros(shape, np.float32)


class Mask(nnx.Variable):
    """A fixed 0/1 mask over hidden units (not trained): widths differ, shapes agree."""


def _check_widths(widths: Sequence[int]) -> tuple[int, ...]:
    widths = tuple(widths)
    ok = all(isinstance(w, numbers.Integral) and not isinstance(w, bool) and w > 0 for w in widths)
    if len(widths) < 2 or not ok:
        raise ValueError(
            f"widths: expected at least two positive ints (input, ..., output), got {widths!r}"
        )
    return tuple(int(w) for w in widths)  # NumPy ints become Python ints (static attributes)


class Dense(nnx.Module):
    """Affine layer ``z = x W + b`` in standard or NTK parametrization.

    Standard: ``W_ij ~ N(0, weight_var / fan_in)``, ``b_j ~ N(0, bias_var)``, ``z = x W + b``.
    NTK (Jacot et al. 2018, eq. 1): ``W_ij ~ N(0, 1)``, ``b_j ~ N(0, 1)`` and
    ``z = sqrt(weight_var / fan_in) x W + sqrt(bias_var) b``. Both give the same function
    distribution at initialization; they differ in how gradients scale with width.

    Args:
      fan_in, fan_out: input and output sizes.
      parametrization: ``"standard"`` or ``"ntk"``.
      weight_var, bias_var: the variances sigma_w^2 and sigma_b^2.
      true_fan_in: the fan-in used for the variance (defaults to ``fan_in``); smaller when the
        input is zero-padded (see `MLP` with ``max_width``).
      rngs: NNX random streams; the ``params`` stream is used.
    """

    def __init__(
        self,
        fan_in: int,
        fan_out: int,
        *,
        parametrization: str = "standard",
        weight_var: float = 1.0,
        bias_var: float = 0.0,
        true_fan_in: int | None = None,
        out_mask: np.ndarray | None = None,
        rngs: nnx.Rngs,
    ):
        if parametrization not in PARAMETRIZATIONS:
            raise ValueError(
                f"parametrization: expected one of {PARAMETRIZATIONS}, got {parametrization!r}"
            )
        if weight_var <= 0 or bias_var < 0:
            raise ValueError(
                f"weight_var must be > 0 and bias_var >= 0, got {weight_var}, {bias_var}"
            )
        n = fan_in if true_fan_in is None else true_fan_in
        w_scale, b_scale = (weight_var / n) ** 0.5, bias_var**0.5
        w = standard_normal(rngs.params(), (fan_in, fan_out))
        b = standard_normal(rngs.params(), (fan_out,))
        if n < fan_in or out_mask is not None:  # zero the padding (see MLP's max_width)
            rows = (np.arange(fan_in) < n).astype(np.float32)
            cols = np.ones(fan_out, np.float32) if out_mask is None else out_mask
            w, b = w * rows[:, None] * cols[None, :], b * cols
        self.parametrization = parametrization
        # Scales are static only where the forward pass uses them (NTK parametrization), so
        # standard-parametrized layers of different fan-in share one graph definition.
        self.w_scale = self.b_scale = None
        if parametrization == "standard":
            w, b = w * w_scale, b * b_scale
        else:
            self.w_scale, self.b_scale = w_scale, b_scale
        self.w, self.b = nnx.Param(jnp.asarray(w)), nnx.Param(jnp.asarray(b))

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.parametrization == "standard":
            return x @ self.w[...] + self.b[...]
        return self.w_scale * (x @ self.w[...]) + self.b_scale * self.b[...]


class Forward(NamedTuple):
    """What `mlp_forward` computes on the way through a fully connected network.

    Attributes:
      outputs: (..., K) the last layer's outputs, or None when ``readout=False``.
      pre: the pre-activations of every hidden layer, (..., width_l) each (the activation's
        inputs, after batch norm where there is one).
      inputs: the input of every layer, (..., fan_in_l) each: ``inputs[0]`` is x and
        ``inputs[-1]`` the last hidden layer's output (the features the readout sees).
    """

    outputs: jax.Array | None
    pre: list[jax.Array]
    inputs: list[jax.Array]


def mlp_forward(
    affine: Callable[[int, jax.Array], jax.Array],
    x: jax.Array,
    *,
    num_layers: int,
    activation: str,
    residual: bool = False,
    post: Callable[[int, jax.Array], jax.Array] | None = None,
    offsets: Sequence[jax.Array] | None = None,
    readout: bool = True,
) -> Forward:
    """The forward pass of a fully connected network: the one every MLP in udl_jax runs.

    ``h_0 = x``; for hidden layers ``l < L - 1``: ``z_l = affine(l, h_l) + offsets[l]``,
    ``a_l = post(l, act(z_l))`` and ``h_{l+1} = a_l`` (plus ``h_l`` with ``residual`` where the
    shapes agree); the last layer is linear, ``f = affine(L - 1, h_{L-1}) + offsets[L - 1]``.
    The layers themselves are the caller's: `MLP` passes its `Dense` layers (and batch norm);
    the structured NTK (`udl_jax.ntk.mlp_ntk`) differentiates with respect to the ``offsets``
    (Novak et al. 2022, Sec. 3); `udl_jax.subspace` passes weights read from one flat vector;
    `udl_jax.function_prior` passes Gaussian layers sampled from their Gram matrices.

    Args:
      affine: ``affine(l, h) -> z``, layer l's affine map (..., fan_in) -> (..., fan_out).
      x: (..., d) inputs.
      num_layers: L >= 1, the number of affine layers (hidden layers plus the readout).
      activation: a key of `ACTIVATIONS`.
      residual: add the skip connection ``h_l`` where ``a_l`` has its shape.
      post: ``post(l, a) -> a`` after each hidden activation (masks of padded units, dropout);
        None for none.
      offsets: None, or L arrays added to the pre-activations (zeros give the same outputs,
        and their gradients are df/dz).
      readout: apply the last layer; False stops at the last hidden layer (``outputs=None``).

    Returns:
      `Forward` ``(outputs, pre, inputs)``.
    """
    if not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers: expected a positive int, got {num_layers!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if offsets is not None and len(offsets) != num_layers:
        raise ValueError(
            f"offsets: expected {num_layers} arrays (one per layer), got {len(offsets)}"
        )
    act = ACTIVATIONS[activation]
    pre, inputs, h = [], [], x
    for i in range(num_layers - 1):
        inputs.append(h)
        z = affine(i, h)
        if offsets is not None:
            z = z + offsets[i]
        pre.append(z)
        a = act(z)
        if post is not None:
            a = post(i, a)
        h = h + a if (residual and h.shape[-1] == a.shape[-1]) else a
    inputs.append(h)
    if not readout:
        return Forward(None, pre, inputs)
    out = affine(num_layers - 1, h)
    if offsets is not None:
        out = out + offsets[-1]
    return Forward(out, pre, inputs)


class MLP(nnx.Module):
    """Fully connected network ``widths[0] -> ... -> widths[-1]``, linear in its last layer.

    The attributes ``widths``, ``activation``, ``parametrization``, ``weight_var``, ``bias_var``
    describe the architecture completely (without normalization), so the infinite-width kernels
    can be read off the same object (Lee et al. 2018; Jacot et al. 2018).

    Args:
      widths: layer sizes including input and output, e.g. ``(40, 100, 100, 10)``.
      activation: a key of `ACTIVATIONS`.
      parametrization: ``"standard"`` or ``"ntk"`` (see `Dense`).
      weight_var: sigma_w^2; defaults to 2 for ReLU/GELU (He et al. 2015) and 1 otherwise.
      bias_var: sigma_b^2 (0 gives zero biases at initialization in standard parametrization).
      residual: add skip connections ``h <- h + act(z)`` around hidden layers of equal width.
      max_width: if given, every hidden layer is allocated ``max_width`` units and units beyond
        the true width are masked to zero (their weights start at zero and get zero gradient),
        so standard-parametrized networks of different widths share one shape and one graph
        definition, hence one compilation (`udl_jax.train.fit_many`). The true widths then live
        in the masks (see `true_widths`); ``widths`` holds the allocated ones.
      normalization: None, or ``"batch"`` for batch norm (Ioffe & Szegedy 2015) after every
        hidden affine layer, before the activation: ``h <- act(BN(h W + b))``. In training
        mode BN divides by the batch's standard deviation, so the loss is unchanged when a
        hidden layer's ``(W, b)`` is multiplied by any c > 0 (exactly for
        ``norm_epsilon=0``; see `udl_jax.scale_invariance`), and the bias ``b`` is cancelled
        by the mean subtraction (its gradient is zero). In evaluation mode (``model.eval()``)
        it uses running averages of the batch statistics instead (`recompute_batch_stats`
        refreshes them).
      norm_epsilon: the epsilon added to the variance by batch norm.
      norm_momentum: the decay of batch norm's running averages (Flax's convention: the
        weight of the old value, 0.99 by default; PyTorch's ``momentum=0.1`` is 0.9 here).
      dropout: the probability of zeroing each hidden unit's output in training mode
        (Srivastava et al. 2014), applied after every hidden activation (before the skip
        connection is added); the kept units are scaled by ``1 / (1 - dropout)``. 0 (the
        default) adds no dropout layer at all. In evaluation mode (``model.eval()``, as in
        `udl_jax.train.fit`'s metrics) dropout is off. The masks are drawn from the
        ``dropout`` stream of ``rngs`` (its default stream when it has none), forked after
        every weight has been drawn, so a network with dropout starts from the same weights as
        one without for the same ``rngs``.
      rngs: NNX random streams.

    Call: ``model(x)`` with ``x`` of shape (..., widths[0]) returns (..., widths[-1]).
    """

    def __init__(
        self,
        widths: Sequence[int],
        *,
        activation: str = "relu",
        parametrization: str = "standard",
        weight_var: float | None = None,
        bias_var: float = 0.0,
        residual: bool = False,
        max_width: int | None = None,
        normalization: str | None = None,
        norm_epsilon: float = 1e-5,
        norm_momentum: float = 0.99,
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        widths = _check_widths(widths)
        ok = isinstance(dropout, numbers.Real) and not isinstance(dropout, bool)
        if not (ok and 0 <= float(dropout) < 1):
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization: expected one of {NORMALIZATIONS}, got {normalization!r}"
            )
        if normalization is not None and max_width is not None:
            raise ValueError(
                "normalization: padded MLPs (max_width) cannot be normalized, since the "
                "masked units have zero variance; expected normalization=None with max_width"
            )
        if not (np.ndim(norm_epsilon) == 0 and float(norm_epsilon) >= 0):
            raise ValueError(f"norm_epsilon: expected a number >= 0, got {norm_epsilon!r}")
        if not (np.ndim(norm_momentum) == 0 and 0 <= float(norm_momentum) < 1):
            raise ValueError(f"norm_momentum: expected a number in [0, 1), got {norm_momentum!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation: expected one of {sorted(ACTIVATIONS)}, got {activation!r}"
            )
        if max_width is not None and max_width < max(widths[1:-1], default=0):
            raise ValueError(
                f"max_width: expected >= every hidden width {widths[1:-1]}, got {max_width}"
            )
        if weight_var is None:
            weight_var = _DEFAULT_WEIGHT_VAR.get(activation, 1.0)
        alloc = (widths[0], *[max_width or w for w in widths[1:-1]], widths[-1])
        self.widths, self.activation = alloc, activation
        self.parametrization, self.weight_var, self.bias_var = parametrization, weight_var, bias_var
        self.residual, self.max_width = residual, max_width
        self.normalization = normalization
        layers, masks, norms = [], [], []
        for i in range(len(widths) - 1):
            col = None
            if max_width is not None:
                col = (np.arange(alloc[i + 1]) < widths[i + 1]).astype(np.float32)
                if i < len(widths) - 2:
                    masks.append(Mask(jnp.asarray(col)))
            layer = Dense(
                alloc[i],
                alloc[i + 1],
                parametrization=parametrization,
                weight_var=weight_var,
                bias_var=bias_var,
                true_fan_in=widths[i],
                out_mask=col,
                rngs=rngs,
            )
            layers.append(layer)
            if normalization == "batch" and i < len(widths) - 2:
                bn = nnx.BatchNorm(
                    alloc[i + 1],
                    epsilon=float(norm_epsilon),
                    momentum=float(norm_momentum),
                    rngs=rngs,
                )
                norms.append(bn)
        self.layers = nnx.List(layers)
        self.masks = nnx.List(masks)
        self.norms = nnx.List(norms)
        self.dropout = float(dropout)
        if self.dropout > 0:  # after the weights: the same init with and without dropout
            self.drop = nnx.Dropout(self.dropout, rngs=rngs)

    @property
    def true_widths(self) -> tuple[int, ...]:
        """The layer widths the network really has (differs from ``widths`` when padded)."""
        if self.max_width is None:
            return self.widths
        hidden = [int(m[...].sum()) for m in self.masks]
        return (self.widths[0], *hidden, self.widths[-1])

    def forward(self, x: jax.Array, *, offsets: Sequence[jax.Array] | None = None) -> Forward:
        """The forward pass with everything on the way (`mlp_forward` over this network's layers).

        Args:
          x: (..., widths[0]) inputs.
          offsets: None, or one array per layer added to its pre-activations (see
            `mlp_forward`).

        Returns:
          `Forward` ``(outputs, pre, inputs)``.
        """
        last = len(self.layers) - 1

        def affine(i, h):
            z = self.layers[i](h)
            if self.normalization == "batch" and i < last:
                z = self.norms[i](z)
            return z

        def post(i, a):
            if self.max_width is not None:
                a = a * self.masks[i][...]
            if self.dropout > 0:
                a = self.drop(a)
            return a

        return mlp_forward(
            affine,
            x,
            num_layers=len(self.layers),
            activation=self.activation,
            residual=self.residual,
            post=post,
            offsets=offsets,
        )

    def features(self, x: jax.Array) -> tuple[list[jax.Array], jax.Array]:
        """Forward pass up to the last layer.

        Returns:
          ``(pre, h)``: ``pre`` lists the pre-activations of every hidden layer (the inputs of
          the activation, hence after batch norm where there is one), each of shape
          (..., allocated width); ``h`` is the input to the last layer.
        """
        f = self.forward(x)
        return f.pre, f.inputs[-1]

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.forward(x).outputs


class CNN1D(nnx.Module):
    """The small convolutional network of the MNIST-1D paper (Greydanus & Kobak 2024, ConvBase).

    Three convolutions (``channels`` filters; kernel 5, 3, 3; stride 2; ReLU), then a dense
    layer to ``n_classes`` logits.

    Args:
      length: input length (40 for MNIST-1D).
      channels: filters per convolution.
      n_classes: output size.
      rngs: NNX random streams.

    Call: ``model(x)`` with ``x`` of shape (batch, length) returns (batch, n_classes).
    """

    def __init__(
        self, length: int = 40, channels: int = 25, n_classes: int = 10, *, rngs: nnx.Rngs
    ):
        if length < 8:
            raise ValueError(f"length: expected >= 8, got {length}")
        self.convs = nnx.List(
            [
                nnx.Conv(1, channels, (5,), strides=2, padding=1, rngs=rngs),
                nnx.Conv(channels, channels, (3,), strides=2, padding=1, rngs=rngs),
                nnx.Conv(channels, channels, (3,), strides=2, padding=1, rngs=rngs),
            ]
        )
        n = length
        for k in (5, 3, 3):
            n = (n + 2 - k) // 2 + 1
        self.head = nnx.Linear(n * channels, n_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = x[..., None]
        for conv in self.convs:
            h = jax.nn.relu(conv(h))
        return self.head(h.reshape(*h.shape[:-2], -1))


@dataclasses.dataclass(frozen=True)
class MLPSpec:
    """A fully connected architecture: builds the finite `MLP` and gives its infinite-width kernels.

    One description of an architecture yields both the finite network and its kernels (as in
    neural-tangents' ``stax``). The fields and defaults are those of `MLP`, which carries the same
    attributes, so either can be passed to `udl_jax.ntk.nngp_kernel` and
    `udl_jax.ntk.ntk_kernel`; ``MLPSpec.from_model(model)`` reads them back and
    ``spec.build(rngs)`` makes the network.

    Attributes:
      widths: layer sizes including input and output, e.g. ``(40, 512, 512, 10)``; the number of
        hidden layers (``depth``) is ``len(widths) - 2``. The analytic NNGP and the NTK in NTK
        parametrization do not depend on the hidden widths; the standard-parametrization NTK does.
      activation: a key of `udl_jax.ACTIVATIONS` (kernels need one of
        `udl_jax.ntk.ANALYTIC_ACTIVATIONS`).
      parametrization: ``"standard"`` or ``"ntk"`` (see `Dense`).
      weight_var: sigma_w^2; None gives the `MLP` default (2 for ReLU/GELU, 1 otherwise).
      bias_var: sigma_b^2.
    """

    widths: tuple[int, ...]
    activation: str = "relu"
    parametrization: str = "standard"
    weight_var: float | None = None
    bias_var: float = 0.0

    def __post_init__(self):
        widths = tuple(self.widths)
        if len(widths) < 2 or not all(isinstance(w, int) and w > 0 for w in widths):
            raise ValueError(
                f"widths: expected at least two positive ints (input, ..., output), got {widths!r}"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation: expected one of {sorted(ACTIVATIONS)}, "
                f"got {self.activation!r}"
            )
        if self.parametrization not in PARAMETRIZATIONS:
            raise ValueError(
                f"parametrization: expected one of {PARAMETRIZATIONS}, "
                f"got {self.parametrization!r}"
            )
        weight_var = self.weight_var
        if weight_var is None:
            weight_var = _DEFAULT_WEIGHT_VAR.get(self.activation, 1.0)
        if weight_var <= 0 or self.bias_var < 0:
            raise ValueError(
                f"weight_var must be > 0 and bias_var >= 0, got {weight_var}, {self.bias_var}"
            )
        object.__setattr__(self, "widths", widths)
        object.__setattr__(self, "weight_var", float(weight_var))
        object.__setattr__(self, "bias_var", float(self.bias_var))

    @property
    def depth(self) -> int:
        """Number of hidden layers."""
        return len(self.widths) - 2

    @property
    def num_params(self) -> int:
        """Number of parameters ``sum_l (w_l + 1) w_{l+1}`` (weights and biases of each layer),
        the `param_count` of the network `build` makes."""
        w = self.widths
        return sum((a + 1) * b for a, b in zip(w[:-1], w[1:], strict=False))

    def build(self, rngs: nnx.Rngs) -> MLP:
        """The finite network of this architecture, freshly initialized from ``rngs``."""
        return MLP(
            self.widths,
            activation=self.activation,
            parametrization=self.parametrization,
            weight_var=self.weight_var,
            bias_var=self.bias_var,
            rngs=rngs,
        )

    @classmethod
    def from_model(cls, model: MLP) -> MLPSpec:
        """The architecture of an `MLP` (its true widths when it is padded)."""
        if not isinstance(model, MLP):
            raise TypeError(f"model: expected a udl_jax.models.MLP, got {type(model).__name__}")
        if model.residual:
            raise ValueError(
                "model: residual MLPs have no analytic kernel here; expected residual=False"
            )
        return cls(
            tuple(int(w) for w in model.true_widths),
            activation=model.activation,
            parametrization=model.parametrization,
            weight_var=model.weight_var,
            bias_var=model.bias_var,
        )


def functional(model: nnx.Module, *, train: bool = False):
    """Split an NNX model into a pure function and its parameters.

    The model is cloned (the argument is not changed). With ``train=False`` BatchNorm uses its
    running statistics and Dropout is off (``model.eval()``), which is what NTK and Hessian
    computations want: ``apply_fn`` is then a deterministic function of ``params`` alone.
    With ``train=True`` BatchNorm uses batch statistics and Dropout draws from the RNG state
    held in ``rest``; updates to that state are discarded, so ``apply_fn`` is still pure.

    Args:
      model: any NNX module.
      train: evaluate in training mode.

    Returns:
      ``(apply_fn, params, rest)``: ``apply_fn(params, x, rest=rest)`` returns ``model(x)``;
      ``params`` is the `nnx.State` of all `nnx.Param` leaves (a pytree); ``rest`` the other state.
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model: expected a flax.nnx.Module, got {type(model).__name__}")
    model = nnx.clone(model)
    model.train() if train else model.eval()
    graphdef, params, rest0 = nnx.split(model, nnx.Param, ...)

    def apply_fn(params, x, rest=rest0):
        return nnx.merge(graphdef, params, rest, copy=True)(x)

    return apply_fn, params, rest0


def loss_fn(
    model: nnx.Module,
    x=None,
    y=None,
    loss: str | Callable = "cross_entropy",
    *,
    train: bool = False,
):
    """The loss of ``model`` as a function of its parameters: ``loss_fn(params)``.

    The one bridge from a model to everything that differentiates a loss with respect to the
    parameters (`udl_jax.hessian`, `udl_jax.edge_of_stability`, `udl_jax.loss_smoothness`,
    `udl_jax.algorithmic_stability`, the chapters): ``models.loss_fn(model, x, y)(params)`` is
    ``loss(model(x), y)`` with the model's parameters replaced by ``params`` (any pytree like
    ``nnx.state(model, nnx.Param)``). Without data, ``models.loss_fn(model)(params, x, y)``
    takes the batch as arguments (minibatches, one example at a time).

    Args:
      model: any NNX module (not changed; see `functional`).
      x: (n, ...) inputs, or None (with ``y``) for a loss of ``(params, x, y)``.
      y: (n,) integer labels or (n, k) / (n,) real targets, or None.
      loss: ``"cross_entropy"``, ``"mse"`` or a function ``loss(outputs, y) -> scalar``
        (`udl_jax.losses`).
      train: evaluate in training mode (batch norm on the batch's statistics, dropout drawn
        from the model's RNG state, which stays fixed between calls).

    Returns:
      A pure function ``loss_fn(params) -> scalar`` (``loss_fn(params, x, y)`` without data).
      Define it once and reuse it: functions that compile per ``loss_fn`` object (e.g.
      `udl_jax.hessian.sharpness`) then compile once.
    """
    loss = losses.resolve(loss)
    apply_fn, _, rest = functional(model, train=train)

    def batch_loss(params, x, y):
        return loss(apply_fn(params, x, rest=rest), y)

    if x is None and y is None:
        return batch_loss
    if x is None or y is None:
        raise ValueError("x, y: expected both (a loss of params) or neither (of params, x, y)")
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x, y: expected the same number of samples, got {x.shape[0]} and {y.shape[0]}"
        )

    def loss_of_params(params):
        return batch_loss(params, x, y)

    return loss_of_params


def recompute_batch_stats(model: nnx.Module, x) -> nnx.Module:
    """A copy of ``model`` whose batch-norm running statistics are those of the whole of ``x``.

    In evaluation mode batch norm divides by running averages of the batch statistics seen in
    training (an exponential moving average with weight ``momentum`` on the old value). When the
    weights before a batch norm keep growing, as they do under an exponentially increasing
    learning rate, the average lags behind the current statistics. One training-mode pass over
    ``x`` with momentum 0 replaces them by the current ones ("precise BN"); nothing else changes.

    Args:
      model: an NNX module with at least one `nnx.BatchNorm`; it is not modified.
      x: inputs, e.g. the whole training set.

    Returns:
      The new model, in training mode (like `udl_jax.train.fit`'s result).
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model: expected a flax.nnx.Module, got {type(model).__name__}")
    m = nnx.clone(model)
    norms = [mod for _, mod in nnx.iter_modules(m) if isinstance(mod, nnx.BatchNorm)]
    if not norms:
        raise ValueError("model: expected at least one nnx.BatchNorm layer, found none")
    m.train()
    saved = [bn.momentum for bn in norms]
    for bn in norms:
        bn.momentum = 0.0
    m(jnp.asarray(x))
    for bn, momentum in zip(norms, saved, strict=True):
        bn.momentum = momentum
    return m


def param_count(params) -> int:
    """Number of scalar parameters in a pytree."""
    return sum(int(x.size) for x in jax.tree.leaves(params))
