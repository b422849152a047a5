"""``python -m jaxgmm``: the ``jaxgmm`` command."""

from jaxgmm.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
