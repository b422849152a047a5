"""Variational Bayesian Gaussian mixtures (Dirichlet / Dirichlet-process weight priors).

scikit-learn's ``BayesianGaussianMixture`` on the same blocked engine: the E-step is
the same ``phi @ A`` product with expected log-weights and the Wishart corrections in
the constant row, the statistics pass is :func:`jaxgmm.em.m_step` (with its exact
fallback), and the variational M-step below turns ``(nk, xk, sk)`` into the posterior
parameters exactly as scikit-learn does.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import betaln, digamma, gammaln

from ._pytree import pytree_dataclass
from ._typing import Array, Float, Status, float_dtype, x64_scope
from .covariance import Covariance, TiedCovariance, covariance_class
from .em import (
    Blocks,
    Natural,
    block_e_step,
    iterate,
    m_step,
    make_blocks,
    prepare_rows,
)
from .init import initialize
from .multistart import _batch_columns, _device_count, _over_fits

__all__ = [
    "VBParams",
    "VBPriors",
    "VBResult",
    "fit_vb_restarts",
    "run_vb",
    "vb_from_moments",
]


@pytree_dataclass
class VBPriors:
    """The priors, as scikit-learn's ``*_prior_`` attributes."""

    weight_concentration: Float[Array, ""]
    mean_precision: Float[Array, ""]
    mean: Float[Array, " d"]
    degrees_of_freedom: Float[Array, ""]
    covariance: Array


@pytree_dataclass(meta_fields=("process",))
class VBParams:
    """Variational posterior, as scikit-learn's fitted attributes.

    ``weight_concentration`` is (2, K) for the Dirichlet process (the Beta
    parameters) and (K,) for the Dirichlet distribution; ``covariance`` holds the
    normalised covariances and their precision Cholesky factors.
    """

    weight_concentration: Array
    mean_precision: Float[Array, " k"]
    means: Float[Array, "k d"]
    degrees_of_freedom: Array
    covariance: Covariance
    process: bool

    def log_weights(self) -> Float[Array, " k"]:
        """Expected log-weights (scikit-learn's ``_estimate_log_weights``)."""
        if self.process:
            a, b = self.weight_concentration
            digamma_sum = digamma(a + b)
            tail = jnp.cumsum(digamma(b) - digamma_sum)
            return digamma(a) - digamma_sum + jnp.concatenate([jnp.zeros(1, a.dtype), tail[:-1]])
        wc = self.weight_concentration
        return digamma(wc) - digamma(jnp.sum(wc))

    @property
    def n_components(self) -> int:
        return self.means.shape[-2]

    @property
    def weights(self) -> Float[Array, " k"]:
        """scikit-learn's ``weights_``."""
        if self.process:
            a, b = self.weight_concentration
            total = a + b
            tail = jnp.cumprod(b / total)
            w = a / total * jnp.concatenate([jnp.ones(1, a.dtype), tail[:-1]])
            return w / jnp.sum(w)
        return self.weight_concentration / jnp.sum(self.weight_concentration)

    def _log_lambda(self) -> Float[Array, " k"]:
        d = self.means.shape[-1]
        dof = jnp.broadcast_to(self.degrees_of_freedom, self.mean_precision.shape)
        return d * math.log(2.0) + jnp.sum(
            digamma(0.5 * (dof[None, :] - jnp.arange(d, dtype=dof.dtype)[:, None])), 0
        )

    def log_offset(self) -> Float[Array, " k"]:
        """What scikit-learn's weighted log-probabilities add to ``log N(x | mu_k,
        Sigma_k)`` of the normalised covariances."""
        d = self.means.shape[-1]
        dof = jnp.broadcast_to(self.degrees_of_freedom, self.mean_precision.shape)
        return (
            -0.5 * d * jnp.log(dof)
            + 0.5 * (self._log_lambda() - d / self.mean_precision)
            + self.log_weights()
        )

    def log_det_precisions_chol(self) -> Array:
        d = self.means.shape[-1]
        return self.covariance.log_det_cholesky(d) - 0.5 * d * jnp.log(self.degrees_of_freedom)


def _log_wishart_norm(dof, log_det_chol, d):
    return -(
        dof * log_det_chol
        + dof * d * 0.5 * math.log(2.0)
        + jnp.sum(gammaln(0.5 * (dof[..., None, :] - jnp.arange(d, dtype=dof.dtype)[:, None])), -2)
    )


def vb_from_moments(nk, xk, sk, priors: VBPriors, cov_cls: type[Covariance], process: bool):
    """scikit-learn's ``_estimate_weights``, ``_estimate_means`` and
    ``_estimate_precisions`` from ``nk`` (with its 10 eps), means ``xk`` and
    covariances ``sk`` (with ``reg_covar``)."""
    k = nk.shape[0]
    if process:
        rest = jnp.concatenate([jnp.cumsum(nk[::-1])[-2::-1], jnp.zeros(1, nk.dtype)])
        wc = jnp.stack([1.0 + nk, priors.weight_concentration + rest])
    else:
        wc = priors.weight_concentration + nk
    mean_precision = priors.mean_precision + nk
    means = (priors.mean_precision * priors.mean + nk[:, None] * xk) / mean_precision[:, None]
    diff = xk - priors.mean
    ratio = priors.mean_precision / mean_precision
    name = cov_cls.name
    if name == "full":
        dof = priors.degrees_of_freedom + nk
        outer = diff[:, :, None] * diff[:, None, :]
        cov = priors.covariance + nk[:, None, None] * sk + (nk * ratio)[:, None, None] * outer
        cov = cov / dof[:, None, None]
    elif name == "tied":
        dof = priors.degrees_of_freedom + jnp.sum(nk) / k
        cov = (
            priors.covariance
            + sk * jnp.sum(nk) / k
            + priors.mean_precision / k * ((nk / mean_precision) * diff.T) @ diff
        )
        cov = cov / dof
    elif name == "diag":
        dof = priors.degrees_of_freedom + nk
        cov = priors.covariance + nk[:, None] * (sk + ratio[:, None] * diff**2)
        cov = cov / dof[:, None]
    else:
        dof = priors.degrees_of_freedom + nk
        cov = priors.covariance + nk * (sk + ratio * jnp.mean(diff**2, 1))
        cov = cov / dof
    return VBParams(wc, mean_precision, means, dof, cov_cls.from_covariances(cov), process)


def lower_bound(params: VBParams, resp_entropy, cov_cls) -> Float[Array, ""]:
    """scikit-learn's ``_compute_lower_bound`` (``resp_entropy`` = -sum r log r)."""
    d = params.means.shape[-1]
    log_det = params.log_det_precisions_chol()
    k = params.mean_precision.shape[0]
    if cov_cls is TiedCovariance:
        log_wishart = (
            k
            * _log_wishart_norm(
                jnp.atleast_1d(params.degrees_of_freedom), jnp.atleast_1d(log_det), d
            )[0]
        )
    else:
        log_wishart = jnp.sum(_log_wishart_norm(params.degrees_of_freedom, log_det, d))
    if params.process:
        log_norm_weight = -jnp.sum(betaln(*params.weight_concentration))
    else:
        wc = params.weight_concentration
        log_norm_weight = gammaln(jnp.sum(wc)) - jnp.sum(gammaln(wc))
    return (
        resp_entropy
        - log_wishart
        - log_norm_weight
        - 0.5 * d * jnp.sum(jnp.log(params.mean_precision))
    )


@pytree_dataclass
class VBResult:
    params: VBParams
    n_iter: Array
    lower_bound: Array
    lower_bounds: Array
    converged: Array
    status: Array


def _vb_step(params: VBParams, blocks: Blocks, priors, reg_covar, cov_cls):
    model = Natural.of(params, blocks)

    def resp_fn(x, w, _b, phi, centred):
        resp, log_resp, _ = block_e_step(x, model, phi, centred)
        resp = resp * w[:, None]
        return resp, -jnp.sum(jnp.where(resp > 0, resp * log_resp, 0))

    # total_weight=1: the "weights" of the result are the counts nk themselves.
    moments, _, entropy = m_step(
        resp_fn, blocks, cov_cls, reg_covar, total_weight=1.0, exact=model.exact
    )
    new = vb_from_moments(
        moments.weights,
        moments.means,
        moments.covariance.covariances,
        priors,
        cov_cls,
        params.process,
    )
    return new, lower_bound(new, entropy, cov_cls)


def run_vb(params, blocks, priors, *, tol, reg_covar, max_iter, lower_bound0=-jnp.inf):
    """Variational EM from ``params``; the loop of :func:`jaxgmm.em.run_em`."""
    cov_cls = type(params.covariance)

    def step(p, _):
        new, lb = _vb_step(p, blocks, priors, reg_covar, cov_cls)
        return new, lb, jnp.zeros((), bool)

    s = iterate(
        step, params, tol=tol, max_iter=max_iter, lower_bound=lower_bound0, dtype=blocks.x.dtype
    )
    status = jnp.select(
        [s.failed, s.converged], [Status.NON_FINITE, Status.CONVERGED], Status.MAX_ITER
    ).astype(jnp.int32)
    return VBResult(s.params, s.n_iter, s.lower_bound, s.trace, s.converged, status)


@functools.partial(
    jax.jit,
    static_argnames=(
        "n_components",
        "cov_cls",
        "process",
        "method",
        "max_iter",
        "block_rows",
        "n_init",
        "n_devices",
    ),
)
def _fit_vb(
    key,
    x,
    w,
    n_used,
    tol,
    reg_covar,
    priors,
    params0,
    lower_bound0,
    *,
    n_components,
    cov_cls,
    process,
    method,
    max_iter,
    block_rows,
    n_init,
    n_devices=1,
):
    x, w = jnp.asarray(x), jnp.asarray(w)
    blocks = make_blocks(x, w, block_rows, n_used, center=(w @ x) / jnp.sum(w))

    def one(key, blocks, priors, params0, tol, reg_covar, lower_bound0):
        total = jnp.sum(blocks.w)
        if params0 is None:
            g = initialize(key, blocks, n_components, cov_cls, method, reg_covar)
            p = vb_from_moments(
                g.weights * total, g.means, g.covariance.covariances, priors, cov_cls, process
            )
        else:
            p = params0
        return run_vb(
            p,
            blocks,
            priors,
            tol=tol,
            reg_covar=reg_covar,
            max_iter=max_iter,
            lower_bound0=lower_bound0,
        )

    shared = (blocks, priors, params0, tol, reg_covar, lower_bound0)
    return _over_fits(one, (jax.random.split(key, n_init),), shared, n_devices)


def fit_vb_restarts(
    key,
    X,
    n_components,
    priors: VBPriors,
    *,
    covariance_type="full",
    process=True,
    n_init=1,
    init_params="kmeans",
    sample_weight=None,
    params0=None,
    lower_bound0=-np.inf,
    tol=1e-3,
    reg_covar=1e-6,
    max_iter=100,
    n_devices=None,
) -> VBResult:
    """``n_init`` variational fits in parallel (leading restart axis), as
    :func:`jaxgmm.fit_restarts` for the variational mixture: vmapped on one device and,
    with several local devices (or ``n_devices``), sharded over them."""
    cov_cls = covariance_class(covariance_type)
    dtype = float_dtype(X)
    with x64_scope(dtype):
        n_dev = _device_count(n_devices, n_init)
        x, w, n_used, block_rows, _ = prepare_rows(
            X,
            sample_weight,
            cov_cls,
            dtype,
            n_columns=_batch_columns((n_components,), n_init, n_dev),
        )
        cast = lambda a: jnp.asarray(a, dtype)
        priors = jax.tree_util.tree_map(cast, priors)
        if params0 is not None:
            params0 = jax.tree_util.tree_map(cast, params0)
        return _fit_vb(
            key,
            x,
            w,
            n_used,
            cast(tol),
            cast(reg_covar),
            priors,
            params0,
            cast(lower_bound0),
            n_components=n_components,
            cov_cls=cov_cls,
            process=bool(process),
            method=init_params,
            max_iter=max_iter,
            block_rows=block_rows,
            n_init=n_init,
            n_devices=n_dev,
        )
