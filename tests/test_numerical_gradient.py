"""minidl.gradcheck.numerical_gradient: central differences of a scalar function of an array."""

import numpy as np
import pytest

from minidl.gradcheck import numerical_gradient


def test_matches_the_analytic_gradient_of_a_polynomial(rng):
    x = rng.standard_normal((3, 4))
    g = numerical_gradient(lambda v: (v ** 3).sum() + 2.0 * v[1, 2], x)
    expected = 3 * x ** 2
    expected[1, 2] += 2.0
    assert g.shape == x.shape and g.dtype == np.float64
    np.testing.assert_allclose(g, expected, rtol=1e-7, atol=1e-8)


def test_gradient_of_a_linear_map_is_the_outer_product(rng):
    v, u = rng.standard_normal(5), rng.standard_normal(3)
    w = rng.standard_normal((3, 5))
    g = numerical_gradient(lambda m: float(u @ (m @ v)), w)
    np.testing.assert_allclose(g, np.outer(u, v), rtol=1e-8, atol=1e-9)


def test_input_is_left_unchanged_and_non_contiguous_inputs_work(rng):
    base = rng.standard_normal((4, 6))
    x = base[:, ::2]                        # a strided view
    before = x.copy()
    g = numerical_gradient(lambda v: (np.sin(v) * np.arange(v.size).reshape(v.shape)).sum(), x)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(g, np.cos(x) * np.arange(x.size).reshape(x.shape), rtol=1e-7, atol=1e-8)


def test_float32_is_perturbed_in_float32():
    # the perturbation is rounded to the array's precision: float32 resolves 1e-3 steps only coarsely
    x = np.array([1.0], dtype=np.float32)
    seen = []
    numerical_gradient(lambda v: seen.append(v.dtype) or float(v[0]), x, eps=1e-3)
    assert seen == [np.float32, np.float32]


def test_rejects_integer_input():
    with pytest.raises(ValueError, match="floating-point"):
        numerical_gradient(lambda v: v.sum(), np.arange(3))
