"""Assembling the balancing engine's inputs from the stored stages, and the
alignment bookkeeping around it (mode, locks, history rows, explanations)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

MODES = ("auto", "micro", "full")


class AlignmentInputError(ValueError):
    """The stored stages do not give the engine what it needs."""


@dataclass(frozen=True)
class EngineInputs:
    units: pl.DataFrame
    providers: pl.DataFrame
    adjacency: pl.DataFrame


def engine_inputs(
    scored_clusters: pl.DataFrame,
    clusters: pl.DataFrame,
    adjacency: pl.DataFrame,
    provider_scores: pl.DataFrame,
    geocoded: pl.DataFrame,
) -> EngineInputs:
    """Units are the scored clusters; providers carry their score and location."""
    for name, frame in (("scored_clusters", scored_clusters), ("clusters", clusters), ("provider_scores", provider_scores), ("geocoded_providers", geocoded)):
        if frame.height == 0:
            raise AlignmentInputError(f"{name} has no rows for this quarter: materialize the upstream assets first")
    units = (
        clusters.select(
            pl.col("cluster_id").alias("unit_id"),
            pl.col("centroid_latitude").alias("latitude"),
            pl.col("centroid_longitude").alias("longitude"),
            "cbsa_code",
            "h3_cells",
        )
        .join(
            scored_clusters.select(
                pl.col("cluster_id").alias("unit_id"),
                pl.col("opportunity_score").alias("weight"),
                pl.col("provider_count").cast(pl.Int64),
            ),
            on="unit_id",
            how="inner",
        )
        .sort("unit_id")
    )
    providers = (
        provider_scores.select("npi", pl.col("cluster_id").alias("unit_id"), pl.col("opportunity_score").alias("weight"))
        .join(geocoded.select("npi", "latitude", "longitude", "h3_cell", "cbsa_code"), on="npi", how="inner")
        .sort("npi")
    )
    if providers.height != provider_scores.height:
        raise AlignmentInputError(
            f"{provider_scores.height - providers.height} scored providers have no geocoded location"
        )
    edges = adjacency.select(pl.col("cluster_id").alias("unit_id"), pl.col("neighbor_cluster_id").alias("neighbor_unit_id"))
    return EngineInputs(units, providers, edges.sort("unit_id", "neighbor_unit_id"))


def read_locks(path: str | None, account_moves: pl.DataFrame | None = None) -> pl.DataFrame | None:
    """Locked accounts: TERRITORY_LOCKS_FILE (npi or unit_id, rep_id) plus the
    accounts moved by territory-change events (they stay with the new rep)."""
    frames = []
    if path:
        try:
            locks = pl.read_csv(path, infer_schema=False)
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise AlignmentInputError(f"cannot read the locks file {path}: {exc}") from exc
        locks = locks.rename({c: c.strip().lower() for c in locks.columns})
        if "rep_id" not in locks.columns or not ({"npi", "unit_id"} & set(locks.columns)):
            raise AlignmentInputError(f"locks file {path} needs rep_id and npi (or unit_id) columns")
        if "npi" not in locks.columns:
            raise AlignmentInputError(f"locks file {path}: only account (npi) locks are supported, not unit_id locks")
        locks = locks.select(pl.col("npi").str.strip_chars(), pl.col("rep_id").str.strip_chars())
        blank = locks.with_row_index("line", offset=2).filter(
            pl.col("npi").is_null() | (pl.col("npi") == "") | pl.col("rep_id").is_null() | (pl.col("rep_id") == "")
        )
        if blank.height:
            lines = ", ".join(str(n) for n in blank["line"].to_list())
            raise AlignmentInputError(f"locks file {path}: line(s) {lines} lack an npi or a rep_id")
        frames.append(locks)
    if account_moves is not None and account_moves.height:
        frames.append(account_moves.select("npi", "rep_id"))
    if not frames:
        return None
    merged = pl.concat(frames).unique(subset="npi", keep="last", maintain_order=True).sort("npi")
    return merged


def choose_mode(requested: str, quarter: dt.date, has_previous: bool, annual_month: int) -> str:
    """'full' realignment once a year (or with no previous alignment), else 'micro'."""
    if requested not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {requested!r}")
    if not has_previous:
        return "full"
    if requested != "auto":
        return requested
    return "full" if quarter.month == annual_month else "micro"


def alignment_id(quarter: dt.date, trigger: str, event_id: str = "") -> str:
    return f"{quarter.isoformat()}/{trigger}" + (f"/{event_id}" if event_id else "")


def assignment_reasons(
    assignments: pl.DataFrame,
    previous: pl.DataFrame | None,
    locks: pl.DataFrame | None,
    departed_reps: set[str],
    clusters: pl.DataFrame,
) -> pl.DataFrame:
    """Why each provider landed where it did, as a sentence per row."""
    frame = assignments.join(
        clusters.select("cluster_id", "cbsa_title"), on="cluster_id", how="left"
    )
    if previous is not None and previous.height:
        frame = frame.join(previous.select("npi", pl.col("rep_id").alias("_prev_rep")), on="npi", how="left")
    else:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias("_prev_rep"))
    locked = locks.select("npi", pl.lit(True).alias("_locked")) if locks is not None else None
    if locked is not None:
        frame = frame.join(locked, on="npi", how="left")
    else:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Boolean).alias("_locked"))
    where = pl.format("cluster {} ({})", pl.col("cluster_id"), pl.col("cbsa_title").fill_null("no metro"))
    reason = (
        pl.when(pl.col("_locked").fill_null(False))
        .then(pl.format("account locked to rep {}", pl.col("rep_id")))
        .when(pl.col("_prev_rep").is_null() & pl.lit(previous is None or previous.height == 0))
        .then(pl.format("full alignment: {} grown from the rep's base", where))
        .when(pl.col("_prev_rep").is_null())
        .then(pl.format("new provider, placed with its {}", where))
        .when(pl.col("_prev_rep") == pl.col("rep_id"))
        .then(pl.format("kept with the previous rep; {}", where))
        .when(pl.col("_prev_rep").is_in(sorted(departed_reps)))
        .then(pl.format("previous rep {} left; {} shared out to a neighbour", pl.col("_prev_rep"), where))
        .otherwise(pl.format("moved from rep {} to restore balance; {}", pl.col("_prev_rep"), where))
    )
    return frame.with_columns(reason.alias("assignment_reason")).drop("cbsa_title", "_prev_rep", "_locked")
