"""``jaxgmm info``: what a model file holds, in the data's units."""

from __future__ import annotations

import json
import textwrap

import numpy as np

from ._common import (
    add_command,
    component_table,
    in_data_units,
    json_default,
    load_model,
    wrap_width,
)

EXAMPLES = """
jaxgmm info model.jgmm
jaxgmm info model.jgmm --json
"""


def register(sub) -> None:
    p = add_command(sub, "info", "describe a model file", EXAMPLES, run)
    p.add_argument("model")
    p.add_argument("--json", action="store_true")


def describe(path, model, meta, record) -> dict:
    return {
        "file": str(path),
        "format_version": meta["format_version"],
        "class": meta["class"],
        "n_components": int(model.n_components),
        "covariance_type": model.covariance_type,
        "n_features": int(model.n_features_in_),
        "columns": record.columns,
        "standardized": record.standardization.active,
        "converged": bool(model.converged_),
        "n_iter": int(model.n_iter_),
        # per row, in the data's units like every log-likelihood the command reports
        "lower_bound": float(model.lower_bound_) - record.standardization.log_det,
        "weights": np.asarray(model.weights_).tolist(),
        "means": in_data_units(model, record)[0].tolist(),
        "data": record.data,
        "n_rows": record.n_rows,
        "params": {k: v for k, v in meta["params"].items() if not isinstance(v, dict)},
        **({"criterion": record.criterion} if record.table else {}),
    }


def run(args) -> int:
    info = describe(args.model, *load_model(args.model))
    if args.json:
        print(json.dumps(info, default=json_default))
        return 0
    title = f"{info['file']}: jaxgmm {info['class']} (format version {info['format_version']})"
    print(textwrap.fill(title, wrap_width(), subsequent_indent="  "))
    model = (
        f"K={info['n_components']}, covariance '{info['covariance_type']}', "
        f"{info['n_features']} features: {', '.join(info['columns'] or [])}"
        + (" (standardised)" if info["standardized"] else "")
    )
    print(textwrap.fill(model, wrap_width(), subsequent_indent="  "))
    print(
        f"fit: converged {info['converged']} after {info['n_iter']} iterations, "
        f"lower bound {info['lower_bound']:.6f}"
        + (f"; data {info['data']} ({info['n_rows']} rows)" if info["data"] else "")
    )
    if info.get("criterion"):
        print(f"chosen by {info['criterion'].upper()} over a sweep")
    print(component_table(info["weights"], np.asarray(info["means"]), info["columns"] or []))
    params = ", ".join(f"{k}={v!r}" for k, v in sorted(info["params"].items()))
    print(textwrap.fill(f"parameters: {params}", wrap_width()))
    return 0
