"""Variational Bayesian Gaussian mixtures (Dirichlet / Dirichlet-process weight priors).

scikit-learn's ``BayesianGaussianMixture`` on the same blocked engine: the E-step is
the same ``phi @ A`` product with expected log-weights and the Wishart corrections in
the constant row, the statistics pass is :func:`jaxgmm._em.em_pass` (with its exact
fallback), and the variational M-step below turns ``(nk, xk, sk)`` into the posterior
parameters exactly as scikit-learn does.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import betaln, digamma, gammaln

from ._covariance import Covariance, covariance_class
from ._em import EMResult, Natural, block_e_step, em_pass, iterate
from ._engine import Batch, Inputs, Options, run
from ._init import initialize
from ._pytree import pytree_dataclass
from ._rows import Blocks
from ._typing import Array, Float

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
    if process:
        rest = jnp.concatenate([jnp.cumsum(nk[::-1])[-2::-1], jnp.zeros(1, nk.dtype)])
        wc = jnp.stack([1.0 + nk, priors.weight_concentration + rest])
    else:
        wc = priors.weight_concentration + nk
    mean_precision = priors.mean_precision + nk
    means = (priors.mean_precision * priors.mean + nk[:, None] * xk) / mean_precision[:, None]
    dof, cov = cov_cls.wishart_posterior(nk, sk, xk - priors.mean, mean_precision, priors)
    return VBParams(wc, mean_precision, means, dof, cov_cls.from_covariances(cov), process)


def lower_bound(params: VBParams, resp_entropy, cov_cls) -> Float[Array, ""]:
    """scikit-learn's ``_compute_lower_bound`` (``resp_entropy`` = -sum r log r)."""
    d = params.means.shape[-1]
    log_det = params.log_det_precisions_chol()
    k = params.mean_precision.shape[0]
    # a shared covariance (tied) has one Wishart, counted once per component
    log_wishart = jnp.sum(
        _log_wishart_norm(jnp.atleast_1d(params.degrees_of_freedom), jnp.atleast_1d(log_det), d)
    )
    if not cov_cls.per_component:
        log_wishart = k * log_wishart
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


#: The variational fit returns the same result type as EM.
VBResult = EMResult


def _vb_step(params: VBParams, blocks: Blocks, priors, reg_covar, cov_cls):
    model = Natural.of(params, blocks)

    def resp_fn(x, w, _b, phi, centred):
        resp, log_resp, _ = block_e_step(x, model, phi, centred)
        resp = resp * w[:, None]
        return resp, -jnp.sum(jnp.where(resp > 0, resp * log_resp, 0))

    # total_weight=1: the "weights" of the result are the counts nk themselves.
    moments, _, entropy = em_pass(
        resp_fn, blocks, cov_cls, reg_covar, 1.0, None, model.form, params.means
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
    """Variational EM from ``params``; the loop of :func:`jaxgmm._em.run_em`."""
    cov_cls = type(params.covariance)

    def step(p, _):
        new, lb = _vb_step(p, blocks, priors, reg_covar, cov_cls)
        return new, lb, jnp.zeros((), bool)

    s = iterate(
        step, params, tol=tol, max_iter=max_iter, lower_bound=lower_bound0, dtype=blocks.x.dtype
    )
    return s.result()  # the step never flags: no COLLAPSED status


@dataclasses.dataclass(frozen=True)
class Variational:
    """Variational EM (``BayesianGaussianMixture``), as the engine's model: the
    Dirichlet process (``process``) or Dirichlet distribution weight prior."""

    process: bool = True

    #: The priors weigh against the counts: scaling the weights changes the fit.
    scale_free: ClassVar[bool] = False

    #: K is part of the variational model (the truncation of the Dirichlet process,
    #: the Dirichlet prior's dimension), so its batches are never rounded up.
    shares_programs: ClassVar[bool] = False

    def start(self, options: Options, key, blocks: Blocks, inputs: Inputs, active):
        if inputs.params0 is not None:
            return inputs.params0
        cov_cls, k = options.covariance, active.shape[0]
        g = initialize(key, blocks, k, cov_cls, options.init, inputs.reg_covar)
        total = blocks.total
        return vb_from_moments(
            g.weights * total,
            g.means,
            g.covariance.covariances,
            inputs.priors,
            cov_cls,
            self.process,
        )

    def run(self, options: Options, params, blocks: Blocks, inputs: Inputs, active):
        return run_vb(
            params,
            blocks,
            inputs.priors,
            tol=inputs.tol,
            reg_covar=inputs.reg_covar,
            max_iter=options.max_iter,
            lower_bound0=inputs.lower_bound0,
        )

    def scores(self, params, blocks: Blocks):
        raise NotImplementedError("the variational mixture keeps no per-fit scores")

    def padded(self, params: VBParams, k_max: int) -> VBParams:
        if params.mean_precision.shape[0] != k_max:
            raise NotImplementedError("variational fits are batched over restarts only")
        return params


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
) -> EMResult:
    """``n_init`` variational fits in parallel (leading restart axis), as
    :func:`jaxgmm.fit_restarts` for the variational mixture (the priors as scikit-learn's
    ``*_prior_`` attributes, in a :class:`VBPriors`): vmapped on one device and,
    with several local devices (or ``n_devices``), sharded over them."""
    options = Options(
        covariance_class(covariance_type),
        model=Variational(bool(process)),
        init=init_params,
        max_iter=max_iter,
    )
    batch = Batch((int(n_components),), n_init, n_devices)
    inputs = Inputs(
        tol=tol, reg_covar=reg_covar, lower_bound0=lower_bound0, params0=params0, priors=priors
    )
    return run(key, X, sample_weight, options, batch, inputs)[0]
