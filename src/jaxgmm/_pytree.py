"""Frozen dataclasses as pytrees whose structure names their class.

``jax.tree_util.register_dataclass`` is not safe for us: in JAX 0.10.2 the tree
structures of two such classes with the same field names compare *equal* while their
hashes differ, so ``jit``'s cache can hand one class the program compiled for the
other. A tied and a diag covariance with K == D have identically shaped arrays, so a
diag model could be scored by the tied program. Here the class itself is part of the
structure's auxiliary data, and structures of different classes never compare equal.
"""

from __future__ import annotations

import dataclasses

import jax

__all__ = ["pytree_dataclass"]


def pytree_dataclass(cls=None, *, meta_fields: tuple[str, ...] = ()):
    """Make ``cls`` a frozen dataclass and register it as a pytree node.

    Fields named in ``meta_fields`` are static (part of the tree structure, hashed and
    compared by ``jit``); every other field is a child. The class is in the structure
    too, so two classes with the same fields never share a compiled program.
    """

    def wrap(cls):
        cls = dataclasses.dataclass(frozen=True)(cls)
        names = tuple(f.name for f in dataclasses.fields(cls))
        data = tuple(n for n in names if n not in meta_fields)
        keys = tuple(jax.tree_util.GetAttrKey(n) for n in data)

        def flatten_with_keys(obj):
            children = tuple((k, getattr(obj, n)) for k, n in zip(keys, data, strict=True))
            return children, (cls, *(getattr(obj, n) for n in meta_fields))

        def flatten(obj):
            return tuple(getattr(obj, n) for n in data), (
                cls,
                *(getattr(obj, n) for n in meta_fields),
            )

        def unflatten(aux, children):
            # Bypass __init__: JAX rebuilds nodes with placeholder leaves.
            obj = object.__new__(cls)
            for n, v in zip(data, children, strict=True):
                object.__setattr__(obj, n, v)
            for n, v in zip(meta_fields, aux[1:], strict=True):
                object.__setattr__(obj, n, v)
            return obj

        jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
        return cls

    return wrap if cls is None else wrap(cls)
