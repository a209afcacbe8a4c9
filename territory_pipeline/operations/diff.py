"""What moved between two alignments, per provider and per territory.

``alignment_changes`` has one row per provider whose territory changed, who
is new, or who departed, with the reason.  ``territory_change_summary`` rolls
that up per territory, and ``changes_markdown`` renders it for people.
"""

from __future__ import annotations

import polars as pl

CHANGES_SCHEMA: dict[str, pl.DataType] = {
    "npi": pl.Utf8,
    "change_type": pl.Utf8,  # 'moved' | 'new' | 'departed'
    "from_territory_id": pl.Utf8,
    "to_territory_id": pl.Utf8,
    "from_rep_id": pl.Utf8,
    "to_rep_id": pl.Utf8,
    "opportunity_score": pl.Float64,
    "reason": pl.Utf8,
}


def alignment_changes(
    previous: pl.DataFrame | None,
    current: pl.DataFrame,
    *,
    departed_reps: set[str] = frozenset(),
    locked_npis: set[str] = frozenset(),
) -> pl.DataFrame:
    """Provider-level differences between ``previous`` and ``current``.

    Both frames carry ``npi, territory_id, rep_id, opportunity_score``.  With
    no previous alignment every provider is 'new'.
    """
    cur = current.select("npi", "territory_id", "rep_id", "opportunity_score")
    if previous is None or previous.height == 0:
        prev = pl.DataFrame(schema={"npi": pl.Utf8, "territory_id": pl.Utf8, "rep_id": pl.Utf8, "opportunity_score": pl.Float64})
    else:
        prev = previous.select("npi", "territory_id", "rep_id", "opportunity_score")
    joined = prev.join(cur, on="npi", how="full", suffix="_cur", coalesce=True)
    departed = pl.lit(sorted(departed_reps), dtype=pl.List(pl.Utf8))
    frame = joined.with_columns(
        pl.when(pl.col("territory_id").is_null())
        .then(pl.lit("new"))
        .when(pl.col("territory_id_cur").is_null())
        .then(pl.lit("departed"))
        .when(pl.col("territory_id") != pl.col("territory_id_cur"))
        .then(pl.lit("moved"))
        .otherwise(pl.lit(None))
        .alias("change_type")
    ).filter(pl.col("change_type").is_not_null())
    frame = frame.with_columns(
        pl.when(pl.col("change_type") == "new")
        .then(pl.lit("provider entered the target universe"))
        .when(pl.col("change_type") == "departed")
        .then(pl.lit("provider left the target universe (inactive, moved away or no longer a target)"))
        .when(pl.col("npi").is_in(sorted(locked_npis)))
        .then(pl.lit("account locked to its rep"))
        .when(departed.list.contains(pl.col("rep_id")))
        .then(pl.lit("previous rep left; territory shared out"))
        .otherwise(pl.lit("moved to restore balance"))
        .alias("reason")
    )
    return (
        frame.select(
            "npi",
            "change_type",
            pl.col("territory_id").alias("from_territory_id"),
            pl.col("territory_id_cur").alias("to_territory_id"),
            pl.col("rep_id").alias("from_rep_id"),
            pl.col("rep_id_cur").alias("to_rep_id"),
            pl.coalesce("opportunity_score_cur", "opportunity_score").alias("opportunity_score"),
            "reason",
        )
        .cast(CHANGES_SCHEMA)
        .sort("change_type", "npi")
    )


def territory_change_summary(changes: pl.DataFrame, current_territories: pl.DataFrame) -> pl.DataFrame:
    """Per territory: providers and opportunity gained and lost, new and departed."""
    gained = (
        changes.filter(pl.col("change_type") == "moved")
        .group_by(pl.col("to_territory_id").alias("territory_id"))
        .agg(pl.len().alias("providers_gained"), pl.col("opportunity_score").sum().alias("opportunity_gained"))
    )
    lost = (
        changes.filter(pl.col("change_type") == "moved")
        .group_by(pl.col("from_territory_id").alias("territory_id"))
        .agg(pl.len().alias("providers_lost"), pl.col("opportunity_score").sum().alias("opportunity_lost"))
    )
    new = (
        changes.filter(pl.col("change_type") == "new")
        .group_by(pl.col("to_territory_id").alias("territory_id"))
        .agg(pl.len().alias("new_providers"))
    )
    gone = (
        changes.filter(pl.col("change_type") == "departed")
        .group_by(pl.col("from_territory_id").alias("territory_id"))
        .agg(pl.len().alias("departed_providers"))
    )
    base = current_territories.select("territory_id", "rep_id", "opportunity_score", "provider_count")
    ids = pl.concat(
        [base.select("territory_id")] + [f.select("territory_id") for f in (gained, lost, new, gone)]
    ).unique()
    out = ids.join(base, on="territory_id", how="left")
    for part in (gained, lost, new, gone):
        out = out.join(part, on="territory_id", how="left")
    counts = ["providers_gained", "providers_lost", "new_providers", "departed_providers"]
    return (
        out.with_columns(
            [pl.col(c).fill_null(0).cast(pl.Int64) for c in counts]
            + [pl.col(c).fill_null(0.0) for c in ("opportunity_gained", "opportunity_lost")]
        )
        .with_columns(pl.col("territory_id").is_in(base["territory_id"].implode()).not_().alias("dissolved"))
        .sort("territory_id")
    )


def changes_markdown(summary: pl.DataFrame, changes: pl.DataFrame, *, title: str, max_rows: int = 25) -> str:
    """A markdown report of what moved, for the Dagster UI and the export folder."""
    moved = changes.filter(pl.col("change_type") == "moved")
    lines = [
        f"# {title}",
        "",
        f"- providers moved: {moved.height} ({moved['opportunity_score'].sum():,.1f} opportunity)",
        f"- new providers: {changes.filter(pl.col('change_type') == 'new').height}",
        f"- departed providers: {changes.filter(pl.col('change_type') == 'departed').height}",
        "",
        "| territory | rep | gained | lost | opportunity gained | opportunity lost | new | departed |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary.iter_rows(named=True):
        name = r["territory_id"] + (" (dissolved)" if r["dissolved"] else "")
        lines.append(
            f"| {name} | {r['rep_id'] or '-'} | {r['providers_gained']} | {r['providers_lost']} | "
            f"{r['opportunity_gained']:,.1f} | {r['opportunity_lost']:,.1f} | {r['new_providers']} | {r['departed_providers']} |"
        )
    if moved.height:
        lines += ["", f"## Who moved (first {min(max_rows, moved.height)} of {moved.height})", "",
                  "| NPI | from | to | opportunity | why |", "|---|---|---|---:|---|"]
        for r in moved.sort("opportunity_score", "npi", descending=[True, False]).head(max_rows).iter_rows(named=True):
            score = "-" if r["opportunity_score"] is None else f"{r['opportunity_score']:,.2f}"
            lines.append(
                f"| {r['npi']} | {r['from_territory_id']} | {r['to_territory_id']} | {score} | {r['reason']} |"
            )
    return "\n".join(lines) + "\n"
