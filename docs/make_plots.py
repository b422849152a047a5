"""The README's pictures: ``jaxgmm plot``'s five kinds on iris and wine (scikit-learn's
copies), written to docs/img/ by the installed command.

    .venv/bin/python docs/make_plots.py

Each PNG is drawn at 70 dpi and stored with a palette of 256 colours (Pillow, which
matplotlib needs anyway), so that each stays under about 80 KB in the repository.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
from pathlib import Path

IMG = Path(__file__).resolve().parent / "img"
JAXGMM = Path(sys.executable).parent / "jaxgmm"


def jaxgmm(*args) -> None:
    subprocess.run([str(JAXGMM), *map(str, args)], check=True)


def write_csv(path: Path, load) -> None:
    """A scikit-learn data set as CSV, its columns named without units or spaces."""
    bunch = load()
    names = [
        n.replace(" (cm)", "").replace(" ", "_").replace("/", "_") for n in bunch.feature_names
    ]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([names, *bunch.data.tolist()])


def shrink(png: Path) -> None:
    """The PNG with a palette of 256 colours: a third of the size, the same to the eye."""
    from PIL import Image

    with Image.open(png) as image:
        small = image.convert("RGB").quantize(256, dither=Image.Dither.NONE)
    small.save(png, optimize=True)


def main() -> None:
    from sklearn.datasets import load_iris, load_wine

    IMG.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        iris, wine = d / "iris.csv", d / "wine.csv"
        write_csv(iris, load_iris)
        write_csv(wine, load_wine)
        fits = [
            (iris, "iris.jgmm", ["-k", "1:6"]),  # mclust's 14 families, BIC chooses
            (wine, "wine.jgmm", ["-k", "1:6", "--standardize"]),
            (iris, "petal.jgmm", ["-k", "1:4", "--columns", "petal_length"]),
        ]
        for data, model, options in fits:
            jaxgmm("fit", data, *options, "--n-init", "3", "-q", "-o", d / model)
        plots = [
            ("bic", d / "iris.jgmm", [], []),
            ("classification", d / "wine.jgmm", [wine], ["--pca"]),
            ("uncertainty", d / "wine.jgmm", [wine], ["--pca"]),
            ("density", d / "petal.jgmm", [iris], []),
            ("pairs", d / "iris.jgmm", [iris], []),
        ]
        for kind, model, data, options in plots:
            out = IMG / f"plot-{kind}.png"
            jaxgmm("plot", model, *data, "--kind", kind, *options, "--dpi", "70", "-q", "-o", out)
            shrink(out)
            print(f"{out}: {out.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
