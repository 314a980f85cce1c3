import jax.numpy as jnp
import numpy as np
import pytest

from udl_jax import losses


def test_losses_and_accuracy_against_scikit_learn():
    from sklearn.metrics import accuracy_score, log_loss

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 4)).astype(np.float32)
    y = rng.integers(0, 4, 50).astype(np.int32)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(losses.cross_entropy(jnp.asarray(logits), jnp.asarray(y)),
                               log_loss(y, probs, labels=range(4)), rtol=1e-5)
    np.testing.assert_allclose(losses.accuracy(jnp.asarray(logits), jnp.asarray(y)),
                               accuracy_score(y, logits.argmax(1)), rtol=1e-6)
    onehot = np.eye(4)[y]
    np.testing.assert_allclose(losses.mse(jnp.asarray(logits), jnp.asarray(y)),
                               0.5 * np.mean(np.sum((logits - onehot) ** 2, 1)), rtol=1e-5)
    target = rng.normal(size=50).astype(np.float32)
    np.testing.assert_allclose(losses.mse(jnp.asarray(logits[:, :1]), jnp.asarray(target)),
                               0.5 * np.mean((logits[:, 0] - target) ** 2), rtol=1e-5)
    assert float(losses.accuracy(jnp.asarray(logits[:, :1]), jnp.asarray(target))) == 0.0


def test_resolve_names_and_callables_and_rejects_the_rest():
    assert losses.resolve("mse") is losses.mse
    assert losses.resolve("cross_entropy") is losses.cross_entropy

    def mae(outputs, y):
        return jnp.mean(jnp.abs(outputs - y))

    assert losses.resolve(mae) is mae
    with pytest.raises(ValueError, match="loss: expected one of"):
        losses.resolve("hinge")
    with pytest.raises(ValueError, match="criterion: expected"):
        losses.resolve(3, name="criterion")
