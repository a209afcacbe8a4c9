"""The rep roster: read from CSV, placed at home bases, updated by rep events."""

from __future__ import annotations

import polars as pl

from territory_pipeline.operations.events import Event, npis_of
from territory_pipeline.schemas import REPS, conform

REQUIRED_COLUMNS = ("rep_id", "rep_name")


class RosterError(ValueError):
    """A roster that cannot be used; the message names the problem."""


def read_roster(path: str) -> pl.DataFrame:
    """Read a roster CSV: ``rep_id,rep_name,home_zip`` and optional
    ``capacity``, ``home_latitude``, ``home_longitude``."""
    try:
        frame = pl.read_csv(path, infer_schema=False)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise RosterError(f"cannot read the rep roster {path}: {exc}") from exc
    frame = frame.rename({c: c.strip().lower() for c in frame.columns})
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise RosterError(f"rep roster {path} lacks column(s) {', '.join(missing)}")
    if "home_zip" not in frame.columns and not {"home_latitude", "home_longitude"} <= set(frame.columns):
        raise RosterError(f"rep roster {path} needs home_zip or home_latitude/home_longitude")
    return frame


def place_roster(roster: pl.DataFrame, zip_centroids: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """Validate the roster and give every rep a home base.

    Coordinates come from the roster when given, otherwise from the home ZIP's
    centroid.  Returns the roster in the ``REPS`` contract and a list of
    problems; a rep with no usable base, bad coordinates, a duplicate rep id or a bad capacity
    is an error, because a territory cannot be drawn for it.
    """
    frame = roster.with_columns(
        [pl.col(c).cast(pl.Utf8).str.strip_chars() for c in roster.columns if roster.schema[c] == pl.Utf8]
    )
    for name in ("home_zip", "home_latitude", "home_longitude", "capacity"):
        if name not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias(name))
    given_lat = pl.col("home_latitude").cast(pl.Utf8).fill_null("") != ""
    given_lon = pl.col("home_longitude").cast(pl.Utf8).fill_null("") != ""
    frame = frame.with_columns(given_lat.alias("_given_lat"), given_lon.alias("_given_lon")).with_columns(
        pl.col("home_zip").cast(pl.Utf8).str.slice(0, 5).str.zfill(5).alias("home_zip"),
        pl.col("home_latitude").cast(pl.Float64, strict=False),
        pl.col("home_longitude").cast(pl.Float64, strict=False),
        pl.col("capacity").cast(pl.Utf8),
    )
    problems: list[str] = []
    dupes = (
        frame.filter(pl.col("rep_id").is_duplicated() & pl.col("rep_id").is_not_null() & (pl.col("rep_id") != ""))["rep_id"]
        .unique()
        .sort()
        .to_list()
    )
    if dupes:
        problems.append(f"duplicate rep_id: {', '.join(dupes)}")
    blank = frame.filter(pl.col("rep_id").is_null() | (pl.col("rep_id") == ""))
    if blank.height:
        problems.append(f"{blank.height} roster row(s) without a rep_id")
    capacity = frame["capacity"].cast(pl.Float64, strict=False)
    bad_capacity = frame.filter(
        pl.col("capacity").is_not_null() & (capacity.is_null() | (capacity <= 0) | (capacity > 2))
    )
    if bad_capacity.height:
        problems.append(
            "capacity must be a number in (0, 2] for: "
            + ", ".join(f"{r or '(no rep_id)'} ({c!r})" for r, c in bad_capacity.select("rep_id", "capacity").iter_rows())
        )
    frame = frame.with_columns(capacity.fill_null(1.0).alias("capacity"))
    bad_coordinates = frame.filter(
        (pl.col("_given_lat") != pl.col("_given_lon"))
        | (pl.col("_given_lat") & (pl.col("home_latitude").is_null() | (pl.col("home_latitude").abs() > 90)))
        | (pl.col("_given_lon") & (pl.col("home_longitude").is_null() | (pl.col("home_longitude").abs() > 180)))
    )
    if bad_coordinates.height:
        problems.append(
            "home_latitude and home_longitude must both be given as numbers within range for: "
            + ", ".join(str(r) for r in bad_coordinates["rep_id"].to_list())
        )
    centroids = zip_centroids.select(
        pl.col("zip5").alias("home_zip"),
        pl.col("latitude").alias("_zip_lat"),
        pl.col("longitude").alias("_zip_lon"),
    )
    frame = frame.join(centroids, on="home_zip", how="left").with_columns(
        pl.coalesce("home_latitude", "_zip_lat").alias("home_latitude"),
        pl.coalesce("home_longitude", "_zip_lon").alias("home_longitude"),
    )
    unplaced = frame.filter(pl.col("home_latitude").is_null() | pl.col("home_longitude").is_null())
    if unplaced.height:
        problems.append(
            "no home base (unknown home_zip and no coordinates) for: "
            + ", ".join(f"{r} ({z})" for r, z in unplaced.select("rep_id", "home_zip").iter_rows())
        )
    out = conform(frame.drop("_zip_lat", "_zip_lon", "_given_lat", "_given_lon"), REPS).select(list(REPS)).sort("rep_id")
    return out, problems


def apply_rep_events(
    roster: pl.DataFrame, events: list[Event], zip_centroids: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame, list[dict]]:
    """Apply rep events in order to a placed roster.

    Returns the new roster, the account moves requested by
    ``territory_change`` events (``npi, rep_id``: locked to that rep from now
    on), and a log entry per event saying what it did or why it did nothing.
    """
    reps = {r["rep_id"]: dict(r) for r in roster.iter_rows(named=True)}
    moves: dict[str, str] = {}
    log: list[dict] = []
    centroid = {z: (la, lo) for z, la, lo in zip_centroids.select("zip5", "latitude", "longitude").iter_rows()}

    def base(event: Event) -> tuple[float | None, float | None, str | None]:
        zip5 = str(event.get("home_zip", "") or "")[:5].zfill(5) if event.get("home_zip") else None
        lat, lon = event.get("home_latitude"), event.get("home_longitude")
        if lat is not None and lon is not None:
            return float(lat), float(lon), zip5
        if zip5 and zip5 in centroid:
            return centroid[zip5][0], centroid[zip5][1], zip5
        return None, None, zip5

    for event in events:
        rep_id = str(event.get("rep_id"))
        entry = {"event_id": event.event_id, "event_type": event.event_type, "rep_id": rep_id, "applied": True, "note": ""}
        if event.event_type == "rep_joined":
            lat, lon, zip5 = base(event)
            if lat is None:
                entry.update(applied=False, note=f"home ZIP {zip5} is unknown")
            elif rep_id in reps:
                entry.update(applied=False, note="rep already on the roster")
            else:
                reps[rep_id] = {
                    "rep_id": rep_id,
                    "rep_name": str(event.get("rep_name")),
                    "home_zip": zip5,
                    "home_latitude": lat,
                    "home_longitude": lon,
                    "capacity": float(event.get("capacity", 1.0)),
                }
        elif rep_id not in reps:
            entry.update(applied=False, note="rep is not on the roster")
        elif event.event_type == "rep_left":
            del reps[rep_id]
            moves = {npi: r for npi, r in moves.items() if r != rep_id}
        elif event.event_type == "capacity_change":
            reps[rep_id]["capacity"] = float(event.get("capacity"))
        elif event.event_type == "territory_change":
            if event.get("home_zip"):
                lat, lon, zip5 = base(event)
                if lat is None:
                    entry.update(applied=False, note=f"home ZIP {zip5} is unknown; no change applied")
                    log.append(entry)
                    continue
                reps[rep_id].update(home_zip=zip5, home_latitude=lat, home_longitude=lon)
            for npi in npis_of(event):
                moves[npi] = rep_id
        log.append(entry)
    new_roster = conform(pl.DataFrame(list(reps.values()), schema=REPS), REPS).sort("rep_id")
    move_frame = pl.DataFrame(
        {"npi": list(moves), "rep_id": list(moves.values())}, schema={"npi": pl.Utf8, "rep_id": pl.Utf8}
    ).sort("npi")
    return new_roster, move_frame, log
