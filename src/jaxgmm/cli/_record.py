"""What ``jaxgmm fit`` keeps beside a model, as typed objects: how the columns were
standardised, and the record of the fit (columns, data file, training log-likelihoods,
the sweep's table). The model file stores them under its ``extra`` key; these classes
are the one place that reads and writes that layout."""

from __future__ import annotations

import dataclasses

import numpy as np

# Quantiles of the training log-likelihood kept for `jaxgmm score --outliers`.
QUANTILES = np.linspace(0, 1, 1001)


@dataclasses.dataclass(frozen=True)
class Standardization:
    """``z = (x - mean) / scale`` per column; the identity when ``mean`` is None (the
    fit ran on the data as given). Everything the command reports is in the data's
    units, so each quantity fitted on ``z`` comes back through this object."""

    mean: np.ndarray | None = None
    scale: np.ndarray | None = None

    @classmethod
    def of(cls, x: np.ndarray) -> Standardization:
        """Unit variance and zero mean for every column of ``x``."""
        return cls.from_moments(x.mean(0), x.std(0))

    @classmethod
    def from_moments(cls, mean, scale) -> Standardization:
        """From the columns' means and standard deviations; a constant column is
        centred and left unscaled (scale 1), as scikit-learn's StandardScaler does."""
        mean, scale = np.asarray(mean, np.float64), np.asarray(scale, np.float64)
        # StandardScaler's rule: a spread within rounding of the mean is none
        constant = scale <= 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1)
        return cls(mean, np.where(constant, 1.0, scale))

    @property
    def active(self) -> bool:
        return self.mean is not None

    def apply(self, x: np.ndarray) -> np.ndarray:
        return x if not self.active else (x - self.mean) / self.scale

    def invert(self, z: np.ndarray) -> np.ndarray:
        return z if not self.active else z * self.scale + self.mean

    @property
    def log_det(self) -> float:
        """log |det| of the map x -> z's inverse: a density on z is one on x less this."""
        return 0.0 if not self.active else float(np.sum(np.log(self.scale)))

    def covariances(self, covs: np.ndarray) -> np.ndarray:
        """Full (K, d, d) covariances fitted on ``z``, in the data's units."""
        if not self.active:
            return covs
        return covs * self.scale[None, :, None] * self.scale[None, None, :]

    def criterion_table(self, table: dict, n_rows: int) -> dict:
        """A sweep's table fitted on ``z``, in the data's units: each row's
        log-likelihood loses n log|det scale| (the Jacobian) and each criterion gains
        twice that. The ranking, and so the choice, is unchanged."""
        shift = n_rows * self.log_det
        table = dict(table)
        table["log_likelihood"] = [v - shift for v in table["log_likelihood"]]
        for name in ("bic", "aic", "icl"):
            table[name] = [v + 2 * shift for v in table[name]]
        return table

    def to_json(self) -> dict | None:
        if not self.active:
            return None
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_json(cls, value: dict | None) -> Standardization:
        if not value:
            return cls()
        return cls(np.asarray(value["mean"], np.float64), np.asarray(value["scale"], np.float64))


@dataclasses.dataclass(frozen=True)
class FitRecord:
    """The fit behind a model file: which columns of which data, how they were scaled,
    the training log-likelihood's quantiles and, for a sweep, the criterion table (in
    the data's units). A model saved from Python has an empty record."""

    columns: list[str] | None = None
    standardization: Standardization = Standardization()
    data: str | None = None
    n_rows: int | None = None
    dropped_rows: int = 0
    train_log_lik_quantiles: list[float] | None = None
    criterion: str | None = None
    table: dict | None = None

    def column_names(self, n_features: int) -> list[str]:
        return list(self.columns or [f"x{j}" for j in range(n_features)])

    def to_json(self) -> dict:
        out = {"standardize": self.standardization.to_json()}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name != "standardization" and value is not None:
                out[f.name] = value
        return out

    @classmethod
    def from_json(cls, extra: dict) -> FitRecord:
        names = {f.name for f in dataclasses.fields(cls)} - {"standardization"}
        known = {k: v for k, v in extra.items() if k in names}
        return cls(standardization=Standardization.from_json(extra.get("standardize")), **known)
