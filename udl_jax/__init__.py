"""udl_jax: the helper package of *Why Deep Learning Works*.

Small modules of pure functions over pytrees that every chapter imports:

- `udl_jax.data`: MNIST-1D generated offline, toy sets, randomization transforms.
- `udl_jax.models`: Flax NNX models, the bridge to ``(apply_fn, params, rest)`` and to a loss of
  the parameters, ``loss_fn(params)``.
- `udl_jax.losses`: the loss convention ``loss(outputs, y)``: cross-entropy, squared error,
  accuracy.
- `udl_jax.train`: the optimizer step and scan every loop uses; training as ``lax.scan`` chunks
  under one ``jit``; many models at once.
- `udl_jax.shallow_relu`: one-hidden-layer ReLU networks as sums of hinges.
- `udl_jax.regions`: activation patterns and exact linear-region counting for ReLU networks.
- `udl_jax.hessian`: Hessian-vector products, Lanczos spectra, sharpness.
- `udl_jax.edge_of_stability`: gradient descent with its sharpness tracked inside one scan.
- `udl_jax.landscape`: filter-normalized directions, loss slices, mode connectivity.
- `udl_jax.ntk`: empirical and analytic NTK/NNGP, linearized networks.
- `udl_jax.kernel_regression`: predictions from kernels: kernel ridge regression, GP posteriors
  and evidence, gradient flow of a linearized network.
- `udl_jax.function_prior`: exact samples of random MLPs' output functions (the NNGP prior at
  finite width).
- `udl_jax.lazy_training`: lazy training and feature learning: how far weights and kernels move.
- `udl_jax.tabular_benchmark`: repeated splits and tuned learners for small tabular benchmarks.
- `udl_jax.polynomial`: Legendre series with an order-dependent penalty (a soft inductive bias).
- `udl_jax.sweeps`: model-wise sweeps, e.g. MLP width sweeps trained together with padding.
- `udl_jax.bounds`: PAC-Bayes, Occam and compression bounds; kl inverses; code lengths.
- `udl_jax.subspace`: networks trained in a random subspace, and Gaussian posteriors over it.
- `udl_jax.random_features`: random-features regression, min-norm and ridge, and its exact risk.
- `udl_jax.embedding`: prediction space: Bhattacharyya distances between classifiers, InPCA
  embeddings, trajectory distances.
- `udl_jax.scale_invariance`: scale invariance from batch norm; weight decay as an exponentially
  growing learning rate; equilibrium weight norm and effective learning rate.
- `udl_jax.intrinsic_dimension`: the TwoNN intrinsic-dimension estimator (Facco et al. 2017) and
  point clouds of known dimension embedded in higher dimensions.
- `udl_jax.margins`: max-margin (hard-margin SVM) directions, normalized margins and angles: the
  implicit bias of gradient descent on separable data.
- `udl_jax.algorithmic_stability`: coupled training runs on neighbouring data sets, the
  Hardt-Recht-Singer stability bounds, per-example gradients and their coherence.
- `udl_jax.signal_propagation`: mean-field signal propagation (variance and correlation maps,
  chi_1, the edge of chaos) and its measurement in deep MLPs at initialization.
- `udl_jax.loss_smoothness`: Santurkar et al.'s probes of the loss along the gradient (loss
  range, gradient predictiveness, effective beta-smoothness).
- `udl_jax.weight_decay`: Adam with L2 and/or decoupled weight decay (AdamW) as one optax
  factory; optimizers on a zero loss.
- `udl_jax.plot`: the book's figure style.
- `udl_jax.checks`: a chapter's claims as named, recorded checks with tolerances.
"""

__version__ = "0.1.0"
