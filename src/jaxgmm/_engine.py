"""The engine: one compiled function fits a batch of (K, restart) cells.

Everything about a fit is in three objects, split by what a change costs:

* :class:`Options` (frozen, hashable, static): what is compiled into the program
  (covariance class, the model (maximum likelihood or variational), the
  initialization, ``max_iter``, whether scores are kept, progress reporting).
  Changing a field compiles a new program.
* :class:`Batch` (frozen, hashable, static): the batch's shape: which K, how many
  restarts, over how many devices, in blocks of how many rows.
* :class:`Inputs` (a pytree, traced): ``tol``, ``reg_covar``, the starting lower
  bound, given or warm-start parameters, shared k-means centres and priors, and what
  a program shared by nearby small fits needs (the real K, the covariance type, the
  number of restarts; see :func:`_shared`). Changing these never recompiles; nor do
  the key and the rows.

:func:`fit_batch` is the one jitted entry. The GMM restarts
(:func:`jaxgmm._multistart.fit_restarts`), the sweep over K and types
(:func:`jaxgmm._selection.sweep`) and the variational restarts
(:func:`jaxgmm._bayesian.fit_vb_restarts`) are front doors that fill these objects.
What differs between maximum likelihood and variational EM (how a fit starts, how it
iterates, how it is padded) is a *model* object in :class:`Options`
(:class:`MaximumLikelihood` here, :class:`jaxgmm._bayesian.Variational`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from . import _progress
from ._covariance import Covariance, SwitchedCovariance
from ._em import FITS, final_scores, run_em
from ._families import SwitchedFamilies
from ._init import initialize, kmeans, kmeans_centers, params_from_centers, params_from_labels
from ._params import GMMParams
from ._programs import compile_then_upload, compiles_ahead, rounded_components
from ._pytree import pytree_dataclass
from ._rows import Blocks, RowPlan, Rows, make_blocks, plan_rows
from ._typing import Array, Status, as_dtype, float_dtype, x64_scope

__all__ = [
    "Batch",
    "GivenInit",
    "Inputs",
    "MaximumLikelihood",
    "Options",
    "batch_columns",
    "device_count",
    "fit_batch",
    "kmeans_batch",
    "run",
    "shared_centers",
]


@pytree_dataclass
class GivenInit:
    """User-given initial parameters in scikit-learn's form (any may be None)."""

    weights: Array | None = None
    means: Array | None = None
    precisions: Array | None = None


@pytree_dataclass
class Inputs:
    """The traced arguments of a batch: changing them never recompiles."""

    tol: Array
    reg_covar: Array
    lower_bound0: Array
    given: GivenInit = dataclasses.field(default_factory=GivenInit)
    params0: Any = None  # warm start: every restart starts here
    centers: Array | None = None  # shared 'kmeans' centres, one set per fit
    priors: Any = None  # the variational model's priors
    # the components each K of the batch uses, where the program holds more (small
    # data: K rounded up so that nearby K share a program); None: the batch's ks
    n_components: Array | None = None
    # the structure a SwitchedCovariance program fits (small data: the four types, or
    # the 14 families, share one program), an index into its choices; None: the
    # options' class
    structure: Array | None = None
    # the restarts a sequential batch runs (Batch.sequential), at most its n_init
    n_restarts: Array | None = None
    # each fit's own starting parameters (leading fit axis, K-major, padded to the
    # batch's largest K): a multi-process fit's sample initialization (jaxgmm._spmd)
    starts: Any = None
    # mclust's hierarchical start (:mod:`jaxgmm._agglomerate`): the rows it was built
    # on (indices, shared) and each fit's labels of them (leading fit axis, -1 for a
    # fit that starts otherwise); the labelled fits start from the M-step of their
    # partition of those rows
    partition_rows: Array | None = None
    partition: Array | None = None


@dataclasses.dataclass(frozen=True)
class MaximumLikelihood:
    """EM for the mixture's maximum-likelihood parameters (``GaussianMixture``)."""

    #: The fit depends on the sample weights' ratios alone.
    scale_free: ClassVar[bool] = True

    def start(self, options: Options, key, blocks: Blocks, inputs: Inputs, active):
        params = self._start(options, key, blocks, inputs, active)
        if inputs.partition is None:
            return params
        cov_cls = options.covariance.chosen(inputs.structure)
        rows, labels = inputs.partition_rows, inputs.partition
        # after the other start, not beside it: two independent LAPACK calls in one
        # program can deadlock (ARCHITECTURE.md, "LAPACK calls in one program")
        rows = rows + _zero_after(params, rows.dtype)
        given = params_from_labels(rows, labels, blocks, cov_cls, inputs.reg_covar, active)
        chosen = labels[0] >= 0  # a fit without a partition has -1 throughout

        # the float arrays only: an integer leaf (a switched covariance's traced index)
        # selected per fit would be batched, and a batched lax.switch runs every branch
        def pick(a, b):
            return jnp.where(chosen, a, b) if jnp.issubdtype(a.dtype, jnp.floating) else b

        return jax.tree_util.tree_map(pick, given, params)

    def _start(self, options: Options, key, blocks: Blocks, inputs: Inputs, active):
        cov_cls, k = options.covariance.chosen(inputs.structure), active.shape[0]
        if inputs.centers is not None:  # the 'kmeans' centres, computed once for all types
            centers = inputs.centers
            if options.refine_centers:  # a sample's centres: Lloyd steps over all rows
                centers = kmeans(centers - blocks.center, blocks, active=active) + blocks.center
            return params_from_centers(centers, blocks, cov_cls, inputs.reg_covar, active)
        if inputs.params0 is not None:
            return inputs.params0
        given = inputs.given
        if given.weights is None or given.means is None or given.precisions is None:
            params = initialize(key, blocks, k, cov_cls, options.init, inputs.reg_covar, active)
        else:  # scikit-learn skips the initialization when all three are given
            params = GMMParams(
                given.weights, given.means, cov_cls.from_precisions(given.precisions)
            )
        return GMMParams(
            params.weights if given.weights is None else given.weights,
            params.means if given.means is None else given.means,
            params.covariance
            if given.precisions is None
            else cov_cls.from_precisions(given.precisions),
        )

    def run(self, options: Options, params, blocks: Blocks, inputs: Inputs, active):
        return run_em(
            params,
            blocks,
            tol=inputs.tol,
            reg_covar=inputs.reg_covar,
            max_iter=options.max_iter,
            lower_bound=inputs.lower_bound0,
            active=active,
            report=options.report,
        )

    def scores(self, params, blocks: Blocks):
        return final_scores(params, blocks)

    def padded(self, params: GMMParams, k_max: int) -> GMMParams:
        return params.padded(k_max)

    #: Whether small batches may share programs: rounded up (:meth:`Batch.bucketed`,
    #: cut back by :meth:`leading`), and fitted by a switched covariance
    #: (:class:`~jaxgmm._covariance.SwitchedCovariance`).
    shares_programs: ClassVar[bool] = True

    def leading(self, params: GMMParams, k: int, batch_ndim: int = 0) -> GMMParams:
        return params.leading(k, batch_ndim)


@dataclasses.dataclass(frozen=True)
class Options:
    """What is compiled into a fit's program (static: a change compiles anew)."""

    covariance: type[Covariance]
    model: Any = MaximumLikelihood()
    init: str = "kmeans"
    max_iter: int = 100
    with_scores: bool = False
    report: bool = False
    #: ``Inputs.centers`` come from a sample (:mod:`jaxgmm._spmd`): Lloyd steps over
    #: all rows refine them before the parameters are taken from them.
    refine_centers: bool = False
    #: Small data shares a program among mclust's 14 families (a sweep over them),
    #: not only among scikit-learn's four (:func:`_shared`).
    families: bool = False
    #: The fit is one covariance type of a sweep over several: with ``families``,
    #: narrow data up to :data:`SWEEP_SHARING_WORK` per pass, not only small data,
    #: shares one program among the families (:func:`_shared`).
    sweep: bool = False


#: The most work (rows x components x fits x features^2, about the flops of one pass)
#: a small batch may be rounded up to (:meth:`Batch.bucketed`), or run in a shared
#: program at all (:func:`_shared`): a few milliseconds a pass on one core, against a
#: second or more to compile another program.
ROUNDING_WORK = 2**25


#: Beyond small data, a sweep over mclust's families on at most
#: :data:`SWEEP_SHARING_FEATURES` features and at most this much work per pass (as
#: :data:`ROUNDING_WORK`) runs its families in one shared program. Compiling one
#: program instead of one per family and K group is most of such a sweep's first run
#: (14 families over 100k x 8 rows, K=1..9, one restart: 20 s to the first result
#: instead of 75 s; run again 5.4 s against 6.6 s). The shared program computes a
#: diagonal family's pass in the full form, which costs more as D grows (4 types on
#: 20k x 16 rows ran 3x slower, and on 20k x 32 rows 38x slower, than a program per
#: type), hence the narrow bound on features.
SWEEP_SHARING_WORK = 2**30
SWEEP_SHARING_FEATURES = 8


#: The restarts a sequential small-data program has keys for (at least): any n_init
#: up to it shares the program.
SEQUENTIAL_SLOTS = 16


@dataclasses.dataclass(frozen=True)
class Batch:
    """The batch's shape (static): fits of each K in ``ks`` x ``n_init`` restarts
    (K-major), over ``n_devices`` local devices, in blocks of ``block_rows`` rows."""

    def resolved(self, X, sample_weight, cov_cls, dtype) -> tuple[RowPlan, Batch]:
        """The rows' plan, and this batch with its device count and block size
        chosen (blocks sized for the widest batch one device runs)."""
        n_dev = device_count(self.n_devices, self.n_init * len(self.ks))
        n_columns = batch_columns(self.ks, self.n_init, n_dev)
        plan = plan_rows(X, sample_weight, cov_cls, dtype, self.block_rows, n_columns)
        # small data runs in microseconds: one K group, one EM loop to compile
        split = self.split and not plan.small
        batch = dataclasses.replace(self, n_devices=n_dev, block_rows=plan.block_rows, split=split)
        return plan, batch

    ks: tuple[int, ...]
    n_init: int = 1
    n_devices: int | None = None  # None: every local device (resolved by run)
    block_rows: int | None = None  # None: sized for the data (resolved by run)
    split: bool = True  # K in two groups (groups); not for small data (resolved by run)
    #: The caller keeps the best restart alone (:func:`~jaxgmm._multistart.best_index`),
    #: so small data may run the restarts one after another (``sequential``).
    best_only: bool = False
    #: One K; its restarts run one after another (a loop to ``Inputs.n_restarts``,
    #: keys of ``n_init`` slots) and the best is kept: one program serves every
    #: ``n_init`` up to this one. The result has one restart.
    sequential: bool = False

    def groups(self) -> list[tuple[int, ...]]:
        """The K split in two batches, each padded to its own largest K: K up to half
        the largest, and the rest. A batch costs as many components as its largest K
        and runs until its slowest fit stops, so small models no longer pay for large
        ones (about 1.5x less work for K = 1..8)."""
        ks = self.ks
        small = tuple(k for k in ks if k <= max(ks) // 2)
        return [small, ks[len(small) :]] if self.split and len(ks) >= 4 and small else [ks]

    def fit_keys(self, key, group: tuple[int, ...], n_components=None):
        """Key and active component count of every fit of ``group`` (K-major): fit
        (k, i) has restart key i whatever k, so it equals the plain k-component fit.
        ``n_components`` (traced) replaces the group's K where given."""
        keys = jnp.tile(jax.random.split(key, self.n_init), len(group))
        counts = jnp.asarray(group, jnp.int32) if n_components is None else n_components
        return keys, jnp.repeat(counts, self.n_init)

    def bucketed(self, n_rows: int, n_features: int) -> Batch | None:
        """For small data, whose run time is negligible beside its compile time: K
        rounded up as :func:`~jaxgmm._programs.rounded_components` rounds it, and the
        restarts to a power of two, so that a new K (a grid search, cross-validation)
        or a nearby ``n_init`` reuses one program (1 stays 1: rounding it to 8 made
        each small fit 2.8x slower to run). The extra components are masked
        (weight 0, as the sweep's padding) and the extra restarts dropped; restart i
        keeps key i, as ``split(key, n)[i]`` does not depend on n with JAX's
        partitionable threefry (the default; with it off the restarts are not
        rounded). Where the rounded batch would cost more than
        :data:`ROUNDING_WORK` per pass, the restarts are kept, then K too (None)."""
        k_top = rounded_components(max(self.ks))
        n_init = self.n_init
        if jax.config.jax_threefry_partitionable:
            n_init = 1 << (n_init - 1).bit_length()
        for n in (n_init, self.n_init):
            rounded = dataclasses.replace(self, ks=(k_top,) * len(self.ks), n_init=n)
            if rounded.work(n_rows, n_features) <= ROUNDING_WORK:
                return rounded
        return None

    def work(self, n_rows: int, n_features: int) -> int:
        """About the flops of one pass of the batch in the full form: rows x
        components x fits x features^2."""
        fits = 1 if self.sequential else self.n_init * len(self.ks)
        return n_rows * max(self.ks) * fits * n_features**2


def device_count(n_devices: int | None, n_fits: int) -> int:
    """Local devices to shard ``n_fits`` fits over: all of them (or ``n_devices``), at
    most one per fit."""
    return min(jax.local_device_count() if n_devices is None else n_devices, n_fits)


def batch_columns(ks: tuple[int, ...], n_init: int, n_devices: int) -> int:
    """Per-row width (fits x components) of the widest batch one device runs, which
    :func:`~jaxgmm._rows.plan_rows` sizes the blocks for."""
    groups = Batch(ks, n_init).groups()
    return max(-(-len(g) * n_init // n_devices) * max(g) for g in groups)


def _blocks(rows: Rows, batch: Batch) -> Blocks:
    # host arrays under jax.disable_jit()
    x, w = jnp.asarray(rows.x), None if rows.w is None else jnp.asarray(rows.w)
    # The fast forms work about the data's centre: far less cancellation.
    return make_blocks(x, w, batch.block_rows, rows.n_samples, center="mean")


def over_fits(fn, batched, shared, n_devices):
    """``vmap(fn)`` over the leading axis of ``batched`` (None entries stay None),
    with ``shared`` arguments broadcast; over several devices, ``shard_map`` splits
    the fits (padded to a multiple of the device count, then trimmed)."""
    axes = tuple(None if a is None else 0 for a in batched)
    run = jax.vmap(fn, in_axes=axes + (None,) * len(shared), axis_name=FITS)
    n_fits = batched[0].shape[0]
    if n_devices > 1:
        mesh = Mesh(np.asarray(jax.local_devices()[:n_devices]), ("restart",))
        pad = -(-n_fits // n_devices) * n_devices - n_fits
        padded = lambda a: jnp.concatenate([a, jnp.repeat(a[:1], pad, 0)])
        batched = jax.tree_util.tree_map(padded, batched)
        run = jax.shard_map(
            run,
            mesh=mesh,
            in_specs=tuple(P() if a is None else P("restart") for a in batched)
            + (P(),) * len(shared),
            out_specs=P("restart"),
            # Each device runs its fits independently; no collective is involved, so
            # the replicated-vs-varying type check only gets in the way of the
            # zero-initialised scan carries.
            check_vma=False,
        )
    return jax.tree_util.tree_map(lambda a: a[:n_fits], run(*batched, *shared))


def _one_fit(
    options: Options, key, n_active, centers, start, labels, blocks: Blocks, inputs, k_max
):
    """One cell of the batch: start (from ``start`` where given), iterate, and (if
    asked) score."""
    # Components past n_active are padding (a sweep over K): weight 0, no data.
    active = jnp.arange(k_max) < n_active
    inputs = dataclasses.replace(inputs, centers=centers, partition=labels)
    if start is not None:  # this fit's own start: a warm start of this fit alone
        inputs = dataclasses.replace(inputs, params0=start)
    model = options.model
    params = model.start(options, key, blocks, inputs, active)
    result = model.run(options, params, blocks, inputs, active)
    return result, (model.scores(result.params, blocks) if options.with_scores else None)


@functools.partial(jax.jit, static_argnums=(0, 1))
def fit_batch(options: Options, batch: Batch, key, rows: Rows, inputs: Inputs):
    """Every (K, restart) cell of ``batch``, as one program; returns the results
    (padded to ``max(batch.ks)`` components, leading fit axis, K-major) and, with
    ``options.with_scores``, each fit's final log-likelihood and responsibility
    entropy (weighted sums)."""
    return fit_blocks(options, batch, key, _blocks(rows, batch), inputs)


def fit_blocks(options: Options, batch: Batch, key, blocks: Blocks, inputs: Inputs):
    """:func:`fit_batch` on rows already cut into blocks (traced)."""
    per_fit = dataclasses.replace(
        inputs, centers=None, n_components=None, starts=None, partition=None
    )
    shared = (blocks, per_fit)
    parts, start, k_top = [], 0, max(batch.ks)
    for group in batch.groups():
        k_max = max(group)
        stop = start + len(group) * batch.n_init
        c = None if inputs.centers is None else inputs.centers[start:stop, :k_max]
        labels = None if inputs.partition is None else inputs.partition[start:stop]
        s = None
        if inputs.starts is not None:
            s = jax.tree_util.tree_map(lambda a, i=start, j=stop: a[i:j], inputs.starts)
            s = options.model.leading(s, k_max, batch_ndim=1)
        one = functools.partial(_one_fit, options, k_max=k_max)
        counts = None
        if inputs.n_components is not None:
            counts = inputs.n_components[start // batch.n_init : stop // batch.n_init]
        keys, counts = batch.fit_keys(key, group, counts)
        if parts:  # this group after the last (ARCHITECTURE.md, "LAPACK calls in one
            # program": two groups' fits at once deadlocked jaxlib 0.10's LAPACK kernels)
            counts = counts + _zero_after(parts[-1], counts.dtype)
        fits = (keys, counts, c, s, labels)
        if batch.sequential:
            out, scores = best_of(one, fits, shared, inputs.n_restarts)
        else:
            out, scores = over_fits(one, fits, shared, batch.n_devices)
        params = jax.vmap(lambda p: options.model.padded(p, k_top))(out.params)
        parts.append((dataclasses.replace(out, params=params), scores))
        start = stop
    return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *parts)


def _zero_after(tree, dtype):
    """0, computed from every leaf of ``tree``: whatever is computed from it waits for
    all of ``tree``. (An optimisation barrier would say so directly, but XLA's CPU
    compiler drops barriers; XLA cannot fold ``t != t`` away for a float ``t``, and
    ``t`` here is never NaN.)"""
    leaves = jax.tree_util.tree_leaves(tree)
    t = sum(jnp.sum(jnp.nan_to_num(jnp.asarray(a, jnp.float32))) for a in leaves)
    return (jnp.nan_to_num(t) != jnp.nan_to_num(t)).astype(dtype)


def best_of(fn, batched, shared, n_restarts):
    """``fn`` of the first ``n_restarts`` entries of ``batched`` (traced count), one
    after another, keeping the best as :func:`~jaxgmm._multistart.best_index` chooses
    it: the highest lower bound among the restarts that did not fail, the first on
    ties, else the first restart. Returned with a leading axis of one."""
    # jitted, so that the shapes' trace is the body's too: a fit is traced once
    at = jax.jit(lambda i, b, s: fn(*jax.tree_util.tree_map(lambda a: a[i], b), *s))
    one = lambda i: at(i, batched, shared)
    shapes = jax.eval_shape(one, jnp.zeros((), jnp.int32))
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    sound = lambda r: (r.status != Status.NON_FINITE) & jnp.isfinite(r.lower_bound)

    def body(i, best):
        new = one(i)
        better = sound(new[0]) & (~sound(best[0]) | (new[0].lower_bound > best[0].lower_bound))
        take = (i == 0) | better
        return jax.tree_util.tree_map(lambda a, b: jnp.where(take, a, b), new, best)

    best = lax.fori_loop(0, n_restarts, body, zeros)
    return jax.tree_util.tree_map(lambda a: a[None], best)


@functools.partial(jax.jit, static_argnums=(0,))
def kmeans_batch(batch: Batch, key, rows: Rows):
    """The 'kmeans' initialization's centres of every fit of ``batch`` (uncentred), so
    that several covariance types can share them."""
    blocks = _blocks(rows, batch)
    parts, k_top = [], max(batch.ks)
    for group in batch.groups():
        k_max = max(group)

        def one(key, n_active, blocks, k_max=k_max):
            return kmeans_centers(key, blocks, k_max, jnp.arange(k_max) < n_active)

        c = over_fits(one, batch.fit_keys(key, group), (blocks,), batch.n_devices)
        parts.append(jnp.pad(c, ((0, 0), (0, k_top - k_max), (0, 0))))
    return jnp.concatenate(parts)


def check_key(key) -> None:
    if not isinstance(key, jax.Array):
        raise TypeError(
            f"key must be a jax.random key, got {type(key).__name__}; "
            "use jax.random.key(seed) to make one from an integer seed"
        )


def run(key, X, sample_weight, options: Options, batch: Batch, inputs: Inputs, host=False):
    """The engine's host side, under every front door: prepare the rows, cast the
    inputs to the data's dtype (float32 data is fitted in float32, anything else in
    float64, with 64-bit types enabled for the call only) and run :func:`fit_batch`.

    Returns ``(results, scores)``; ``scores`` (with ``options.with_scores``) are
    weighted sums in the caller's weights, else None. With ``host`` they are NumPy
    arrays (a shared program's results are on the host already; copying them back
    to the device was a fifth of a small fit's time), else device arrays.
    """
    check_key(key)
    dtype = float_dtype(X)
    with x64_scope(dtype):
        scale = 1.0
        if options.model.scale_free:
            sample_weight, scale = unit_weights(sample_weight)
        plan, batch = batch.resolved(X, sample_weight, options.covariance, dtype)
        inputs = inputs_as(inputs, dtype)
        options = dataclasses.replace(options, report=_progress.active())
        shared = None
        # traced calls gain nothing by sharing: the caller's program is compiled anyway
        if compiles_ahead(plan, key, inputs):
            shared = _shared(options, batch, plan, inputs, X, sample_weight, dtype)
        if shared is None:  # best_only changes nothing here: not part of the program
            plain = dataclasses.replace(batch, best_only=False)
            out, scores = compile_then_upload(fit_batch, (options, plain), key, plan, inputs)
        else:
            shared_plan, shared_options, compiled, shared_inputs = shared
            out, scores = compile_then_upload(
                fit_batch, (shared_options, compiled), key, shared_plan, shared_inputs
            )
            out, scores = _restored((out, scores), batch, compiled, options)
        if host:
            out, scores = jax.device_get((out, scores))
        elif shared is not None:  # jnp.asarray would compile a copy per shape
            out, scores = jax.device_put((out, scores))
        if scores is not None:
            scores = jax.tree_util.tree_map(lambda a: a * scale, scores)
        return out, scores


def _shared(options: Options, batch: Batch, plan: RowPlan, inputs: Inputs, X, weights, dtype):
    """How small data runs in a program that nearby fits share: ``(plan, options,
    batch, inputs)`` to compile and run, or None where that is not allowed.

    The covariance class becomes :class:`SwitchedCovariance` (the four types share a
    program; the type is a traced index) and a batch of one K is rounded up
    (:meth:`Batch.bucketed`). Both need small data (whose run time is negligible
    beside compiling), a model that can share (:attr:`MaximumLikelihood.shares_programs`),
    one device (the results of several stay sharded over them; restoring them on the
    host would gather them), no given starting parameters, and at most
    :data:`ROUNDING_WORK` per pass. Rounding K also needs no shared centres (their
    shape is the batch's). The families of a sweep over mclust's (:attr:`Options.sweep`
    and :attr:`Options.families`) on narrow data share a program on larger data too,
    up to :data:`SWEEP_SHARING_WORK` per pass (see there).
    """
    given = (inputs.params0, *jax.tree_util.tree_leaves(inputs.given))
    narrow = plan.x.shape[1] <= SWEEP_SHARING_FEATURES
    family_sweep = options.sweep and options.families and narrow
    most_work = ROUNDING_WORK if plan.small else SWEEP_SHARING_WORK
    sized = plan.small or family_sweep
    allowed = sized and batch.n_devices == 1 and options.model.shares_programs
    switched = SwitchedCovariance  # scikit-learn's four, or all 14 families
    if options.families or options.covariance not in switched.choices:
        switched = SwitchedFamilies
    if not allowed or options.covariance not in switched.choices:
        return None
    if any(a is not None for a in given):
        return None
    n_rows, n_features = plan.n_rows, plan.x.shape[1]
    rounded = None
    if len(batch.ks) == 1 and inputs.centers is None and inputs.partition is None:
        if batch.best_only and jax.config.jax_threefry_partitionable:
            # restart i keeps key i of any number of slots (see Batch.bucketed)
            slots = max(SEQUENTIAL_SLOTS, 1 << (batch.n_init - 1).bit_length())
            ks = (rounded_components(batch.ks[0]),)
            rounded = dataclasses.replace(batch, ks=ks, n_init=slots, sequential=True)
            inputs = dataclasses.replace(inputs, n_restarts=np.asarray(batch.n_init, np.int32))
        else:
            rounded = batch.bucketed(n_rows, n_features)
    compiled = dataclasses.replace(batch if rounded is None else rounded, best_only=False)
    if compiled.work(n_rows, n_features) > most_work:
        return None
    shared_options = dataclasses.replace(options, covariance=switched)
    shared_plan, compiled = compiled.resolved(X, weights, switched, dtype)
    if not (shared_plan.small or family_sweep):
        return None
    index = np.asarray(switched.choices.index(options.covariance), np.int32)
    inputs = dataclasses.replace(inputs, structure=index)
    if rounded is not None:  # the real K, traced (also where it equals the rounded K)
        inputs = dataclasses.replace(inputs, n_components=np.asarray(batch.ks, np.int32))
    return shared_plan, shared_options, compiled, inputs


def _restored(outputs, batch: Batch, compiled: Batch, options: Options):
    """The results of a shared program (:func:`_shared`) as ``batch`` would have
    given them: cut back to its first ``n_init`` restarts and ``max(batch.ks)``
    components where it was rounded, and with the options' covariance class (on the
    host: slicing and converting here compiles nothing; NumPy arrays)."""
    out, scores = jax.device_get(outputs)
    params = out.params
    if (compiled.ks, compiled.n_init) != (batch.ks, batch.n_init):
        first = lambda a: a[: batch.n_init]  # one K: its first n_init fits (or the best)
        out, scores = jax.tree_util.tree_map(first, (out, scores))
        params = options.model.leading(out.params, max(batch.ks), batch_ndim=1)
    covariance = params.covariance.as_structure(options.covariance)
    return dataclasses.replace(
        out, params=dataclasses.replace(params, covariance=covariance)
    ), scores


def shared_centers(key, X, sample_weight, cov_cls: type[Covariance], batch: Batch):
    """The 'kmeans' initial centres of every fit of :func:`run` with the same
    arguments, uncentred. They do not depend on the covariance type, so a sweep
    computes them once for all its types (``cov_cls`` only sizes the blocks, as
    :func:`run` sizes them for that type)."""
    check_key(key)
    dtype = float_dtype(X)
    with x64_scope(dtype):
        plan, batch = batch.resolved(X, sample_weight, cov_cls, dtype)
        return compile_then_upload(kmeans_batch, (batch,), key, plan)


def inputs_as(inputs: Inputs, dtype) -> Inputs:
    """Every array of ``inputs`` in ``dtype`` (:func:`~jaxgmm._typing.as_dtype`), but
    the partition's indices and labels."""
    # lists and tuples (weights_init=[0.5, 0.5]) are arrays here, not pytrees
    is_array = lambda a: isinstance(a, (list, tuple))
    indices = dict(partition_rows=inputs.partition_rows, partition=inputs.partition)
    floats = dataclasses.replace(inputs, partition_rows=None, partition=None)
    cast = jax.tree_util.tree_map(lambda a: as_dtype(a, dtype), floats, is_leaf=is_array)
    return dataclasses.replace(cast, **indices)


def unit_weights(sample_weight, largest=None):
    """Sample weights scaled by a power of two (exactly) so that the largest is in
    [0.5, 1), and that power. A fit depends on the weights' ratios alone, but its
    guards (``nk + 10 eps``, the collapse floor) assume weights near one: weights of
    1e-300 gave a lower bound of -9.4e6 against -3.5."""
    if sample_weight is None:
        return None, 1.0
    xp = np if isinstance(sample_weight, np.ndarray) else jnp
    # ``largest``: the largest weight of every process (a multi-process fit)
    _, exponent = xp.frexp(xp.max(sample_weight) if largest is None else largest)
    return xp.ldexp(sample_weight, -exponent), xp.ldexp(1.0, exponent)
