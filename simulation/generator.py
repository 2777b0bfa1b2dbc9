"""A seeded credit-card churn table with a known data-generating process.

Marginals follow the real Kaggle table (see STACK-NOTES: age 26-73, ~93% blue
cards, credit limits 1.4k-34.5k, ~16% churn).  Churn is drawn from a logistic
model of the features, so a model has a real signal to learn and a concept
change is a change of those coefficients.

Each column draws from its own random stream (seeded by the seed and the column
name), and drift is applied to the named columns only, after the base table is
drawn.  So for one seed a drift scenario changes exactly the columns it names
(and the labels, which follow the features), nothing else.

Two kinds of drift: a column's own distribution moves (a shift, new category
shares), or only how the columns go together (a joint shift: values re-paired
between customers, so every column keeps its distribution exactly and only the
combinations change).  Labels always follow the scenario's coefficients, so a
joint shift is a covariate shift like the others.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from core.schema import Schema

# Shares from the real table; None is "Unknown", which the schema maps to null.
EDUCATION_SHARES = {0: 0.147, 1: 0.199, 2: 0.100, 3: 0.309, 4: 0.051, 5: 0.045, None: 0.149}
INCOME_SHARES = {0: 0.352, 1: 0.177, 2: 0.138, 3: 0.152, 4: 0.072, None: 0.109}
MARITAL_SHARES = {"married": 0.463, "single": 0.389, "divorced": 0.074, "unknown": 0.074}
CARD_SHARES = {"blue": 0.932, "silver": 0.055, "gold": 0.011, "platinum": 0.002}
GENDER_SHARES = {"F": 0.529, "M": 0.471}
DEPENDENT_SHARES = {0: 0.089, 1: 0.181, 2: 0.262, 3: 0.270, 4: 0.153, 5: 0.045}
RELATIONSHIP_SHARES = {1: 0.090, 2: 0.123, 3: 0.228, 4: 0.189, 5: 0.187, 6: 0.183}

CREDIT_LIMIT_RANGE = (1438.3, 34516.0)
REVOLVING_MAX = 2517.0
# log(credit limit) = 8.25 + LIMIT_PER_INCOME_BAND * income band + card boost + ...,
# plus normal noise of LOG_LIMIT_NOISE (see _log_limit_mean).
CARD_LIMIT_BOOST = {"blue": 0.0, "silver": 0.9, "gold": 1.2, "platinum": 1.4}
LIMIT_PER_INCOME_BAND = 0.28
LOG_LIMIT_NOISE = 0.55


@dataclass(frozen=True)
class Coefficients:
    """The logistic model of churn (log-odds per unit)."""

    intercept: float = -2.8
    low_revolving_balance: float = 1.9       # balance under 500: the strongest sign
    relationship_count: float = -0.45        # per product above 3.8
    age: float = 0.015               # per year above 46
    dependent_count: float = 0.12            # per dependent above 2.3
    single: float = 0.30
    female: float = 0.20
    log_credit_limit: float = -0.30          # per log-unit above 8.4 (~4.5k)
    tenure: float = -0.010                   # per month above 36


BASELINE = Coefficients()
# A changed relation between features and churn: the revolving-balance sign fades,
# product count stops protecting, and older customers leave more.
CHANGED_CONCEPT = Coefficients(
    intercept=-2.3,
    low_revolving_balance=0.2,
    relationship_count=0.15,
    age=0.06,
)


@dataclass(frozen=True)
class YoungTransactors:
    """A new segment inside the existing ranges: customers aged at most `max_age` (~9%)
    pay their card off every month (zero revolving balance), hold at least
    `min_products` of the bank's products and have the highest credit limit their
    income band, card and gender get -- what a bundled offer for young professionals
    brings in.  In the reference that combination is rare (~0.8% of customers: young,
    zero balance and five products or more, each independent of the others).

    The segment's balances, product counts and limits are swapped with other
    customers' (limits within the same income band, card and gender), so every
    column keeps its values and its distribution, and the limits keep their relation
    to income and card: a least-squares fit of one feature on the others sees the same
    residuals, as none of these pairs was related in the reference.
    """

    max_age: int = 35
    min_products: int = 5

    columns: ClassVar[frozenset[str]] = frozenset(
        {"total_revolving_bal", "total_relationship_count", "credit_limit"})

    def apply(self, frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        out = frame.copy()
        member = out["customer_age"].to_numpy() <= self.max_age
        balance = out["total_revolving_bal"].to_numpy(float)
        _swap_in(out, "total_revolving_bal", member, balance == 0, rng)
        products = out["total_relationship_count"].to_numpy()
        _swap_in(out, "total_relationship_count", member, products >= self.min_products, rng)
        # Within each income band, card and gender, the members take the group's highest
        # limits: a member outside the top swaps with a non-member inside it.
        limits = out["credit_limit"].to_numpy(float).copy()
        groups = out[["income_category", "card_category", "gender"]].astype(str)
        for rows in groups.groupby(list(groups.columns)).indices.values():
            top = np.zeros(len(rows), dtype=bool)
            top[np.argsort(-limits[rows], kind="stable")[:member[rows].sum()]] = True
            takers, donors = rows[member[rows] & ~top], rows[~member[rows] & top]
            limits[takers], limits[donors] = limits[donors], limits[takers].copy()
        out["credit_limit"] = limits
        return out


@dataclass(frozen=True)
class LimitFollowsIncomeWithTenure:
    """A relation that changes shape: credit limits follow income only for customers
    with at least `min_tenure` months on book (about half), twice as steeply as before;
    a newer customer's limit no longer depends on income -- a bank that raises limits
    with income only after some years.  Averaged over everyone, limits rise with
    income exactly as much as before (the same covariance; the noise is narrowed so the
    spread is the same too), so a linear fit of the limit on income and the rest keeps
    its slope and its residuals' spread: only the interaction changed.

    The new limits are mapped back by rank onto the table's own limits of each card
    tier, so the limit column keeps its values and its distribution.
    """

    min_tenure: int = 36

    columns: ClassVar[frozenset[str]] = frozenset({"credit_limit"})

    def apply(self, frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        out = frame.copy()
        limits = out["credit_limit"].to_numpy(float)
        mean = _log_limit_mean(out["income_category"], out["card_category"], out["gender"])
        noise = np.log(limits) - mean
        band = _income_code(out["income_category"])
        centred = band - band.mean()
        established = out["months_on_book"].to_numpy() >= self.min_tenure
        share = established.mean()
        # Slope 1/share for the established, 0 for the others: on average as before.
        slope_change = LIMIT_PER_INCOME_BAND * centred * (established / share - 1)
        explained = LIMIT_PER_INCOME_BAND ** 2 * centred.var() * (1 / share - 1)
        narrowed = np.sqrt(max(0.0, 1 - explained / LOG_LIMIT_NOISE ** 2))
        wanted = mean + slope_change + narrowed * noise
        card = out["card_category"].to_numpy(object)
        for tier in pd.unique(card):
            rows = np.flatnonzero(card == tier)
            order = rows[np.argsort(wanted[rows], kind="stable")]
            out.loc[out.index[order], "credit_limit"] = np.sort(limits[rows])
        return out


def _swap_in(frame: pd.DataFrame, column: str, member: np.ndarray, wanted: np.ndarray,
             rng: np.random.Generator) -> None:
    """Give every member a `wanted` value of `column`, each taken from a random
    non-member that has one, who gets the member's value in exchange."""
    values = frame[column].to_numpy().copy()
    takers = np.flatnonzero(member & ~wanted)
    donors = np.flatnonzero(~member & wanted)
    if len(donors) < len(takers):
        raise ValueError(f"too few customers to swap {column} with: {len(donors)} "
                         f"for {len(takers)}")
    donors = rng.choice(donors, size=len(takers), replace=False)
    values[takers], values[donors] = values[donors], values[takers].copy()
    frame[column] = values


@dataclass(frozen=True)
class Drift:
    """Drift to inject on purpose.

    scale / offset: covariate shift of numeric features (value * scale + offset,
        then clipped to the schema's bounds).
    category_shares: new shares for a categorical feature; a category given 0
        vanishes.
    new_category: (feature, value, fraction): that fraction of rows take a value
        the schema does not know (the predictor rejects or flags those).
    joint: joint shifts (YoungTransactors, LimitFollowsIncomeWithTenure): values
        re-paired between customers, every column's distribution unchanged.
    concept: the coefficients of churn; a different one is a concept change.
    """

    scale: Mapping[str, float] = field(default_factory=dict)
    offset: Mapping[str, float] = field(default_factory=dict)
    category_shares: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    new_category: tuple[str, str, float] | None = None
    joint: tuple[YoungTransactors | LimitFollowsIncomeWithTenure, ...] = ()
    concept: Coefficients = BASELINE

    @property
    def moved_features(self) -> set[str]:
        """Features whose own distribution moves."""
        names = set(self.scale) | set(self.offset) | set(self.category_shares)
        if self.new_category:
            names.add(self.new_category[0])
        return names

    @property
    def regrouped_features(self) -> set[str]:
        """Features whose values are re-paired between customers: the same distribution,
        other combinations with the rest."""
        return set().union(*(shift.columns for shift in self.joint)) - self.moved_features

    @property
    def changed_features(self) -> set[str]:
        """Every feature whose values change, moved or re-paired."""
        return self.moved_features | self.regrouped_features


SCENARIOS: dict[str, Drift] = {
    "none": Drift(),
    "credit_limit_up": Drift(scale={"credit_limit": 1.2}),
    "older_customers": Drift(offset={"customer_age": 5}),
    "economic_shift": Drift(
        scale={"credit_limit": 1.3, "total_revolving_bal": 0.8}, offset={"customer_age": 5}
    ),
    "premium_cards": Drift(
        category_shares={"card_category": {"blue": 0.6, "silver": 0.25, "gold": 0.1,
                                           "platinum": 0.05}}
    ),
    "no_divorced": Drift(
        category_shares={"marital_status": {"married": 0.5, "single": 0.42, "divorced": 0.0,
                                            "unknown": 0.08}}
    ),
    "new_card_category": Drift(new_category=("card_category", "titanium", 0.2)),
    "young_transactors": Drift(joint=(YoungTransactors(),)),
    "limit_income_by_tenure": Drift(joint=(LimitFollowsIncomeWithTenure(),)),
    "concept_change": Drift(concept=CHANGED_CONCEPT),
}


def _rng(seed: int, column: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(column.encode())])


def _choice(rng: np.random.Generator, shares: Mapping, n: int) -> np.ndarray:
    keys = list(shares)
    probs = np.array([shares[k] for k in keys], dtype=float)
    picks = rng.choice(len(keys), size=n, p=probs / probs.sum())
    return np.array(keys, dtype=object)[picks]


def generate_features(n: int, seed: int = 42) -> pd.DataFrame:
    """The base feature table (no drift, no labels)."""
    r = lambda name: _rng(seed, name)  # noqa: E731 - one stream per column
    age = np.clip(np.rint(r("customer_age").normal(46.3, 8.0, n)), 26, 73)
    tenure = np.clip(
        np.rint(36 + 0.8 * (age - 46.3) + r("months_on_book").normal(0, 6.0, n)), 13, 56
    )
    income = _choice(r("income_category"), INCOME_SHARES, n)
    card = _choice(r("card_category"), CARD_SHARES, n)
    gender = _choice(r("gender"), GENDER_SHARES, n)
    log_limit = (_log_limit_mean(income, card, gender)
                 + r("credit_limit").normal(0, LOG_LIMIT_NOISE, n))
    credit_limit = np.round(np.clip(np.exp(log_limit), *CREDIT_LIMIT_RANGE), 2)
    bal_rng = r("total_revolving_bal")
    zero = bal_rng.random(n) < 0.24
    balance = np.where(zero, 0.0, np.round(REVOLVING_MAX * bal_rng.beta(1.6, 1.3, n), 2))
    return pd.DataFrame(
        {
            "customer_age": age.astype(int),
            "gender": gender,
            "dependent_count": _choice(r("dependent_count"), DEPENDENT_SHARES, n).astype(int),
            "education_level": pd.array(
                _choice(r("education_level"), EDUCATION_SHARES, n), dtype="Int64"),
            "marital_status": _choice(r("marital_status"), MARITAL_SHARES, n),
            "income_category": pd.array(income, dtype="Int64"),
            "card_category": card,
            "months_on_book": tenure.astype(int),
            "total_relationship_count": _choice(
                r("total_relationship_count"), RELATIONSHIP_SHARES, n).astype(int),
            "credit_limit": credit_limit,
            "total_revolving_bal": balance,
        }
    )


def _income_code(income: Any) -> np.ndarray:
    """Income codes as numbers, an unknown income (null) taken as the middle band."""
    codes = pd.to_numeric(pd.Series(np.asarray(income, dtype=object)), errors="coerce")
    return codes.fillna(2.0).to_numpy(float)


def _log_limit_mean(income: Any, card: Any, gender: Any) -> np.ndarray:
    """The expected log credit limit: it grows with income and card tier, and men get
    higher limits in the real table (log-normal around it, clipped to the real range)."""
    card_boost = pd.Series(np.asarray(card, dtype=object)).map(CARD_LIMIT_BOOST).to_numpy(float)
    return (8.25 + LIMIT_PER_INCOME_BAND * _income_code(income) + card_boost
            + 0.15 * (np.asarray(gender, dtype=object) == "M"))


def churn_probability(features: pd.DataFrame, coef: Coefficients = BASELINE) -> np.ndarray:
    """The true probability of churn under the data-generating process."""
    logit = (
        coef.intercept
        + coef.low_revolving_balance * (features["total_revolving_bal"].to_numpy() < 500)
        + coef.relationship_count * (features["total_relationship_count"].to_numpy() - 3.8)
        + coef.age * (features["customer_age"].to_numpy() - 46)
        + coef.dependent_count * (features["dependent_count"].to_numpy() - 2.3)
        + coef.single * (features["marital_status"].to_numpy() == "single")
        + coef.female * (features["gender"].to_numpy() == "F")
        + coef.log_credit_limit * (np.log(features["credit_limit"].to_numpy(float)) - 8.4)
        + coef.tenure * (features["months_on_book"].to_numpy() - 36)
    )
    return 1.0 / (1.0 + np.exp(-logit))


def apply_drift(features: pd.DataFrame, drift: Drift, schema: Schema, seed: int) -> pd.DataFrame:
    """Return a copy with the drift applied to the named columns only."""
    out = features.copy()
    n = len(out)
    for name in set(drift.scale) | set(drift.offset):
        feat = schema.feature(name)
        values = (out[name].astype(float) * drift.scale.get(name, 1.0)
                  + drift.offset.get(name, 0.0))
        values = values.clip(lower=feat.min, upper=feat.max)
        out[name] = values.round().astype(int) if feat.kind == "integer" else values.round(2)
    for name, shares in drift.category_shares.items():
        out[name] = _choice(_rng(seed, name + ":drift"), shares, n)
    for shift in drift.joint:
        out = shift.apply(out, _rng(seed, type(shift).__name__ + ":joint"))
    if drift.new_category:
        name, value, fraction = drift.new_category
        hit = _rng(seed, name + ":new").random(n) < fraction
        out[name] = np.where(hit, value, out[name].to_numpy(dtype=object))
    return out


def generate(n: int, seed: int = 42, drift: Drift | None = None,
             schema: Schema | None = None) -> pd.DataFrame:
    """A labelled table of `n` customers: the schema's features plus the target `churn`."""
    schema = schema or Schema.load()
    drift = drift or Drift()
    features = apply_drift(generate_features(n, seed), drift, schema, seed)
    # A row with a category the model has never seen gets the blue-card baseline risk.
    scoring = features.copy()
    for feat in schema.features:
        if feat.is_categorical:
            known = scoring[feat.name].isin(feat.values)
            scoring.loc[~known, feat.name] = feat.values[0]
    prob = churn_probability(scoring, drift.concept)
    features[schema.target] = (_rng(seed, schema.target).random(n) < prob).astype(int)
    return features
