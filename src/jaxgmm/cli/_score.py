"""``jaxgmm score``: each row's log-likelihood under a model (in the data's units),
optionally flagging rows below a quantile of the training log-likelihood."""

from __future__ import annotations

import sys

import numpy as np

from ._common import (
    Usage,
    add_command,
    add_read_options,
    add_table_output,
    dropped_note,
    emit_table,
    free_name,
    input_columns,
    load_model,
    model_rows,
    read,
)
from ._datafiles import DataError
from ._record import QUANTILES

EXAMPLES = """
jaxgmm score model.jgmm data.csv -o scores.csv
jaxgmm score model.jgmm new.csv --outliers 0.01
"""


def register(sub) -> None:
    help = "per-row log-likelihood, optionally flagging unusual rows"
    p = add_command(sub, "score", help, EXAMPLES, run)
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument(
        "--outliers",
        type=float,
        metavar="Q",
        help="flag rows below the Q quantile of the training log-likelihood",
    )
    add_read_options(p)
    add_table_output(p)


def run(args) -> int:
    model, _, record = load_model(args.model)
    if args.outliers is not None and not 0 < args.outliers < 1:
        raise Usage(f"--outliers {args.outliers}: give a quantile between 0 and 1, e.g. 0.01")
    table = read(args, args.data)
    x, keep = model_rows(model, record, table, args.dropna)
    dropped_note(args, table, keep)
    scaling = record.standardization
    log_lik = model.score_samples(scaling.apply(x)) - scaling.log_det
    names, columns = input_columns(args, table, keep)
    first = len(names)
    names.append(free_name("log_likelihood", names))
    columns.append(log_lik)
    if args.outliers is not None:
        names.append(free_name("outlier", names))
        columns.append(_outliers(args, record, log_lik).astype(int))
    emit_table(args, names, columns, computed=names[first:])
    return 0


def _outliers(args, record, log_lik) -> np.ndarray:
    q = args.outliers
    if not record.train_log_lik_quantiles:
        raise DataError(
            f"{args.model}: the model holds no training log-likelihoods (it was not "
            "fitted by 'jaxgmm fit'); --outliers needs them"
        )
    threshold = float(np.interp(q, QUANTILES, record.train_log_lik_quantiles))
    flag = log_lik < threshold
    if not args.quiet and not args.json:
        print(
            f"{int(flag.sum())} of {len(flag)} rows below the {q:g} quantile of the "
            f"training log-likelihood ({threshold:.4f})",
            file=sys.stderr,
        )
    return flag
