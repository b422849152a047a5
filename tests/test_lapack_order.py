"""Every program jaxgmm compiles runs its LAPACK calls one after another.

jaxlib 0.10's CPU LAPACK kernels (eigh, cholesky, svd, LU, triangular solves) split a
batch into tasks on XLA's intra-op thread pool and block the pool thread that runs the
kernel until the tasks finish. XLA runs independent operations of a program at once,
so two such kernels that do not depend on each other can hold both threads of a
2-core machine, each waiting for tasks that no thread is left to run: the program
never finishes (it happened to EVE and VVE's M-step, whose two eigendecompositions
were independent). This test compiles every kind of program the library makes (small
and large data, every covariance family, scoring and sampling, streamed passes, the
variational mixture), has XLA write each one as it runs it, and checks that within
every computation each two operations that call LAPACK (directly, or inside a loop,
branch or call) are ordered by a data dependency."""

import re
import subprocess
import sys

_WORKLOAD = """
import jax, numpy as np
import jaxgmm
from jaxgmm import data
jax.config.update("jax_enable_x64", True)
rng = np.random.default_rng(0)
small, large = rng.normal(size=(60, 3)), rng.normal(size=(4200, 3))
key = jax.random.key(0)
jaxgmm.sweep(key, small, range(1, 3), n_init=2)  # one program for the 14 families
# past the small-data size: each structure's program (a family's differs in its
# M-step alone, which the sweep's program holds for all 14)
for cov in ("full", "tied", "diag", "spherical", "VVE"):
    gm = jaxgmm.GaussianMixture(2, covariance_type=cov, n_init=2, max_iter=3,
                                random_state=0).fit(large)
    gm.score_samples(large[:10]), gm.predict_proba(large[:10]), gm.sample(3)
# given precisions: their Cholesky factors and covariances
for cov, prec in (("full", np.stack([np.eye(3)] * 2)), ("tied", np.eye(3))):
    jaxgmm.GaussianMixture(2, covariance_type=cov, precisions_init=prec, max_iter=3,
                           random_state=0).fit(large)
# a sweep of large data fits its K in two groups, each its own EM loop: one type's
# program, and the program the types of a sweep share
jaxgmm.sweep(key, large, range(1, 5), ["EEV"], n_init=1, max_iter=3)
jaxgmm.sweep(key, large, range(1, 5), ["full", "EEV"], n_init=1, max_iter=3)
for cov in ("full", "VVE"):  # the streamed passes
    jaxgmm.fit(key, data.ArraySource(large), 2, covariance_type=cov, max_iter=3)
jaxgmm.BayesianGaussianMixture(n_components=2, max_iter=3, random_state=0).fit(small)
"""

_COMPUTATION = re.compile(r"^(?:ENTRY )?%([\w.\-]+) \(.*\{$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (.*)$")
_NAME = re.compile(r"%([\w.\-]+)")


def _lapack(line: str) -> bool:
    return 'custom_call_target="lapack_' in line


def _computations(hlo: str) -> dict[str, list[tuple[str, str]]]:
    """name -> [(instruction, the text after its '=')] of an HLO module's text."""
    computations, current = {}, None
    for line in hlo.splitlines():
        if m := _COMPUTATION.match(line):
            current = computations.setdefault(m.group(1), [])
        elif line.startswith("}"):
            current = None
        elif current is not None and (m := _INSTRUCTION.match(line)):
            current.append((m.group(1), m.group(2)))
    return computations


def unordered_lapack_calls(hlo: str) -> list[tuple[str, str, str]]:
    """(computation, a, b) for each two operations of a computation that both call
    LAPACK (themselves or in a computation they call) with neither depending on the
    other."""
    computations = _computations(hlo)
    calls_lapack: dict[str, bool] = {}

    def in_computation(name: str) -> bool:
        if name not in calls_lapack:
            calls_lapack[name] = False  # a computation never calls itself
            calls_lapack[name] = any(in_instruction(text) for _, text in computations[name])
        return calls_lapack[name]

    def in_instruction(text: str) -> bool:
        called = (n for n in _NAME.findall(text) if n in computations)
        return _lapack(text) or any(in_computation(n) for n in called)

    found = []
    for computation, instructions in computations.items():
        names = {name for name, _ in instructions}
        operands = {
            name: {n for n in _NAME.findall(text) if n in names and n != name}
            for name, text in instructions
        }
        hot = [name for name, text in instructions if in_instruction(text)]
        upstream = {name: _upstream(name, operands) for name in hot}
        for i, a in enumerate(hot):
            for b in hot[i + 1 :]:
                if a not in upstream[b] and b not in upstream[a]:
                    found.append((computation, a, b))
    return found


def _upstream(name: str, operands: dict[str, set[str]]) -> set[str]:
    """Every instruction ``name`` depends on."""
    seen, todo = set(), list(operands[name])
    while todo:
        if (n := todo.pop()) not in seen:
            seen.add(n)
            todo.extend(operands[n])
    return seen


def test_the_check_finds_two_independent_lapack_calls():
    import jax
    import jax.numpy as jnp

    def independent(a):
        return jnp.linalg.eigvalsh(a)[..., -1], jnp.linalg.eigh(a.sum(0))[1]

    def chained(a):
        values, vectors = jnp.linalg.eigh(jnp.concatenate([a, a.sum(0)[None]]))
        return values[:-1, -1], vectors[-1]

    a = jax.ShapeDtypeStruct((3, 4, 4), jnp.float32)
    assert len(unordered_lapack_calls(jax.jit(independent).lower(a).compile().as_text())) == 1
    assert unordered_lapack_calls(jax.jit(chained).lower(a).compile().as_text()) == []


def test_every_program_calls_lapack_in_sequence(tmp_path):
    dump = tmp_path / "xla"
    env = {
        "JAX_PLATFORMS": "cpu",
        "JAXGMM_CACHE_DIR": "off",  # compile everything in this process
        "XLA_FLAGS": f"--xla_dump_to={dump} --xla_dump_hlo_as_text "
        "--xla_dump_hlo_pass_re=^$",  # the modules as run, no pass-by-pass dumps
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.run(
        [sys.executable, "-c", _WORKLOAD], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    modules = sorted(dump.glob("*after_optimizations.txt"))
    texts = {m.name: m.read_text() for m in modules}
    assert sum(_lapack(t) for t in texts.values()) >= 10, sorted(texts)  # it saw programs
    unordered = {name: found for name, t in texts.items() if (found := unordered_lapack_calls(t))}
    assert unordered == {}
