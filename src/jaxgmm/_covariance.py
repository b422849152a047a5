"""The four covariance structures, one pytree class each, behind one interface (and
:class:`SwitchedCovariance`, any of them in one small-data program).

Every class stores the covariances and the Cholesky factors of the precisions in
scikit-learn's shapes, and knows how to

* map one sample to its *feature vector* ``phi(x) = [1, x, q(x)]`` (``q`` holds the
  second-order terms the structure needs: the upper triangle of ``x x^T`` for full and
  tied, ``x**2`` for diag and spherical);
* write each component's log-density as a linear function of that vector
  (:meth:`natural`), so that a block's E-step is one matrix product;
* rebuild itself from the sufficient statistics ``sum_r``, ``sum_rx`` and ``sum_rxx``
  (the latter in ``q``'s layout), exactly as scikit-learn's M-step does.

Because the E-step and the M-step both read ``phi``, one product ``phi @ A`` gives the
log-densities and one product ``resp.T @ phi`` gives every sufficient statistic.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from ._pytree import pytree_dataclass
from ._typing import Array, Float, Int

__all__ = [
    "COVARIANCE_TYPES",
    "STRUCTURES",
    "Covariance",
    "DiagCovariance",
    "FullCovariance",
    "SphericalCovariance",
    "SwitchedCovariance",
    "TiedCovariance",
    "covariance_class",
    "covariance_names",
]


def _triu(n_features: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n_features)


def _unvech(v: Float[Array, "... n_pairs"], n_features: int) -> Float[Array, "... d d"]:
    """Symmetric matrices from their upper triangles (row-major ``triu_indices``):
    one gather (two scatters compiled to more code)."""
    i, j = _triu(n_features)
    position = np.zeros((n_features, n_features), np.int32)
    position[i, j] = position[j, i] = np.arange(i.size)
    return v[..., position]


def _quad_coefficients(prec: Float[Array, "... d d"]) -> Float[Array, "... n_pairs"]:
    """Coefficients c with ``c . triu(x x^T) = -x^T P x / 2``."""
    d = prec.shape[-1]
    i, j = _triu(d)
    return -0.5 * prec[..., i, j] * jnp.where(i == j, 1.0, 2.0).astype(prec.dtype)


def _chol_precision_from_cov(cov: Float[Array, "... d d"]) -> Float[Array, "... d d"]:
    # scikit-learn: solve(cholesky(cov), I).T, an upper-triangular factor of the
    # precision. A matrix that is not positive definite yields NaN, which the EM loop
    # detects and reports as Status.NON_FINITE.
    chol = jnp.linalg.cholesky(cov)
    eye = jnp.broadcast_to(jnp.eye(cov.shape[-1], dtype=cov.dtype), cov.shape)
    return jnp.swapaxes(solve_triangular(chol, eye, lower=True), -1, -2)


def _chol_precision_from_precision(prec: Float[Array, "... d d"]) -> Float[Array, "... d d"]:
    # The upper-triangular U with P = U U^T, as scikit-learn's
    # _compute_precision_cholesky_from_precisions (flip, Cholesky, flip).
    flip = lambda a: jnp.flip(a, axis=(-1, -2))
    return flip(jnp.linalg.cholesky(flip(prec)))


def _gram(chol: Float[Array, "... d d"]) -> Float[Array, "... d d"]:
    return chol @ jnp.swapaxes(chol, -1, -2)


class Covariance(abc.ABC):
    """Interface of a covariance structure (abstract; the four subclasses are final,
    but for :class:`SwitchedCovariance`, which extends the full one).

    Attributes
    ----------
    covariances : array
        scikit-learn's ``covariances_``: (K, D, D) full, (D, D) tied, (K, D) diag,
        (K,) spherical.
    precisions_cholesky : array
        scikit-learn's ``precisions_cholesky_``, same shape.
    """

    name: ClassVar[str]
    #: mclust's name of the family (:mod:`jaxgmm._families`): volume, shape and
    #: orientation each Equal, Variable or Identity across components.
    family: ClassVar[str]
    covariances: Array
    precisions_cholesky: Array

    # -- per-sample feature map --------------------------------------------------
    @staticmethod
    @abc.abstractmethod
    def second_moments(x: Float[Array, " d"]) -> Float[Array, " n_second"]:
        """The second-order terms ``q(x)`` of one sample."""

    #: Whether every component has the same second-order terms ('tied'). Then
    #: ``phi(x)`` is ``[1, x]``: the E-step adds the quadratic form once per row
    #: (:meth:`shared_quadratic`) instead of K times through ``phi @ A``, and the
    #: second moments' statistic is the rows' own, ``sum_i (sum_k r_ik) q(x_i)``
    #: (:meth:`pooled_second_moments`; scikit-learn's tied M-step reads ``X^T X``
    #: too), a D x D product instead of K x D(D+1)/2 columns of features.
    shared_second: ClassVar[bool] = False

    #: The fused CPU pass's name for :meth:`second_moments` (``_kernels``: 'squares',
    #: 'norm' or 'triangle'; 'shared' for tied's shared quadratic form, with
    #: :meth:`shared_quadratic` from ``precisions_cholesky`` and
    #: :meth:`pooled_second_moments`); None where the kernel does not serve it.
    fused_features: ClassVar[str | None] = None
    #: Whether the fused CPU pass's centred form serves it (wide data): its centred
    #: log-density is ``constant_k - |(x - mu_k) @ U_k|^2 / 2`` with ``U_k``, its
    #: precision Cholesky factor, a (D, D) matrix per component.
    fused_direct: ClassVar[bool] = False

    @classmethod
    def features(cls, x: Float[Array, " d"]) -> Float[Array, " n_phi"]:
        """``phi(x) = [1, x, q(x)]`` for one sample (the seed's per-sample view);
        ``[1, x]`` where the second-order terms are shared."""
        parts = [jnp.ones((1,), x.dtype), x]
        return jnp.concatenate(parts if cls.shared_second else [*parts, cls.second_moments(x)])

    @classmethod
    def n_phi(cls, n_features: int) -> int:
        """Length of :meth:`features`."""
        return 1 + n_features + (0 if cls.shared_second else cls.n_second(n_features))

    def shared_quadratic(self, x: Float[Array, "... d"]) -> Float[Array, "..."]:
        """The second-order term every component shares, ``-x^T P x / 2``, of rows
        ``x`` (only where :attr:`shared_second`)."""
        raise NotImplementedError(f"{type(self).__name__} has no shared quadratic term")

    @staticmethod
    def pooled_second_moments(
        resp: Float[Array, "b k"], x: Float[Array, "b d"]
    ) -> Float[Array, "1 n_second"]:
        """``sum_k sum_b resp[b, k] q(x[b])``, the statistic of :attr:`shared_second`
        structures, as one row (only where :attr:`shared_second`)."""
        raise NotImplementedError("only a shared quadratic form pools its second moments")

    @staticmethod
    @abc.abstractmethod
    def n_second(n_features: int) -> int:
        """Length of ``q(x)``."""

    @staticmethod
    @abc.abstractmethod
    def centered_second_moments(
        resp: Float[Array, "b k"], diff: Float[Array, "b k d"]
    ) -> Float[Array, "k n_second"]:
        """``sum_b resp[b, k] q(diff[b, k])``: second moments about per-component
        centres, formed from explicit differences (the exact, slower path)."""

    @abc.abstractmethod
    def scale_noise(self, z: Float[Array, "n d"], labels) -> Float[Array, "n d"]:
        """Standard normal draws ``z`` turned into draws of covariance ``labels[i]``."""

    @abc.abstractmethod
    def variances(self) -> Float[Array, "k d"]:
        """Each component's variance along each feature (broadcastable to (K, D))."""

    # -- parameters ----------------------------------------------------------------
    @abc.abstractmethod
    def log_det_cholesky(self, n_features: int) -> Float[Array, " k"]:
        """Log-determinant of each component's precision Cholesky factor."""

    @abc.abstractmethod
    def natural(
        self, means: Float[Array, "k d"]
    ) -> tuple[Float[Array, "k d"], Float[Array, "k n_second"], Float[Array, " k"]]:
        """``(lin, quad, const)`` with ``log N(x | k) = const + lin.x + quad.q(x)``."""

    @classmethod
    def from_stats(
        cls,
        sum_r: Float[Array, " k"],
        nk: Float[Array, " k"],
        means: Float[Array, "k d"],
        sum_rxx: Float[Array, "k n_second"],
        reg_covar: Float[Array, ""],
        active: Array,
        previous: Array | None = None,
    ) -> Covariance:
        """scikit-learn's M-step (``nk`` includes its 10 eps): :meth:`estimate`, and
        the precisions' Cholesky factors."""
        args = (sum_r, nk, means, sum_rxx, reg_covar, active, previous)
        return cls.from_covariances(cls.estimate(*args))

    @staticmethod
    @abc.abstractmethod
    def estimate(sum_r, nk, means, sum_rxx, reg_covar, active, previous=None) -> Array:
        """scikit-learn's M-step covariance estimate, in its shape (arguments as
        :meth:`from_stats`). Components with ``active`` False (padding of a
        model-selection sweep) get the identity and count for nothing. ``previous``:
        the covariances the last M-step gave (this class's shape; None at the start),
        where an M-step that iterates starts (mclust's families with a common
        orientation), so that each EM iteration improves on the last."""

    @classmethod
    def chosen(cls, index: Array | None) -> type[Covariance] | Covariance:
        """What a program's passes and M-steps call for this structure: the class
        itself (``index`` is None), except for :class:`SwitchedCovariance`."""
        return cls

    def structure(self) -> type[Covariance] | Covariance:
        """What this covariance's next M-step calls (:meth:`chosen`)."""
        return type(self)

    @staticmethod
    @abc.abstractmethod
    def moments_from_full(sum_rxx: Float[Array, "k n_pairs"], n_features: int) -> Array:
        """This structure's second moments (``q``'s layout) from full ones (the upper
        triangle of ``x x^T``)."""

    @classmethod
    @abc.abstractmethod
    def from_dense(cls, covariances: np.ndarray, precisions_cholesky: np.ndarray) -> Covariance:
        """From (..., K, D, D) matrices of this structure (numpy, host; leading batch
        axes allowed), the inverse of :meth:`dense`."""

    @classmethod
    @abc.abstractmethod
    def from_covariances(cls, covariances: Array) -> Covariance:
        """From covariances in scikit-learn's shape."""

    @classmethod
    @abc.abstractmethod
    def from_precisions(cls, precisions: Array) -> Covariance:
        """From precisions in scikit-learn's shape (``precisions_init``)."""

    @abc.abstractmethod
    def precisions(self) -> Array:
        """scikit-learn's ``precisions_``."""

    @staticmethod
    @abc.abstractmethod
    def n_parameters(n_components: int, n_features: int) -> int:
        """Number of free covariance parameters."""

    @staticmethod
    @abc.abstractmethod
    def shape(n_components: int, n_features: int) -> tuple[int, ...]:
        """Shape of ``covariances`` (and of the precisions)."""

    #: Past this many second-moment features per row (D(D+1)/2 for full and tied:
    #: D > 63) the expanded form's features cost more memory than the direct form,
    #: ``x - mu_k`` against the precision Cholesky factor, costs flops: a block of 64
    #: rows of a 300 x 2,000 table held 1 GB of features, and building them by
    #: gathers was slower than the direct form's products.
    DIRECT_SECOND_MOMENTS: ClassVar[int] = 2048

    @classmethod
    def prefers_direct(cls, n_features: int) -> bool:
        """Whether the E-step and the statistics skip the expanded features phi(x)
        for ``n_features`` columns (from static shapes, so it costs no branch)."""
        # a shared quadratic form (tied) has no second-moment features to outgrow
        shared = cls.shared_second
        return not shared and cls.n_second(n_features) > Covariance.DIRECT_SECOND_MOMENTS

    #: Whether ``covariances`` has a leading component axis (all but 'tied').
    per_component: ClassVar[bool] = True

    def padded(self, extra: int) -> Covariance:
        """``extra`` masked components appended, with identity covariance (whose
        precision Cholesky factor is the identity too), as a fit's padding has."""
        if not self.per_component:
            return self
        xp = np if isinstance(self.covariances, np.ndarray) else jnp  # host: no compiling
        ident = self.identity(extra, self.covariances.shape[1:], self.covariances.dtype, xp)
        join = lambda a: xp.concatenate([a, ident])
        return self.replace(join(self.covariances), join(self.precisions_cholesky))

    def leading(self, k: int, batch_ndim: int = 0) -> Covariance:
        """The first ``k`` components (numpy arrays in, numpy arrays out), whose axis
        follows ``batch_ndim`` batch axes."""
        if not self.per_component:
            return self
        cut = lambda a: a[(slice(None),) * batch_ndim + (slice(0, k),)]
        return self.replace(cut(self.covariances), cut(self.precisions_cholesky))

    def as_full(self, n_components: int, n_features: int) -> FullCovariance:
        """The same covariances as a full one's (K, D, D) matrices (numpy in, numpy
        out; JAX arrays in, JAX arrays out), which the full E-step reads as this
        structure's own: the extra entries are zeros or copies."""
        xp = np if isinstance(self.covariances, np.ndarray) else jnp
        dense = lambda a: self.dense(a, n_components, n_features, xp)
        return FullCovariance(dense(self.covariances), dense(self.precisions_cholesky))

    def replace(self, covariances, precisions_cholesky) -> Covariance:
        """The same structure with other arrays."""
        return dataclasses.replace(
            self, covariances=covariances, precisions_cholesky=precisions_cholesky
        )

    @staticmethod
    def identity(k: int, tail: tuple[int, ...], dtype, xp=jnp) -> Array:
        """``k`` identity covariances of this type (``tail``: one's shape), as
        ``xp`` (jax.numpy or numpy) arrays."""
        if len(tail) == 2:
            return xp.broadcast_to(xp.eye(tail[-1], dtype=dtype), (k, *tail))
        return xp.ones((k, *tail), dtype)

    @staticmethod
    @abc.abstractmethod
    def wishart_posterior(nk, sk, diff, mean_precision, priors) -> tuple[Array, Array]:
        """The variational M-step's Wishart part, as scikit-learn's
        ``_estimate_wishart_*``: degrees of freedom and covariances from the counts
        ``nk``, the covariances ``sk`` (with ``reg_covar``), ``diff = xk - mean_prior``
        and the posterior ``mean_precision``; ``priors`` holds the priors
        (``covariance``, ``degrees_of_freedom``, ``mean_precision``)."""

    @staticmethod
    @abc.abstractmethod
    def dense(covariances, n_components: int, n_features: int, xp=np):
        """``covariances`` (scikit-learn's shape; ``xp``: numpy or jax.numpy) as
        (K, D, D) matrices."""

    @staticmethod
    @abc.abstractmethod
    def precisions_from_cholesky(chol):
        """scikit-learn's ``precisions_`` from ``precisions_cholesky_`` (numpy)."""

    def log_prob_constant(self, means: Float[Array, "k d"]) -> Float[Array, " k"]:
        """The part of each log-density that does not depend on x or the mean: the
        log-density at the mode."""
        d = means.shape[-1]
        return self.log_det_cholesky(d) - 0.5 * d * math.log(2 * math.pi)

    # -- the centred (exact) form ----------------------------------------------------
    @abc.abstractmethod
    def whiten(self, diff: Float[Array, "k d"]) -> Float[Array, "k d"]:
        """``diff[k]`` against component k's precision Cholesky factor (scikit-learn's
        ``y``), so that ``sum(y**2)`` is the squared Mahalanobis distance."""

    @abc.abstractmethod
    def precision_norm(self) -> Float[Array, " k"]:
        """An upper bound of each component's largest precision eigenvalue (the
        infinity norm of the precision matrix)."""

    def log_prob_centred(
        self, x: Float[Array, " d"], means: Float[Array, "k d"]
    ) -> Float[Array, " k"]:
        """``log N(x | k)`` for one sample from ``x - mu_k`` itself, as scikit-learn
        computes it: no cancellation however far and tight a component is."""
        y = self.whiten(x - means)
        return self.log_prob_constant(means) - 0.5 * jnp.sum(y * y, axis=-1)

    def fast_form_error(
        self, means: Float[Array, "k d"], radius: Float[Array, ""]
    ) -> Float[Array, " k"]:
        """Estimated rounding error, in nats, of :meth:`natural`'s expanded form for
        samples within ``radius`` of the origin.

        The expanded form adds terms as large as ``lambda_max(P) (|x| + |mu|)**2``
        (``x^T P x``, ``x^T P mu``, ``mu^T P mu``) to give a log-density that can be
        far smaller: each term carries a rounding error of about ``eps`` times its
        size, and the terms cancel, the errors do not.
        """
        eps = jnp.finfo(means.dtype).eps
        reach = radius + jnp.sqrt(jnp.sum(means * means, axis=-1))
        return eps * self.precision_norm() * reach**2


class _Matrices(Covariance):
    """What full and tied share: general matrices, upper-triangle second moments."""

    matrices: ClassVar[bool] = True
    #: Dimensions of the variational covariance prior (scikit-learn's shape).
    prior_ndim: ClassVar[int] = 2
    fused_features: ClassVar[str | None] = "triangle"

    @staticmethod
    def empirical_prior(X):
        """scikit-learn's default covariance prior: the data's covariance (numpy)."""
        return np.atleast_2d(np.cov(X.T))

    @staticmethod
    def second_moments(x):
        i, j = _triu(x.shape[-1])
        return x[i] * x[j]

    @staticmethod
    def n_second(n_features):
        return n_features * (n_features + 1) // 2

    @staticmethod
    def centered_second_moments(resp, diff):
        i, j = _triu(diff.shape[-1])
        return jnp.einsum("bk,bkd,bke->kde", resp, diff, diff)[:, i, j]

    @staticmethod
    def moments_from_full(sum_rxx, n_features):
        return sum_rxx

    @classmethod
    def from_covariances(cls, covariances):
        return cls(covariances, _chol_precision_from_cov(covariances))

    @classmethod
    def from_precisions(cls, precisions):
        # The covariances from the Cholesky factor U (P = U U^T, so P^-1 = U^-T U^-1),
        # not from a separate inverse: two independent LAPACK calls in one program
        # can deadlock jaxlib's CPU kernels (ARCHITECTURE.md, "LAPACK calls in one
        # program"), and this one depends on the Cholesky factorisation.
        chol = _chol_precision_from_precision(precisions)
        eye = jnp.broadcast_to(jnp.eye(chol.shape[-1], dtype=chol.dtype), chol.shape)
        inv_chol = solve_triangular(chol, eye, lower=False)
        return cls(jnp.swapaxes(inv_chol, -1, -2) @ inv_chol, chol)

    def precisions(self):
        return _gram(self.precisions_cholesky)

    @staticmethod
    def precisions_from_cholesky(chol):
        return np.einsum("...ij,...kj->...ik", chol, chol)


class _Variances(Covariance):
    """What diag and spherical share: variances, squared features."""

    matrices: ClassVar[bool] = False
    prior_ndim: ClassVar[int] = 1
    fused_features: ClassVar[str | None] = "squares"

    @staticmethod
    def empirical_prior(X):
        """scikit-learn's default covariance prior: the data's variances (numpy)."""
        return np.var(X, axis=0, ddof=1)

    @staticmethod
    def second_moments(x):
        return x * x

    @staticmethod
    def n_second(n_features):
        return n_features

    @staticmethod
    def centered_second_moments(resp, diff):
        return jnp.einsum("bk,bkd->kd", resp, diff * diff)

    @staticmethod
    def moments_from_full(sum_rxx, n_features):
        i, j = _triu(n_features)
        return sum_rxx[..., np.flatnonzero(i == j)]  # the squares x_i x_i

    @classmethod
    def from_covariances(cls, covariances):
        # 1/sqrt of a non-positive variance is inf or NaN: reported as NON_FINITE.
        return cls(covariances, 1.0 / jnp.sqrt(covariances))

    @classmethod
    def from_precisions(cls, precisions):
        return cls(1.0 / precisions, jnp.sqrt(precisions))

    def precisions(self):
        return self.precisions_cholesky**2

    @staticmethod
    def precisions_from_cholesky(chol):
        return np.asarray(chol) ** 2


@pytree_dataclass
class FullCovariance(_Matrices):
    """Each component has its own general covariance matrix."""

    name: ClassVar[str] = "full"
    family: ClassVar[str] = "VVV"
    fused_direct: ClassVar[bool] = True
    covariances: Float[Array, "k d d"]
    precisions_cholesky: Float[Array, "k d d"]

    def variances(self):
        return jnp.diagonal(self.covariances, axis1=-2, axis2=-1)

    def scale_noise(self, z, labels):
        return jnp.einsum("nde,ne->nd", jnp.linalg.cholesky(self.covariances)[labels], z)

    def whiten(self, diff):
        return jnp.einsum("kd,kde->ke", diff, self.precisions_cholesky)

    def precision_norm(self):
        return jnp.max(jnp.sum(jnp.abs(_gram(self.precisions_cholesky)), -1), -1)

    def log_det_cholesky(self, n_features):
        return jnp.sum(jnp.log(jnp.diagonal(self.precisions_cholesky, axis1=-2, axis2=-1)), -1)

    def natural(self, means):
        prec = _gram(self.precisions_cholesky)
        lin = jnp.einsum("kde,ke->kd", prec, means)
        const = self.log_prob_constant(means) - 0.5 * jnp.sum(lin * means, -1)
        return lin, _quad_coefficients(prec), const

    @staticmethod
    def estimate(sum_r, nk, means, sum_rxx, reg_covar, active, previous=None):
        d = means.shape[-1]
        outer = means[:, :, None] * means[:, None, :]
        # sum_b r (x - mu)(x - mu)^T / nk, expanded; sum_r/nk keeps scikit-learn's 10 eps.
        cov = _unvech(sum_rxx, d) / nk[:, None, None] - (2.0 - sum_r / nk)[:, None, None] * outer
        eye = jnp.eye(d, dtype=cov.dtype)
        return jnp.where(active[:, None, None], cov + reg_covar * eye, eye)

    @staticmethod
    def n_parameters(n_components, n_features):
        return n_components * n_features * (n_features + 1) // 2

    @staticmethod
    def shape(n_components, n_features):
        return (n_components, n_features, n_features)

    @staticmethod
    def wishart_posterior(nk, sk, diff, mean_precision, priors):
        ratio = priors.mean_precision / mean_precision
        dof = priors.degrees_of_freedom + nk
        outer = diff[:, :, None] * diff[:, None, :]
        cov = priors.covariance + nk[:, None, None] * sk + (nk * ratio)[:, None, None] * outer
        return dof, cov / dof[:, None, None]

    @staticmethod
    def dense(covariances, n_components, n_features, xp=np):
        return xp.asarray(covariances)

    @classmethod
    def from_dense(cls, covariances, precisions_cholesky):
        return cls(covariances, precisions_cholesky)


@pytree_dataclass
class TiedCovariance(_Matrices):
    """All components share one general covariance matrix."""

    name: ClassVar[str] = "tied"
    family: ClassVar[str] = "EEE"
    per_component: ClassVar[bool] = False
    shared_second: ClassVar[bool] = True
    fused_features: ClassVar[str | None] = "shared"

    def shared_quadratic(self, x):
        y = x @ self.precisions_cholesky
        return -0.5 * jnp.sum(y * y, axis=-1)

    @staticmethod
    def pooled_second_moments(resp, x):
        # one (D, B) x (B, D) product, in q's layout (the upper triangle)
        i, j = _triu(x.shape[-1])
        weighted = x * jnp.sum(resp, axis=1)[:, None]
        return (weighted.T @ x)[i, j][None, :]

    covariances: Float[Array, "d d"]
    precisions_cholesky: Float[Array, "d d"]

    def variances(self):
        return jnp.diagonal(self.covariances)[None, :]

    def scale_noise(self, z, labels):
        return z @ jnp.linalg.cholesky(self.covariances).T

    def whiten(self, diff):
        return diff @ self.precisions_cholesky

    def precision_norm(self):
        return jnp.max(jnp.sum(jnp.abs(_gram(self.precisions_cholesky)), -1))

    def log_det_cholesky(self, n_features):
        return jnp.sum(jnp.log(jnp.diagonal(self.precisions_cholesky)))

    def natural(self, means):
        prec = _gram(self.precisions_cholesky)
        lin = means @ prec
        const = self.log_prob_constant(means) - 0.5 * jnp.sum(lin * means, -1)
        quad = _quad_coefficients(prec)
        return lin, jnp.broadcast_to(quad, means.shape[:1] + quad.shape), const

    @staticmethod
    def estimate(sum_r, nk, means, sum_rxx, reg_covar, active, previous=None):
        d = means.shape[-1]
        nk = jnp.where(active, nk, 0)
        # scikit-learn: (X^T X - sum_k nk mu_k mu_k^T) / sum(nk). sum_rxx is one row
        # (pooled_second_moments) or, from the exact pass, one per component.
        cov = (_unvech(jnp.sum(sum_rxx, 0), d) - (nk * means.T) @ means) / jnp.sum(nk)
        return cov + reg_covar * jnp.eye(d, dtype=cov.dtype)

    @staticmethod
    def n_parameters(n_components, n_features):
        return n_features * (n_features + 1) // 2

    @staticmethod
    def shape(n_components, n_features):
        return (n_features, n_features)

    @staticmethod
    def wishart_posterior(nk, sk, diff, mean_precision, priors):
        k = nk.shape[0]
        dof = priors.degrees_of_freedom + jnp.sum(nk) / k
        cov = (
            priors.covariance
            + sk * jnp.sum(nk) / k
            + priors.mean_precision / k * ((nk / mean_precision) * diff.T) @ diff
        )
        return dof, cov / dof

    @staticmethod
    def dense(covariances, n_components, n_features, xp=np):
        return xp.broadcast_to(covariances, (n_components, n_features, n_features)).copy()

    @classmethod
    def from_dense(cls, covariances, precisions_cholesky):
        first = lambda a: a[..., 0, :, :]  # every component holds the same matrix
        return cls(first(covariances), first(precisions_cholesky))


@pytree_dataclass
class DiagCovariance(_Variances):
    """Each component has its own diagonal covariance matrix."""

    name: ClassVar[str] = "diag"
    family: ClassVar[str] = "VVI"
    covariances: Float[Array, "k d"]
    precisions_cholesky: Float[Array, "k d"]

    def variances(self):
        return self.covariances

    def scale_noise(self, z, labels):
        return z * jnp.sqrt(self.covariances)[labels]

    def whiten(self, diff):
        return diff * self.precisions_cholesky

    def precision_norm(self):
        return jnp.max(self.precisions_cholesky**2, -1)

    def log_det_cholesky(self, n_features):
        return jnp.sum(jnp.log(self.precisions_cholesky), -1)

    def natural(self, means):
        prec = self.precisions_cholesky**2
        lin = prec * means
        const = self.log_prob_constant(means) - 0.5 * jnp.sum(lin * means, -1)
        return lin, -0.5 * prec, const

    @staticmethod
    def estimate(sum_r, nk, means, sum_rxx, reg_covar, active, previous=None):
        # scikit-learn: avg_X2 - avg_means2 + reg_covar
        cov = sum_rxx / nk[:, None] - means**2 + reg_covar
        return jnp.where(active[:, None], cov, 1)

    @staticmethod
    def n_parameters(n_components, n_features):
        return n_components * n_features

    @staticmethod
    def shape(n_components, n_features):
        return (n_components, n_features)

    @staticmethod
    def wishart_posterior(nk, sk, diff, mean_precision, priors):
        ratio = priors.mean_precision / mean_precision
        dof = priors.degrees_of_freedom + nk
        cov = priors.covariance + nk[:, None] * (sk + ratio[:, None] * diff**2)
        return dof, cov / dof[:, None]

    @staticmethod
    def dense(covariances, n_components, n_features, xp=np):
        covariances = xp.asarray(covariances)
        return covariances[:, :, None] * xp.eye(n_features, dtype=covariances.dtype)

    @classmethod
    def from_dense(cls, covariances, precisions_cholesky):
        diagonal = lambda a: np.diagonal(a, axis1=-2, axis2=-1).copy()
        return cls(diagonal(covariances), diagonal(precisions_cholesky))


@pytree_dataclass
class SphericalCovariance(_Variances):
    """Each component has its own single variance."""

    name: ClassVar[str] = "spherical"
    family: ClassVar[str] = "VII"
    covariances: Float[Array, " k"]
    precisions_cholesky: Float[Array, " k"]
    prior_ndim: ClassVar[int] = 0
    fused_features: ClassVar[str | None] = "norm"

    @staticmethod
    def empirical_prior(X):
        """scikit-learn's default: the mean of the data's variances (numpy)."""
        return np.var(X, axis=0, ddof=1).mean()

    # One second-order term, |x|^2: a spherical log-density and M-step read no other
    # (phi has D + 2 columns, not 2D + 1).
    @staticmethod
    def second_moments(x):
        return jnp.sum(x * x, axis=-1, keepdims=True)

    @staticmethod
    def n_second(n_features):
        return 1

    @staticmethod
    def centered_second_moments(resp, diff):
        return jnp.einsum("bk,bk->k", resp, jnp.sum(diff * diff, axis=-1))[:, None]

    @staticmethod
    def moments_from_full(sum_rxx, n_features):
        squares = _Variances.moments_from_full(sum_rxx, n_features)
        return jnp.sum(squares, axis=-1, keepdims=True)

    def variances(self):
        return self.covariances[:, None]

    def scale_noise(self, z, labels):
        return z * jnp.sqrt(self.covariances)[labels][:, None]

    def whiten(self, diff):
        return diff * self.precisions_cholesky[:, None]

    def precision_norm(self):
        return self.precisions_cholesky**2

    def log_det_cholesky(self, n_features):
        return n_features * jnp.log(self.precisions_cholesky)

    def natural(self, means):
        prec = self.precisions_cholesky**2
        lin = prec[:, None] * means
        const = self.log_prob_constant(means) - 0.5 * jnp.sum(lin * means, -1)
        return lin, -0.5 * prec[:, None], const

    @staticmethod
    def estimate(sum_r, nk, means, sum_rxx, reg_covar, active, previous=None):
        # scikit-learn: the mean over features of the diagonal estimate (sum_rxx is
        # the sum over features of its second moments)
        d = means.shape[-1]
        mean_square = sum_rxx[:, 0] / (d * nk) - jnp.mean(means**2, -1)
        return jnp.where(active, mean_square + reg_covar, 1)

    @staticmethod
    def n_parameters(n_components, n_features):
        return n_components

    @staticmethod
    def shape(n_components, n_features):
        return (n_components,)

    @staticmethod
    def wishart_posterior(nk, sk, diff, mean_precision, priors):
        ratio = priors.mean_precision / mean_precision
        dof = priors.degrees_of_freedom + nk
        cov = priors.covariance + nk * (sk + ratio * jnp.mean(diff**2, 1))
        return dof, cov / dof

    @staticmethod
    def dense(covariances, n_components, n_features, xp=np):
        covariances = xp.asarray(covariances)
        return covariances[:, None, None] * xp.eye(n_features, dtype=covariances.dtype)

    @classmethod
    def from_dense(cls, covariances, precisions_cholesky):
        return cls(covariances[..., 0, 0], precisions_cholesky[..., 0, 0])


COVARIANCE_TYPES: dict[str, type[Covariance]] = {
    c.name: c for c in (FullCovariance, TiedCovariance, DiagCovariance, SphericalCovariance)
}
#: The structures a :class:`SwitchedCovariance` chooses among, by index.
STRUCTURES: tuple[type[Covariance], ...] = tuple(COVARIANCE_TYPES.values())


@pytree_dataclass
class SwitchedCovariance(FullCovariance):
    """Any of the four structures, chosen by a traced ``index`` into
    :data:`STRUCTURES`, so that one compiled program fits all four (small data, whose
    programs take seconds to compile and microseconds to run).

    It holds every structure's covariances as (K, D, D) matrices, so the E-step is
    the full one. Its M-step is the chosen class's own :meth:`~Covariance.estimate`,
    made dense, then the precisions' Cholesky factors of the dense matrices: for a
    diagonal matrix those are ``1 / sqrt(variances)``, as the diag class computes
    them. :meth:`as_structure` turns a fitted one back into the chosen class, on the
    host.

    As a *structure* (what passes and M-steps call, :meth:`chosen`) it is an instance
    whose arrays are None: its M-step needs the index, a traced value.
    """

    name: ClassVar[str] = "all types"
    #: The structures it chooses among (by ``index``).
    choices: ClassVar[tuple[type[Covariance], ...]]
    covariances: Float[Array, "k d d"] | None
    precisions_cholesky: Float[Array, "k d d"] | None
    index: Int[Array, ""] | None = None

    @classmethod
    def chosen(cls, index):
        return cls(None, None, index)

    def structure(self):
        return self

    def from_stats(self, sum_r, nk, means, sum_rxx, reg_covar, active, previous=None):
        args = (sum_r, nk, means, sum_rxx, reg_covar, active, previous)
        cov, chol = _switched_m_step(self.choices, self.index, *args)
        return type(self)(cov, chol, self.index)

    @classmethod
    def from_covariances(cls, covariances):
        raise TypeError("a switched covariance is made by its M-step, which knows the index")

    def as_structure(self, cls: type[Covariance]) -> Covariance:
        """The fitted covariance as ``cls``'s (the structure it was fitted as; numpy,
        host, leading batch axes kept)."""
        return cls.from_dense(np.asarray(self.covariances), np.asarray(self.precisions_cholesky))


SwitchedCovariance.choices = STRUCTURES


@functools.partial(jax.jit, static_argnums=0)
def _switched_m_step(choices, index, sum_r, nk, means, sum_rxx, reg_covar, active, previous):
    """:meth:`SwitchedCovariance.from_stats`'s arrays. A jitted function is traced
    once for all the M-steps of a program that have the same shapes (tracing is a
    third of a small program's compile)."""
    k, d = means.shape

    def dense_estimate(c: type[Covariance]):
        moments = c.moments_from_full(sum_rxx, d)
        # the previous covariances are dense: what the full families read
        cov = c.estimate(sum_r, nk, means, moments, reg_covar, active, previous)
        return c.dense(cov, k, d, jnp)

    if all(c in STRUCTURES for c in choices):
        # The four are a few elementwise operations on (K, D, D) arrays each, cheaper
        # to compile (and to run) all than as branches.
        cov = jnp.stack([dense_estimate(c) for c in choices])[index]
    else:  # mclust's families: eigendecompositions and inner loops; the chosen one runs
        cov = jax.lax.switch(index, [functools.partial(dense_estimate, c) for c in choices])
    return cov, _chol_precision_from_cov(cov)


def covariance_class(covariance_type: str | type[Covariance]) -> type[Covariance]:
    """The class for a ``covariance_type``: scikit-learn's name or mclust's family
    (:mod:`jaxgmm._families`; ``'VVV'`` is ``'full'``, ``'EEE'`` ``'tied'``, ``'VVI'``
    ``'diag'`` and ``'VII'`` ``'spherical'``)."""
    from ._families import FAMILIES

    if isinstance(covariance_type, type) and issubclass(covariance_type, Covariance):
        return covariance_type
    if isinstance(covariance_type, str) and covariance_type in COVARIANCE_TYPES:
        return COVARIANCE_TYPES[covariance_type]
    if isinstance(covariance_type, str) and covariance_type in FAMILIES:
        return FAMILIES[covariance_type]
    raise ValueError(
        f"covariance_type must be one of {sorted(COVARIANCE_TYPES)} or mclust's families "
        f"{list(FAMILIES)}, got {covariance_type!r}"
    )


def covariance_names() -> set[str]:
    """Every name :func:`covariance_class` takes: scikit-learn's four and mclust's 14."""
    from ._families import FAMILIES

    return set(COVARIANCE_TYPES) | set(FAMILIES)
