"""The csr engine's sparse products against dense numpy references."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sltc.runtime.spmv import SKIP_MIN_COLUMN_NNZ, SparseLinear, SparseRows, mkl_product

LIBRARIES = (False, True) if mkl_product() is not None else (False,)  # use_mkl


@st.composite
def problems(draw):
    """A masked weight and a batch of inputs with some exact zeros."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rows, cols = draw(st.integers(1, 300)), draw(st.integers(1, 300))
    density = draw(st.sampled_from([0.0, 0.05, 0.3, 0.9, 1.0]))
    zeros = draw(st.sampled_from([0.0, 0.1, 0.5, 0.95, 1.0]))
    batch = draw(st.sampled_from([1, 1, 2, 7, 64]))
    weight = rng.standard_normal((rows, cols)).astype(np.float32)
    mask = rng.random((rows, cols)) < density
    x = rng.standard_normal((batch, cols)).astype(np.float32)
    x[rng.random(x.shape) < zeros] = 0
    return weight, mask, x


@settings(max_examples=300, deadline=None)
@given(problems())
def test_products_match_dense(problem):
    weight, mask, x = problem
    want = x.astype(np.float64) @ (weight * mask).T.astype(np.float64)
    for kind in (SparseLinear, SparseRows):
        for use_mkl in LIBRARIES:
            got = kind(weight, mask, use_mkl)(x)
            assert got.shape == want.shape and got.dtype == np.float32
            assert np.allclose(got, want, rtol=1e-4, atol=1e-4), (kind.__name__, use_mkl)


def test_mkl_is_installed_for_the_tests():
    """The dev install carries MKL, so that the products above test its path too."""
    assert mkl_product() is not None, "pip install -e '.[dev]' (or 'sltc[mkl]') installs MKL"


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([0.0, 0.2, 0.5, 0.99, 1.0]))
def test_zero_skipping_path_alone_matches_dense(seed, zeros):
    """The skipping path forced on, from no active column to all of them."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((50, 120)).astype(np.float32)
    mask = rng.random(weight.shape) < 0.4
    x = rng.standard_normal(120).astype(np.float32)
    x[rng.random(120) < zeros] = 0
    layer = SparseLinear(weight, mask)
    reversed_x = x[::-1]
    got = layer._matvec_active(reversed_x, np.flatnonzero(reversed_x))
    assert np.allclose(got, (weight * mask) @ x, rtol=1e-4, atol=1e-4)


def test_skipping_applies_to_dense_enough_columns_only():
    rng = np.random.default_rng(0)
    tall = rng.random((4 * SKIP_MIN_COLUMN_NNZ, 64)) < 0.5
    assert SparseLinear(np.ones(tall.shape, np.float32), tall).skips
    short = rng.random((10, 64)) < 0.5
    assert not SparseLinear(np.ones(short.shape, np.float32), short).skips
