"""``jaxgmm sample``: draw rows from a model, in the data's units."""

from __future__ import annotations

from ._common import Usage, add_command, add_table_output, emit_table, free_name, load_model

EXAMPLES = """
jaxgmm sample model.jgmm -n 1000 --seed 3 -o samples.csv
"""


def register(sub) -> None:
    p = add_command(sub, "sample", "draw samples from a model", EXAMPLES, run)
    p.add_argument("model")
    p.add_argument("-n", type=int, default=100, help="number of samples (default 100)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_table_output(p)


def run(args) -> int:
    if args.n < 1:
        raise Usage(f"-n {args.n}: give a positive number of samples")
    model, _, record = load_model(args.model)
    z, labels = model.sample(args.n, random_state=args.seed)
    x = record.standardization.invert(z)
    names = record.column_names(x.shape[1])
    names.append(free_name("component", names))
    emit_table(args, names, [*x.T, labels], computed=names)
    return 0
