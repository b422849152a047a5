"""mclust's 14 covariance families against an independent oracle: the M-step of each
family written out in NumPy from Celeux & Govaert ("Gaussian parsimonious clustering
models", Pattern Recognition 28, 1995: section 3 and table 1), with the scatter
matrices ``W_k = sum_i z_ik (x_i - mu_k)(x_i - mu_k)^T`` as there, and mclust's
parameter counts (``nVarParams`` in the mclust manual)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_iris

import jaxgmm
from jaxgmm._covariance import covariance_class
from jaxgmm._em import centred_estimate
from jaxgmm._families import FAMILIES
from jaxgmm._rows import make_blocks

REG = 1e-6


def mclust_n_var_params(name, d, g):
    """mclust's ``nVarParams(modelName, d, G)``."""
    return {
        "EII": 1, "VII": g, "EEI": d, "VEI": g + (d - 1), "EVI": 1 + g * (d - 1),
        "VVI": g * d, "EEE": d * (d + 1) // 2, "VEE": g + (d - 1) + d * (d - 1) // 2,
        "EVE": 1 + g * (d - 1) + d * (d - 1) // 2, "VVE": g + g * (d - 1) + d * (d - 1) // 2,
        "EEV": 1 + (d - 1) + g * d * (d - 1) // 2, "VEV": g + (d - 1) + g * d * (d - 1) // 2,
        "EVV": 1 - g + g * d * (d + 1) // 2, "VVV": g * d * (d + 1) // 2,
    }[name]  # fmt: skip


# --- the oracle: Celeux & Govaert's M-steps, in NumPy --------------------------------


def scatters(x, z):
    """``n_k``, ``mu_k`` and the scatters ``W_k`` with ``n_k reg I`` added (that is,
    scikit-learn's ``reg_covar`` on each ``W_k / n_k``)."""
    nk = z.sum(0)
    mu = z.T @ x / nk[:, None]
    w = np.stack([(z[:, k, None] * (x - mu[k])).T @ (x - mu[k]) for k in range(len(nk))])
    return nk, mu, w + nk[:, None, None] * REG * np.eye(x.shape[1])


def det_root(m):
    return np.linalg.det(m) ** (1 / m.shape[-1])


def alternate(step, state, n=2000):
    for _ in range(n):
        state = step(state)
    return state


def oracle(name, nk, w):
    """Each component's covariance for ``name`` from the counts and scatters."""
    g, d = len(nk), w.shape[-1]
    n, eye = nk.sum(), np.eye(d)
    diag = lambda m: np.diagonal(m, axis1=-2, axis2=-1)
    if name == "EII":
        return np.stack([np.trace(w.sum(0)) / (n * d) * eye] * g)
    if name == "VII":
        return np.stack([np.trace(w[k]) / (nk[k] * d) * eye for k in range(g)])
    if name == "EEI":
        return np.stack([np.diag(diag(w.sum(0)) / n)] * g)
    if name == "VVI":
        return np.stack([np.diag(diag(w[k]) / nk[k]) for k in range(g)])
    if name == "EVI":
        b = [diag(w[k]) / np.prod(diag(w[k])) ** (1 / d) for k in range(g)]
        lam = sum(np.prod(diag(w[k])) ** (1 / d) for k in range(g)) / n
        return np.stack([lam * np.diag(b[k]) for k in range(g)])
    if name == "VEI":  # B = diag(sum W_k / lam_k) normalised, lam_k = tr(W_k B^-1) / (n_k d)

        def step(lam):
            b = diag(sum(w[k] / lam[k] for k in range(g)))
            b = b / np.prod(b) ** (1 / d)
            return np.array([np.trace(w[k] / b) / (nk[k] * d) for k in range(g)]), b

        lam = alternate(
            lambda lam: step(lam)[0], np.array([np.trace(w[k]) / (nk[k] * d) for k in range(g)])
        )
        b = step(lam)[1]
        lam = step(lam)[0]
        return np.stack([lam[k] * np.diag(b) for k in range(g)])
    if name == "EEE":
        return np.stack([w.sum(0) / n] * g)
    if name == "VVV":
        return w / nk[:, None, None]
    if name == "EVV":
        lam = sum(det_root(w[k]) for k in range(g)) / n
        return np.stack([lam * w[k] / det_root(w[k]) for k in range(g)])
    if name in ("EEV", "VEV"):
        values, axes = np.linalg.eigh(w)  # W_k = L_k Omega_k L_k^T
        if name == "EEV":  # A = sum Omega_k / |.|^(1/d), lambda = |sum Omega_k|^(1/d) / n
            common = values.sum(0) / n
            return np.stack([axes[k] @ np.diag(common) @ axes[k].T for k in range(g)])

        def step(lam):
            a = sum(values[k] / lam[k] for k in range(g))
            a = a / np.prod(a) ** (1 / d)
            return np.array([np.sum(values[k] / a) / (nk[k] * d) for k in range(g)]), a

        lam = alternate(lambda lam: step(lam)[0], values.sum(1) / (nk * d))
        a, lam = step(lam)[1], step(lam)[0]
        return np.stack([lam[k] * axes[k] @ np.diag(a) @ axes[k].T for k in range(g)])
    if name == "VEE":  # C = sum W_k / lam_k normalised, lam_k = tr(W_k C^-1) / (n_k d)

        def step(lam):
            c = sum(w[k] / lam[k] for k in range(g))
            c = c / det_root(c)
            return np.array([np.trace(w[k] @ np.linalg.inv(c)) / (nk[k] * d) for k in range(g)]), c

        lam = alternate(lambda lam: step(lam)[0], np.trace(w, axis1=1, axis2=2) / (nk * d))
        c, lam = step(lam)[1], step(lam)[0]
        return np.stack([lam[k] * c for k in range(g)])
    raise KeyError(name)


def objective(nk, w, sigma):
    """``sum_k n_k log det Sigma_k + tr(W_k Sigma_k^-1)``: what an M-step minimises."""
    return sum(
        nk[k] * np.linalg.slogdet(sigma[k])[1] + np.trace(w[k] @ np.linalg.inv(sigma[k]))
        for k in range(len(nk))
    )


def orientation_oracle(name, nk, w, start, n=3000):
    """EVE and VVE by coordinate descent over the common orientation D (Jacobi
    rotations of pairs of axes, each angle the best of a grid), alternating with the
    closed-form shapes given D: an independent search, slow but simple. Returns the
    objective as a function of D (the shapes at their best for it) and the search's
    covariances."""
    d = w.shape[-1]

    def values(axes):
        v = np.stack([np.diag(axes.T @ w[k] @ axes) / nk[k] for k in range(len(nk))])
        if name == "EVE":
            vol = np.prod(v, 1) ** (1 / d)
            v = (nk @ vol) / nk.sum() * v / vol[:, None]
        return v

    def sigma(axes):
        return np.stack([axes @ np.diag(v) @ axes.T for v in values(axes)])

    axes = start
    angles = np.linspace(-0.2, 0.2, 41)
    for sweep in range(n // (d * (d - 1) // 2)):
        scale = 0.5 ** (sweep // 3)
        for i in range(d):
            for j in range(i + 1, d):
                best, best_axes = objective(nk, w, sigma(axes)), axes
                for t in angles * scale:
                    candidate = axes @ rotation(d, i, j, t)
                    value = objective(nk, w, sigma(candidate))
                    if value < best:
                        best, best_axes = value, candidate
                axes = best_axes
    return (lambda axes: objective(nk, w, sigma(axes))), sigma(axes)


def rotation(d, i, j, t):
    r = np.eye(d)
    r[[i, i, j, j], [i, j, i, j]] = [np.cos(t), -np.sin(t), np.sin(t), np.cos(t)]
    return r


# --- jaxgmm's M-step on the same responsibilities -------------------------------------


def jaxgmm_m_step(name, x, z):
    cov_cls = covariance_class(name)
    with jax.enable_x64(True):
        blocks = make_blocks(jnp.asarray(x), None, len(x))
        resp = jnp.asarray(z)
        params, _ = centred_estimate(
            lambda xb, wb, b: resp * wb[:, None], blocks, cov_cls, jnp.asarray(REG), blocks.total
        )
        k, d = z.shape[1], x.shape[1]
        dense = cov_cls.dense(np.asarray(params.covariance.covariances), k, d)
        return np.asarray(params.means), dense


@pytest.fixture(scope="module")
def iris_resp():
    x = load_iris().data
    z = np.random.default_rng(0).dirichlet(np.ones(3) * 0.3, size=len(x))
    return x, z


@pytest.mark.parametrize("name", [n for n in FAMILIES if n not in ("EVE", "VVE")])
def test_each_family_s_m_step_is_celeux_and_govaert_s(iris_resp, name):
    x, z = iris_resp
    nk, mu, w = scatters(x, z)
    means, sigma = jaxgmm_m_step(name, x, z)
    np.testing.assert_allclose(means, mu, rtol=1e-12)
    np.testing.assert_allclose(sigma, oracle(name, nk, w), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("name", ["EVE", "VVE"])
def test_the_common_orientation_families_reach_the_oracle_s_optimum(iris_resp, name):
    """Their M-step has no closed form: jaxgmm's majorisation steps must reach an
    expected log-likelihood at least as good as an independent search's."""
    x, z = iris_resp
    nk, _, w = scatters(x, z)
    _, sigma = jaxgmm_m_step(name, x, z)
    ours = objective(nk, w, sigma)
    profile, theirs = orientation_oracle(name, nk, w, np.linalg.eigh(w.sum(0))[1], n=60)
    assert ours <= objective(nk, w, theirs) + 1e-9 * abs(ours)
    # and it is a minimum: the common axes (those of any component) turned a little
    # in any plane, with the best shapes for them, do worse
    axes = np.linalg.eigh(sigma[0])[1]
    np.testing.assert_allclose(profile(axes), ours, rtol=1e-10)
    d = x.shape[1]
    for i in range(d):
        for j in range(i + 1, d):
            for t in (-1e-3, 1e-3):
                assert profile(axes @ rotation(d, i, j, t)) >= ours - 1e-10 * abs(ours)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_parameter_counts_and_bic_are_mclust_s(name):
    cov_cls = covariance_class(name)
    for d, g in [(1, 1), (2, 3), (4, 2), (13, 5)]:
        if d == 1 and cov_cls.matrices:
            continue
        assert cov_cls.n_parameters(g, d) == mclust_n_var_params(name, d, g), (d, g)
    x = load_iris().data
    gm = jaxgmm.GaussianMixture(2, covariance_type=name, random_state=0).fit(x)
    log_lik = gm.score(x) * len(x)
    p = (2 - 1) + 2 * 4 + mclust_n_var_params(name, 4, 2)  # mclust's nMclustParams
    np.testing.assert_allclose(gm.bic(x), -2 * log_lik + p * math.log(len(x)), rtol=1e-12)


def test_the_command_knows_the_families():
    from jaxgmm.cli._fit import _FAMILIES

    assert list(_FAMILIES) == list(FAMILIES)
