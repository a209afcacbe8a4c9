"""Assembling the balancing engine's inputs from the stored stages, and the
alignment bookkeeping around it (mode, locks, history rows, explanations)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
        if not {"npi", "rep_id"} <= set(locks.columns):
            raise AlignmentInputError(f"locks file {path} needs npi and rep_id columns")
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


def territory_graph(assignments: pl.DataFrame, provider_clusters: pl.DataFrame, adjacency: pl.DataFrame) -> dict[str, set[str]]:
    """Which reps' territories touch, from an alignment's providers and the cluster graph."""
    owner = assignments.select("npi", "rep_id").join(provider_clusters.select("npi", "cluster_id"), on="npi").select("cluster_id", "rep_id").unique()
    pairs = (
        adjacency.select("cluster_id", "neighbor_cluster_id")
        .join(owner, on="cluster_id")
        .join(owner.rename({"cluster_id": "neighbor_cluster_id", "rep_id": "neighbor_rep_id"}), on="neighbor_cluster_id")
        .filter(pl.col("rep_id") != pl.col("neighbor_rep_id"))
        .select("rep_id", "neighbor_rep_id")
        .unique()
    )
    graph: dict[str, set[str]] = {rep: set() for rep in assignments["rep_id"].unique().to_list()}
    for a, b in pairs.rows():
        graph[a].add(b)
        graph[b].add(a)
    return graph


def neighbourhood(graph: dict[str, set[str]], seeds: set[str], steps: int) -> set[str]:
    """The seed territories and every territory within ``steps`` hops of them."""
    reached, frontier = set(seeds), set(seeds)
    for _ in range(steps):
        frontier = {n for rep in frontier for n in graph.get(rep, ())} - reached
        reached |= frontier
    return reached


def changed_territories(
    previous: pl.DataFrame,
    reps: pl.DataFrame,
    event_reps: set[str],
    providers: pl.DataFrame,
) -> set[str]:
    """The previous territories a rep event touches.

    A departed rep's territory; for a new rep, the territory holding the
    provider nearest its home; for any other event, the rep's own territory.
    """
    before = set(previous["rep_id"].unique().to_list())
    seeds = set(event_reps & before)
    new = reps.filter(pl.col("rep_id").is_in(sorted(event_reps - before)))
    located = previous.join(providers.select("npi", "latitude", "longitude"), on="npi")
    for lat, lon in new.select("home_latitude", "home_longitude").rows():
        nearest = located.with_columns(
            ((pl.col("latitude") - lat) ** 2 + ((pl.col("longitude") - lon) * 0.8) ** 2).alias("_d")
        ).sort("_d", "npi")
        if nearest.height:
            seeds.add(nearest["rep_id"][0])
    return seeds


def locality_locks(previous: pl.DataFrame, reps: pl.DataFrame, allowed: set[str], provider_clusters: pl.DataFrame) -> pl.DataFrame:
    """Locks keeping the providers of territories outside ``allowed`` with their rep.

    Only clusters held whole by one such rep are locked: a cluster split
    between reps (a heavy metro) is re-divided by the engine as one piece.
    """
    staying = set(reps["rep_id"].to_list())
    owners = previous.select("npi", "rep_id").join(provider_clusters.select("npi", "cluster_id"), on="npi")
    whole = owners.group_by("cluster_id").agg(pl.col("rep_id").n_unique().alias("_reps")).filter(pl.col("_reps") == 1)
    return (
        owners.join(whole.select("cluster_id"), on="cluster_id")
        .filter(~pl.col("rep_id").is_in(sorted(allowed)) & pl.col("rep_id").is_in(sorted(staying)))
        .select("npi", "rep_id")
        .sort("npi")
    )


def assignment_details(assignments: pl.DataFrame, geocoded: pl.DataFrame, reps: pl.DataFrame) -> pl.DataFrame:
    """Each assignment with its provider (name, specialty, practice address, location) and rep name."""
    provider_columns = [c for c in geocoded.columns if c not in assignments.columns or c == "npi"]
    return assignments.join(geocoded.select(provider_columns), on="npi", how="left").join(
        reps.select("rep_id", "rep_name"), on="rep_id", how="left"
    )


@dataclass(frozen=True)
class EngineLocks:
    """What the engine must keep: account locks, plus the territories a rep event may not touch."""

    accounts: pl.DataFrame | None  # npi, rep_id: the roster's and the locks file's account locks
    all: pl.DataFrame | None  # accounts plus the frozen far territories
    movable_territories: set[str] | None  # reps whose territories may change (None: all)
    frozen_providers: int = 0


def engine_locks(
    *,
    locks_file: str | None,
    reps: pl.DataFrame,
    providers: pl.DataFrame,
    previous: pl.DataFrame | None,
    event_reps: set[str] | None,
    geocoded: pl.DataFrame,
    provider_clusters: pl.DataFrame,
    adjacency: pl.DataFrame,
    locality_steps: int,
    tolerance: float = 0.05,
) -> EngineLocks:
    """Account locks (locks file and territory-change events) and, for a rep event with a
    previous alignment, locks freezing every territory more than ``locality_steps`` hops from
    the territories the event touches.

    A far territory whose previous providers now lie outside ``tolerance`` of its new target
    (every target moves when a rep joins or leaves) must change anyway, so it stays movable
    too: it can trade with any movable neighbour; a territory still within tolerance of its
    new target is never touched."""
    account_moves = None
    if "locked_npis" in reps.columns:
        account_moves = (
            reps.select("rep_id", pl.col("locked_npis").str.split("|").alias("npi"))
            .explode("npi")
            .filter(pl.col("npi").is_not_null() & (pl.col("npi") != ""))
        )
    accounts = read_locks(locks_file, account_moves)
    if accounts is not None:
        accounts = accounts.filter(pl.col("rep_id").is_in(reps["rep_id"].implode()) & pl.col("npi").is_in(providers["npi"].implode()))
    if previous is None or event_reps is None or locality_steps <= 0:
        return EngineLocks(accounts, accounts, None)
    seeds = changed_territories(previous, reps, event_reps, geocoded)
    graph = territory_graph(previous, provider_clusters, adjacency)
    movable = neighbourhood(graph, seeds, locality_steps) | out_of_tolerance(previous, providers, reps, tolerance)
    frozen = locality_locks(previous, reps, movable, provider_clusters).filter(pl.col("npi").is_in(providers["npi"].implode()))
    merged = frozen if accounts is None else pl.concat([frozen, accounts]).unique("npi", keep="last", maintain_order=True).sort("npi")
    return EngineLocks(accounts, merged, movable, frozen.height)


def locality_widths(locality_steps: int) -> list[int]:
    """The hops a rep event's rebalance may reach, in the order tried: the configured
    locality, two more hops one at a time, then the whole plan (0)."""
    return [locality_steps + extra for extra in range(3)] + [0] if locality_steps > 0 else [0]


@dataclass(frozen=True)
class LocalRebalance:
    """The plan a rep event's rebalance keeps, and every width tried."""

    plan: Any  # balancing.Plan
    locks: EngineLocks
    steps: int
    tried: list[tuple[int, EngineLocks, Any]]  # (hops, locks, plan) in the order tried


def widen_until_balanced(
    plan_for: Callable[[int], tuple[Any, EngineLocks]], locality_steps: int, tolerance: float
) -> LocalRebalance:
    """Rebalance within ``locality_steps`` hops of a rep event, widening while beyond the tolerance.

    ``plan_for(hops)`` returns (plan, locks) with every territory farther than
    ``hops`` from the change frozen (0: none).  The widths of :func:`locality_widths`
    are tried in order; the first plan within ``tolerance`` is kept, else the one
    closest to it (in steps of 0.5%), then the one moving the least opportunity.
    Territories far from the change keep their providers unless that leaves the plan
    out of balance.  Without a locality rule (``locks.movable_territories`` None) the
    first plan is the only one.
    """
    tried: list[tuple[int, EngineLocks, Any]] = []

    def key(plan) -> tuple[int, float]:
        excess = max(0.0, plan.metrics["imbalance"] - tolerance)
        return math.ceil(excess / 0.005 - 1e-9), plan.metrics.get("moved_opportunity_share") or 0.0

    for steps in locality_widths(locality_steps):
        plan, locks = plan_for(steps)
        tried.append((steps, locks, plan))
        if locks.movable_territories is None or key(plan)[0] == 0:
            break
    best = min(range(len(tried)), key=lambda i: (key(tried[i][2]), i))
    steps, locks, plan = tried[best]
    return LocalRebalance(plan, locks, steps, tried)


def out_of_tolerance(previous: pl.DataFrame, providers: pl.DataFrame, reps: pl.DataFrame, tolerance: float) -> set[str]:
    """Reps whose previous providers, at today's weights, miss their new target by more than ``tolerance``."""
    capacity = reps.select("rep_id", pl.col("capacity").fill_null(1.0))
    total = float(providers["weight"].sum())
    targets = capacity.with_columns((pl.col("capacity") / pl.col("capacity").sum() * total).alias("target"))
    held = previous.join(providers.select("npi", "weight"), on="npi").group_by("rep_id").agg(pl.col("weight").sum())
    frame = targets.join(held, on="rep_id", how="left").with_columns(pl.col("weight").fill_null(0.0))
    off = frame.filter((pl.col("weight") - pl.col("target")).abs() > tolerance * pl.col("target"))
    return set(off["rep_id"].to_list())


def metric_rows(metrics: dict, alignment: str, mode: str) -> pl.DataFrame:
    """The plan's measures as rows: numeric ones in ``value``, the rest (explanation) in ``text``."""
    def number(v):
        if isinstance(v, bool):
            return float(v)
        return float(v) if isinstance(v, (int, float)) else None

    return (
        pl.DataFrame(
            {
                "metric": list(metrics),
                "value": [number(v) for v in metrics.values()],
                "text": [None if isinstance(v, (int, float)) else str(v) for v in metrics.values()],
            },
            schema={"metric": pl.Utf8, "value": pl.Float64, "text": pl.Utf8},
        )
        .with_columns(pl.lit(alignment).alias("alignment_id"), pl.lit(mode).alias("mode"))
        .sort("metric")
    )


ACTION_THRESHOLD = 0.20  # an imbalance at or above this calls for action: a blocking error


@dataclass(frozen=True)
class Guardrails:
    """The plan's guardrail measures, computed once for both the checks and the alignment status."""

    imbalance: float
    tolerance: float
    duplicated: int  # providers assigned more than once
    unassigned: int  # scored providers without a territory
    unknown: int  # assigned NPIs that were not scored
    idle_reps: list[str]
    disconnected: list[str]
    metros_split_beyond_bound: int

    @property
    def blocking_failures(self) -> list[str]:
        failures = []
        if self.imbalance >= ACTION_THRESHOLD:
            failures.append(f"imbalance {self.imbalance:.1%} >= {ACTION_THRESHOLD:.0%}")
        if self.duplicated or self.unassigned or self.unknown:
            failures.append("providers not assigned exactly once")
        if self.idle_reps:
            failures.append("a rep without a territory")
        if self.disconnected:
            failures.append("disconnected territories")
        return failures


def guardrails(
    metrics: dict, territories: pl.DataFrame, assignments: pl.DataFrame, provider_scores: pl.DataFrame, reps: pl.DataFrame, tolerance: float
) -> Guardrails:
    scored = provider_scores["npi"]
    assigned = assignments["npi"]
    staffed = set(territories.filter(pl.col("provider_count") > 0)["rep_id"].to_list())
    return Guardrails(
        imbalance=float(metrics["imbalance"]),
        tolerance=tolerance,
        duplicated=int(assignments.group_by("npi").len().filter(pl.col("len") > 1).height),
        unassigned=int(scored.filter(~scored.is_in(assigned.implode())).len()),
        unknown=int(assigned.filter(~assigned.is_in(scored.implode())).len()),
        idle_reps=sorted(set(reps["rep_id"].to_list()) - staffed),
        disconnected=territories.filter(~pl.col("is_contiguous"))["territory_id"].to_list(),
        metros_split_beyond_bound=int(metrics.get("metros_split_beyond_bound", 0)),
    )
