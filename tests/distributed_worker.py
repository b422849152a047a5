"""One process of a local multi-process run, started by test_distributed.py:
``python distributed_worker.py PORT N_PROCESSES PROCESS_ID DIRECTORY [die]``.

Fits every case of ``DIRECTORY/cases.pkl`` (name -> (data, keyword arguments); data
a path, or a list of each process's rows; ``call="sweep"`` in the arguments runs
:func:`jaxgmm.sweep`, else :func:`jaxgmm.fit_restarts`) and writes the results, with
the number of host collectives each case made, to ``DIRECTORY/out<PROCESS_ID>.pkl``.
With ``die``, process 1 exits in the middle of the first fit's second iteration."""

import os
import pickle
import sys
from pathlib import Path

import jax
import numpy as np

import jaxgmm
from jaxgmm import _stream, distributed


def main(port: str, n: str, index: str, directory: str, mode: str = "fit") -> None:
    distributed.initialize(f"127.0.0.1:{port}", int(n), int(index), heartbeat_timeout_seconds=10)
    directory = Path(directory)
    cases = pickle.loads((directory / "cases.pkl").read_bytes())
    if mode == "die" and distributed.process_index() == 1:
        step, calls = _stream._step, []

        def dying(*args):
            calls.append(1)
            if len(calls) == 2:
                os._exit(3)
            return step(*args)

        _stream._step = dying
    gathers, gather = [], distributed._gather
    distributed._gather = lambda tree: gathers.append(1) or gather(tree)
    out = {}
    for name, (X, kw) in cases.items():
        w = None
        if isinstance(X, list):  # each process's own rows (and weights)
            X = X[distributed.process_index()]
            X, w = X if isinstance(X, tuple) else (X, None)
        gathers.clear()
        if kw.get("call") == "sweep":
            kw = {k: v for k, v in kw.items() if k != "call"}
            table = jaxgmm.sweep(jax.random.key(0), X, sample_weight=w, **kw).table
            out[name] = dict(table=table, gathers=len(gathers))
            continue
        r = jaxgmm.fit_restarts(jax.random.key(0), X, sample_weight=w, **kw)
        p = r.params
        out[name] = dict(
            gathers=np.asarray(len(gathers)),
            weights=np.asarray(p.weights),
            means=np.asarray(p.means),
            covariances=np.asarray(p.covariance.covariances),
            n_iter=np.asarray(r.n_iter),
            status=np.asarray(r.status),
            lower_bound=np.asarray(r.lower_bound),
        )
    (directory / f"out{index}.pkl").write_bytes(pickle.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:])
