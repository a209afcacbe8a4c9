"""Validation and normalisation of the balancing inputs (clear errors, sorted output)."""

from __future__ import annotations

import numpy as np
import polars as pl

from .geometry import project, proximity_edges

UNIT_COLUMNS = ("unit_id", "weight", "provider_count", "latitude", "longitude")
PROVIDER_COLUMNS = ("npi", "unit_id", "latitude", "longitude", "weight")
REP_COLUMNS = ("rep_id",)


def territory_id(rep_id: str) -> str:
    """Stable territory id of a rep."""
    return f"T-{rep_id}"


def _require(frame: pl.DataFrame, columns: tuple[str, ...], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} is missing required column(s): {', '.join(missing)}")


def _no_nulls(frame: pl.DataFrame, columns: tuple[str, ...], name: str) -> None:
    for c in columns:
        nulls = frame[c].null_count()
        if nulls:
            raise ValueError(f"{name}.{c} has {nulls} null value(s)")


def _unique(frame: pl.DataFrame, column: str, name: str) -> None:
    dup = frame.filter(pl.col(column).is_duplicated())[column].unique().sort()
    if len(dup):
        raise ValueError(
            f"{name}.{column} has duplicate value(s): {dup.head(5).to_list()}"
        )


def _coords(frame: pl.DataFrame, lat: str, lon: str, name: str) -> None:
    bad = frame.filter(
        ~pl.col(lat).is_between(-90, 90)
        | ~pl.col(lon).is_between(-180, 180)
        | pl.col(lat).is_nan()
        | pl.col(lon).is_nan()
    )
    if len(bad):
        raise ValueError(f"{name} has {len(bad)} row(s) with invalid {lat}/{lon}")


def normalize_units(units: pl.DataFrame) -> pl.DataFrame:
    """Check and cast the units frame; sorted by unit_id."""
    _require(units, UNIT_COLUMNS, "units")
    cols = [
        pl.col("unit_id").cast(pl.Utf8),
        pl.col("weight").cast(pl.Float64),
        pl.col("provider_count").cast(pl.Int64),
        pl.col("latitude").cast(pl.Float64),
        pl.col("longitude").cast(pl.Float64),
        (
            pl.col("cbsa_code").cast(pl.Utf8)
            if "cbsa_code" in units.columns
            else pl.lit(None, pl.Utf8)
        ).alias("cbsa_code"),
    ]
    out = units.select(cols)
    _no_nulls(out, UNIT_COLUMNS, "units")
    _unique(out, "unit_id", "units")
    if len(out) == 0:
        raise ValueError("units is empty")
    bad = out.filter((pl.col("weight") < 0) | ~pl.col("weight").is_finite())
    if len(bad):
        raise ValueError(
            f"units.weight must be finite and >= 0; bad unit(s): {bad['unit_id'].head(5).to_list()}"
        )
    if (out["provider_count"] < 0).any():
        raise ValueError("units.provider_count must be >= 0")
    _coords(out, "latitude", "longitude", "units")
    if out["weight"].sum() <= 0:
        raise ValueError("units.weight sums to zero: nothing to balance")
    return out.sort("unit_id")


def normalize_reps(reps: pl.DataFrame) -> pl.DataFrame:
    """Check and cast reps; capacity defaults to 1.0; sorted by rep_id."""
    _require(reps, REP_COLUMNS, "reps")
    out = reps.select(
        pl.col("rep_id").cast(pl.Utf8),
        (
            pl.col("rep_name").cast(pl.Utf8)
            if "rep_name" in reps.columns
            else pl.lit(None, pl.Utf8)
        ).alias("rep_name"),
        *[
            (
                pl.col(c).cast(pl.Float64)
                if c in reps.columns
                else pl.lit(None, pl.Float64)
            ).alias(c)
            for c in ("home_latitude", "home_longitude")
        ],
        (
            pl.col("capacity").cast(pl.Float64)
            if "capacity" in reps.columns
            else pl.lit(1.0)
        )
        .fill_null(1.0)
        .alias("capacity"),
    )
    _no_nulls(out, ("rep_id",), "reps")
    _unique(out, "rep_id", "reps")
    if len(out) == 0:
        raise ValueError("reps is empty: at least one rep is needed")
    if (out["capacity"] <= 0).any() or out["capacity"].is_nan().any():
        raise ValueError("reps.capacity must be > 0")
    half = out.filter(
        pl.col("home_latitude").is_null() != pl.col("home_longitude").is_null()
    )
    if len(half):
        raise ValueError(
            f"reps with only one of home_latitude/home_longitude: {half['rep_id'].to_list()[:5]}"
        )
    homes = out.filter(pl.col("home_latitude").is_not_null())
    _coords(homes, "home_latitude", "home_longitude", "reps")
    return out.sort("rep_id")


def normalize_providers(providers: pl.DataFrame, unit_ids: pl.Series) -> pl.DataFrame:
    """Check providers: unique npi, known unit_id, coordinates; sorted by npi."""
    _require(providers, PROVIDER_COLUMNS, "providers")
    out = providers.select(
        pl.col("npi").cast(pl.Utf8),
        pl.col("unit_id").cast(pl.Utf8),
        pl.col("latitude").cast(pl.Float64),
        pl.col("longitude").cast(pl.Float64),
        pl.col("weight").cast(pl.Float64),
        (
            pl.col("h3_cell").cast(pl.Utf8)
            if "h3_cell" in providers.columns
            else pl.lit(None, pl.Utf8)
        ).alias("h3_cell"),
    )
    _no_nulls(out, PROVIDER_COLUMNS, "providers")
    _unique(out, "npi", "providers")
    unknown = out.filter(~pl.col("unit_id").is_in(unit_ids.implode()))
    if len(unknown):
        raise ValueError(
            f"providers reference {unknown['unit_id'].n_unique()} unknown unit_id(s), e.g. {unknown['unit_id'].head(3).to_list()}"
        )
    if (out["weight"] < 0).any():
        raise ValueError("providers.weight must be >= 0")
    _coords(out, "latitude", "longitude", "providers")
    return out.sort("npi")


def normalize_adjacency(
    adjacency: pl.DataFrame | None, units: pl.DataFrame, max_edge_miles: float
) -> np.ndarray:
    """Undirected edges (i < j) as indices into the sorted units, connected.

    A given adjacency is symmetrised and must only name known units; when it is
    None one is built from unit centroids (Delaunay edges up to
    ``max_edge_miles``).  Either way, components are joined by nearest links.
    """
    from .geometry import connect_components

    ids = units["unit_id"]
    xy = project(units["latitude"].to_numpy(), units["longitude"].to_numpy())
    n = len(units)
    if adjacency is None:
        return proximity_edges(xy, max_edge_miles)
    _require(adjacency, ("unit_id", "neighbor_unit_id"), "adjacency")
    index = pl.DataFrame({"unit_id": ids, "i": np.arange(n)})
    adj = adjacency.select(
        pl.col("unit_id").cast(pl.Utf8), pl.col("neighbor_unit_id").cast(pl.Utf8)
    )
    known = set(ids.to_list())
    bad = [
        u
        for u in set(adj["unit_id"].to_list()) | set(adj["neighbor_unit_id"].to_list())
        if u not in known
    ]
    if bad:
        raise ValueError(f"adjacency names unknown unit_id(s): {sorted(bad)[:5]}")
    e = (
        adj.join(index, on="unit_id")
        .join(
            index.rename({"unit_id": "neighbor_unit_id", "i": "j"}),
            on="neighbor_unit_id",
        )
        .select("i", "j")
        .to_numpy()
    )
    e = (
        np.sort(e.astype(np.int64), axis=1)
        if len(e)
        else np.empty((0, 2), dtype=np.int64)
    )
    e = np.unique(e[e[:, 0] != e[:, 1]], axis=0) if len(e) else e
    full, _ = connect_components(n, e, xy)
    return full


def edges_frame(unit_ids: list[str] | pl.Series, edges: np.ndarray) -> pl.DataFrame:
    """Symmetric adjacency frame (unit_id, neighbor_unit_id) from index edges, sorted."""
    ids = np.asarray(list(unit_ids), dtype=object)
    if len(edges) == 0:
        return pl.DataFrame(schema={"unit_id": pl.Utf8, "neighbor_unit_id": pl.Utf8})
    a, b = ids[edges[:, 0]], ids[edges[:, 1]]
    return pl.DataFrame(
        {
            "unit_id": np.concatenate([a, b]).tolist(),
            "neighbor_unit_id": np.concatenate([b, a]).tolist(),
        },
        schema={"unit_id": pl.Utf8, "neighbor_unit_id": pl.Utf8},
    ).sort("unit_id", "neighbor_unit_id")
