"""The ``jaxgmm`` command: Gaussian mixtures for people who have a file, not a notebook.

    jaxgmm fit data.csv -k auto -o model.jgmm      how many groups, and which
    jaxgmm predict model.jgmm data.csv -o out.csv  which row belongs where
    jaxgmm score model.jgmm data.csv --outliers 0.01
    jaxgmm sample model.jgmm -n 1000 -o samples.csv
    jaxgmm plot model.jgmm data.csv -o fig.png
    jaxgmm info model.jgmm
    jaxgmm demo

Exit codes: 0 success, 2 bad input or usage (a one-line message on stderr), 1 an
internal error. ``JAXGMM_DEBUG=1`` shows tracebacks; ``JAXGMM_PROGRESS=always`` shows
progress even when stderr is not a terminal.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings

from . import _demo, _fit, _info, _plot, _predict, _sample, _score
from ._datafiles import DataError

__all__ = ["main"]

# The commands in the order `jaxgmm --help` lists them; each module declares its own
# options (register) beside the code that runs them (run).
COMMANDS = (_fit, _predict, _score, _sample, _plot, _info, _demo)


def parser() -> argparse.ArgumentParser:
    from .. import __version__

    p = argparse.ArgumentParser(
        prog="jaxgmm",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'jaxgmm COMMAND --help' for a command's options and examples.",
    )
    p.add_argument("--version", action="version", version=f"jaxgmm {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(sub)
    return p


#: The library's parameters as the command's flags, for its messages.
_FLAGS = {
    "n_init": "--n-init",
    "max_iter": "--max-iter",
    "tol": "--tol",
    "n_components": "-k",
    "covariance_type": "--covariance",
    "random_state": "--seed",
    "init parameters": "--seed",
}
_PARAMETER = re.compile(r"\b(" + "|".join(map(re.escape, _FLAGS)) + r")\b")


def in_flags(text: str) -> str:
    """A library message with its parameter names as the command's flags."""
    return _PARAMETER.sub(lambda m: _FLAGS[m.group(1)], text)


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    text = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
    print(f"jaxgmm: warning: {in_flags(text)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = parser().parse_args(argv)
    # Every program the command compiles for long (fitting, scoring) is in jaxgmm's own
    # program cache; JAX's process-wide cache would store them a second time.
    debug = os.environ.get("JAXGMM_DEBUG") == "1"
    previous = warnings.showwarning
    warnings.showwarning = _one_line_warning
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # feature-name notes
            # every fit's convergence warning (by its text: naming its class would
            # import scikit-learn, seconds before a bad path can be reported)
            warnings.filterwarnings("always", message="Best performing initialization")
            return args.run(args)
    except KeyboardInterrupt:
        print("jaxgmm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader (head, say) stopped early: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (DataError, ValueError, FileNotFoundError, ImportError, OSError) as e:
        if debug:
            raise
        msg = " ".join(str(e).split()) or type(e).__name__
        if not isinstance(e, DataError):  # the library's words: its parameters as flags
            msg = in_flags(msg)
        print(f"jaxgmm {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except Exception as e:
        if debug:
            raise
        print(
            f"jaxgmm {args.command}: internal error: {type(e).__name__}: {e} "
            "(run with JAXGMM_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    raise SystemExit(main())
