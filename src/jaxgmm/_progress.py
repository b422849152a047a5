"""Progress reporting for long fits: a reporter set by the caller (the command line)
is told when a program is compiled, when the models of a sweep finish and, from inside
the compiled EM loop, each iteration's count and lower bound.

The library itself prints nothing: without a reporter the compiled programs carry no
host callback at all (whether one is wanted is part of the programs' static key).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Protocol

import numpy as np

__all__ = ["Reporter", "active", "compiling", "iteration", "models_done", "reporting"]


class Reporter(Protocol):
    def compiling(self, what: str) -> None: ...

    def models_done(self, n: int) -> None: ...

    def iteration(self, n_iter: int, lower_bound: float) -> None: ...


_reporter: Reporter | None = None
_lock = threading.Lock()


@contextlib.contextmanager
def reporting(reporter: Reporter | None) -> Iterator[None]:
    """Send progress to ``reporter`` while the block runs (None: nothing)."""
    global _reporter
    previous, _reporter = _reporter, reporter
    try:
        yield
    finally:
        _reporter = previous


def active() -> bool:
    return _reporter is not None


def compiling(what: str) -> None:
    """A program is being compiled (not loaded from the cache): ``what`` names it
    ("full", "scoring", ...). Compiling a fit takes seconds, its run on small data
    milliseconds, so this is most of what a first sweep waits for."""
    if _reporter is not None:
        _reporter.compiling(what)


def models_done(n: int) -> None:
    if _reporter is not None:
        _reporter.models_done(n)


def iteration(n_iter, lower_bound) -> None:
    """Host callback of the EM loop (one call per fit and iteration; batched fits may
    pass arrays)."""
    reporter = _reporter
    if reporter is None:
        return
    n_iter, lower_bound = np.asarray(n_iter), np.asarray(lower_bound, np.float64)
    with _lock:
        reporter.iteration(int(n_iter.max()), float(np.max(lower_bound)))
