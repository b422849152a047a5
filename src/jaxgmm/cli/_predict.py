"""``jaxgmm predict``: label every row of a data file with its most likely component."""

from __future__ import annotations

import numpy as np

from ._common import (
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

EXAMPLES = """
jaxgmm predict model.jgmm data.csv -o labelled.csv
jaxgmm predict model.jgmm data.csv --proba --json
"""


def register(sub) -> None:
    help = "label every row with its most likely component"
    p = add_command(sub, "predict", help, EXAMPLES, run)
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("--proba", action="store_true", help="also each component's probability")
    add_read_options(p)
    add_table_output(p)


def run(args) -> int:
    model, _, record = load_model(args.model)
    table = read(args, args.data)
    x, keep = model_rows(model, record, table, args.dropna)
    dropped_note(args, table, keep)
    names, columns = input_columns(args, table, keep)
    first = len(names)
    proba = model.predict_proba(record.standardization.apply(x))
    names.append(free_name("component", names))
    columns.append(np.argmax(proba, axis=1))
    if args.proba:
        for k in range(proba.shape[1]):
            names.append(free_name(f"proba_{k}", names))
            columns.append(proba[:, k])
    emit_table(args, names, columns, computed=names[first:])
    return 0
