"""A seeded table of domestic Indian flight fares with a known data-generating process.

The shape of the flight-price table the systems onebox grew from were trained on (six
airlines, six cities, times of day, stops, economy or business, duration, days before
departure -> the fare in INR; the real table's fares run from 1,105 to 123,071, these
from about 1,500 to 190,000 with a longer tail): the columns are drawn
with its shares, and the fare from a log-linear model of them with multiplicative
noise, so a model has a real signal to learn and its best possible error is known
(`log_fare_mean` is the noise-free fare's log; FARE_NOISE its spread).

Each column draws from its own random stream (seeded by the seed and the column name),
as the churn generator's do, so a drift scenario changes exactly the columns it names
(and the fare, which follows them), nothing else:

- `late_booking`: people book closer to departure (days_left from 1-15 instead of 1-49);
- `business_up`: the full-service airlines sell business class to 80% of their
  passengers instead of 45%;
- `new_route`: a fifth of the flights go to a city the model never saw (Goa): the
  schema refuses them (422 naming `destination_city`), so "caught" is the refusal rate
  (PredictionsRefused), never the drift alarm;
- `fuel_surcharge`: every fare 15% dearer, the features unchanged -- a concept change
  only the live error and the intervals' coverage can see, once the real fares come
  back (a fare is known when the ticket is sold: the label delay is the booking's, about
  `days_left` days at most, 49 here).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.schema import Schema

AIRLINE_SHARES = {"Vistara": 0.426, "Air_India": 0.270, "Indigo": 0.144, "GO_FIRST": 0.077,
                  "AirAsia": 0.054, "SpiceJet": 0.029}
# Only the two full-service airlines sell business class (as in the real table).
BUSINESS_AIRLINES = ("Vistara", "Air_India")
BUSINESS_SHARE_ON_THEM = 0.45
CITIES = ("Delhi", "Mumbai", "Bangalore", "Kolkata", "Hyderabad", "Chennai")
CITY_SHARES = {"Delhi": 0.20, "Mumbai": 0.20, "Bangalore": 0.17, "Kolkata": 0.15,
               "Hyderabad": 0.14, "Chennai": 0.14}
# Rough positions (km east, km north of an origin): a route's length is their distance.
CITY_KM = {"Delhi": (0, 1400), "Mumbai": (-350, 300), "Bangalore": (100, -300),
           "Kolkata": (1200, 750), "Hyderabad": (150, 100), "Chennai": (370, -330),
           "Goa": (-250, -50)}  # not in the schema: the new route's city
TIMES_OF_DAY = ("Early_Morning", "Morning", "Afternoon", "Evening", "Night", "Late_Night")
# Where each time of day starts, in hours after midnight (Late_Night wraps past 24).
TIME_OF_DAY_STARTS = {"Late_Night": 0, "Early_Morning": 4, "Morning": 8, "Afternoon": 12,
                      "Evening": 16, "Night": 20}
DEPARTURE_SHARES = {"Early_Morning": 0.22, "Morning": 0.24, "Afternoon": 0.16,
                    "Evening": 0.22, "Night": 0.15, "Late_Night": 0.01}
STOP_SHARES = {0: 0.12, 1: 0.84, 2: 0.04}
DAYS_LEFT_RANGE = (1, 49)

# The fare's model: log(fare) = BASE_LOG_FARE + the effects below + N(0, FARE_NOISE).
BASE_LOG_FARE = 8.05
AIRLINE_EFFECT = {"Vistara": 0.22, "Air_India": 0.15, "Indigo": -0.08, "GO_FIRST": -0.05,
                  "AirAsia": -0.25, "SpiceJet": -0.06}
BUSINESS_EFFECT = 1.95               # about seven times the economy fare
PER_1000_KM = 0.30
STOP_EFFECT = {0: -0.30, 1: 0.0, 2: 0.08}
DEPARTURE_EFFECT = {"Early_Morning": 0.0, "Morning": 0.05, "Afternoon": -0.04,
                    "Evening": 0.06, "Night": 0.02, "Late_Night": -0.18}
LAST_MINUTE_EFFECT = 0.85            # on the day before departure, fading ...
LAST_MINUTE_DAYS = 6.0               # ... by e every this many days
PER_EXTRA_HOUR = 0.012               # each hour of layover above the direct flight's time
FARE_NOISE = 0.15
CRUISE_KMH = 650.0


@dataclass(frozen=True)
class FlightDrift:
    """What a scenario changes (the defaults change nothing)."""

    days_left: tuple[int, int] = DAYS_LEFT_RANGE
    business_share: float = BUSINESS_SHARE_ON_THEM
    new_city: str | None = None
    new_city_share: float = 0.0
    fare_factor: float = 1.0


SCENARIOS: dict[str, FlightDrift] = {
    "none": FlightDrift(),
    "late_booking": FlightDrift(days_left=(1, 15)),
    "business_up": FlightDrift(business_share=0.8),
    "new_route": FlightDrift(new_city="Goa", new_city_share=0.2),
    "fuel_surcharge": FlightDrift(fare_factor=1.15),
}


def _rng(seed: int, column: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(f"flights:{column}".encode())])


def _choice(rng: np.random.Generator, shares: Mapping, n: int) -> np.ndarray:
    keys = list(shares)
    p = np.array([shares[k] for k in keys], dtype=float)
    return np.array(keys, dtype=object)[rng.choice(len(keys), size=n, p=p / p.sum())]


def route_km(source: np.ndarray, destination: np.ndarray) -> np.ndarray:
    xy = {city: np.array(km, dtype=float) for city, km in CITY_KM.items()}
    return np.array([np.hypot(*(xy[s] - xy[d])) for s, d in zip(source, destination,
                                                                 strict=True)])


def time_of_day(hours: np.ndarray) -> np.ndarray:
    """The time-of-day band of a clock time in hours (any number: taken modulo 24)."""
    starts = sorted(TIME_OF_DAY_STARTS.items(), key=lambda item: item[1])
    names = np.array([name for name, _ in starts], dtype=object)
    edges = np.array([start for _, start in starts], dtype=float)
    return names[np.searchsorted(edges, np.mod(hours, 24.0), side="right") - 1]


def generate_features(n: int, seed: int = 42, drift: FlightDrift = FlightDrift()
                      ) -> pd.DataFrame:
    airline = _choice(_rng(seed, "airline"), AIRLINE_SHARES, n)
    source = _choice(_rng(seed, "source_city"), CITY_SHARES, n)
    # The destination: any other city, in the same shares.
    rng = _rng(seed, "destination_city")
    destination = _choice(rng, CITY_SHARES, n)
    same = destination == source
    while same.any():
        destination[same] = _choice(rng, CITY_SHARES, int(same.sum()))
        same = destination == source
    stops = _choice(_rng(seed, "stops"), STOP_SHARES, n).astype(int)
    full_service = np.isin(airline, BUSINESS_AIRLINES)
    business = full_service & (_rng(seed, "travel_class").random(n) < drift.business_share)
    direct_hours = 0.6 + route_km(source, destination) / CRUISE_KMH
    layover = _rng(seed, "duration_hours").gamma(2.0, 3.5, n)  # hours on the ground
    duration = np.round(np.clip(direct_hours + stops * layover, 0.5, 50.0), 2)
    departure = _choice(_rng(seed, "departure_time"), DEPARTURE_SHARES, n)
    start = np.array([TIME_OF_DAY_STARTS[d] for d in departure], dtype=float)
    leaves_at = start + _rng(seed, "departure_hour").random(n) * 4.0
    low, high = drift.days_left
    if drift.new_city is not None:  # the new route: only the destination changes
        moved = _rng(seed, "new_route").random(n) < drift.new_city_share
        destination = np.where(moved, drift.new_city, destination).astype(object)
    return pd.DataFrame({
        "airline": airline,
        "source_city": source,
        "destination_city": destination,
        "departure_time": departure,
        "arrival_time": time_of_day(leaves_at + duration),
        "stops": stops,
        "travel_class": np.where(business, "Business", "Economy").astype(object),
        "duration_hours": duration,
        "days_left": _rng(seed, "days_left").integers(low, high + 1, n),
    })


def log_fare_mean(features: pd.DataFrame) -> np.ndarray:
    """The noise-free fare's log for each row (the model the fares are drawn from)."""
    km = route_km(features["source_city"].to_numpy(), features["destination_city"].to_numpy())
    direct_hours = 0.6 + km / CRUISE_KMH
    extra_hours = np.clip(features["duration_hours"].to_numpy(float) - direct_hours, 0, None)
    days_left = features["days_left"].to_numpy(float)
    return (BASE_LOG_FARE
            + features["airline"].map(AIRLINE_EFFECT).to_numpy(float)
            + np.where(features["travel_class"] == "Business", BUSINESS_EFFECT, 0.0)
            + PER_1000_KM * km / 1000.0
            + features["stops"].map(STOP_EFFECT).to_numpy(float)
            + features["departure_time"].map(DEPARTURE_EFFECT).to_numpy(float)
            + LAST_MINUTE_EFFECT * np.exp(-(np.clip(days_left, 1, None) - 1) / LAST_MINUTE_DAYS)
            + PER_EXTRA_HOUR * extra_hours)


def generate(n: int, seed: int = 42, schema: Schema | None = None,
             drift: FlightDrift = FlightDrift()) -> pd.DataFrame:
    """A table of `n` flights: the schema's features plus the fare (`price`, INR)."""
    features = generate_features(n, seed, drift)
    noise = _rng(seed, "price").normal(0.0, FARE_NOISE, n)
    target = schema.target if schema is not None else "price"
    fare = np.exp(log_fare_mean(features) + noise) * drift.fare_factor
    features[target] = np.round(fare).astype(int)
    return features
