import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from udl_jax import weight_decay as wd


def _run(tx, params, grads):
    state = tx.init(params)
    out = []
    for g in grads:
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
        out.append(params)
    return out


def _grads(seed, n=20):
    keys = jax.random.split(jax.random.key(seed), n)
    return [{"a": jax.random.normal(k, (5,)), "b": jax.random.normal(k, (2, 3))} for k in keys]


PARAMS = {"a": jnp.linspace(-1.0, 1.0, 5), "b": jnp.full((2, 3), 0.3)}


def test_adam_decay_is_optax_adamw_and_adam_with_l2():
    grads = _grads(0)
    mine = _run(wd.adam_decay(1e-2, weight_decay=0.3), PARAMS, grads)
    ref = _run(optax.adamw(1e-2, weight_decay=0.3), PARAMS, grads)
    for a, b in zip(mine, ref, strict=True):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7), a, b)
    mine = _run(wd.adam_decay(1e-2, l2=0.3), PARAMS, grads)
    ref = _run(optax.chain(optax.add_decayed_weights(0.3), optax.adam(1e-2)), PARAMS, grads)
    for a, b in zip(mine, ref, strict=True):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7), a, b)
    plain = _run(optax.adam(1e-2), PARAMS, grads)
    both0 = _run(wd.adam_decay(1e-2), PARAMS, grads)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6), plain[-1], both0[-1])


def test_zero_loss_adamw_shrinks_geometrically_and_adam_l2_ignores_lambda():
    eta, steps = 1e-2, 100
    norm0 = float(jnp.sqrt(sum(jnp.vdot(a, a) for a in jax.tree.leaves(PARAMS))))
    for lam in (0.1, 3.0):
        n = wd.zero_loss_run(wd.adam_decay, PARAMS, steps, learning_rate=eta, weight_decay=lam)
        np.testing.assert_allclose(n, norm0 * (1 - eta * lam) ** np.arange(steps + 1),
                                   rtol=1e-5)
    runs = [wd.zero_loss_run(wd.adam_decay, PARAMS, steps, learning_rate=eta, l2=lam)
            for lam in (1e-3, 1.0, 1e3)]
    np.testing.assert_allclose(runs[0], runs[2], rtol=1e-3)  # lambda is normalized away
    # each coordinate moves by about eta per step: |a_i| = 1 shrinks to ~0.5 in 50 steps
    single = wd.zero_loss_run(wd.adam_decay, {"w": jnp.ones(4)}, 50, learning_rate=eta, l2=1.0)
    assert 0.45 * 2 < single[-1] < 0.6 * 2
    # the same through optax.adamw as the factory
    n = wd.zero_loss_run(optax.adamw, PARAMS, 10, learning_rate=eta, weight_decay=0.5)
    np.testing.assert_allclose(n[-1], norm0 * (1 - eta * 0.5) ** 10, rtol=1e-5)


def test_zero_loss_run_rejects_bad_arguments():
    with pytest.raises(ValueError, match="steps"):
        wd.zero_loss_run(wd.adam_decay, PARAMS, 0, learning_rate=1e-3)
    with pytest.raises(TypeError, match="factory"):
        wd.zero_loss_run(optax.adam(1e-3), PARAMS, 5)
