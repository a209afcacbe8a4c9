"""Stage 5, balancing: territories, assignments, plan metrics and their guardrails."""


import datetime as dt
import json

import dagster as dg
import polars as pl

from territory_pipeline.balancing import BalanceSettings, balance
from territory_pipeline.defs.metadata import markdown_table, numeric_metadata, table_metadata
from territory_pipeline.defs.partitions import quarterly_partitions
from territory_pipeline.defs.resources import PipelineSettings, TerritoryDatabase
from territory_pipeline.operations.alignment import (
    ACTION_THRESHOLD,
    alignment_id,
    assignment_details,
    assignment_reasons,
    choose_mode,
    engine_inputs,
    engine_locks,
    guardrails,
    metric_rows,
    widen_until_balanced,
)
from territory_pipeline.storage.partitions import partition_transaction, query, quarter_date, read_partition, table_exists
from territory_pipeline.visuals import (
    imbalance_history_png,
    markdown_image,
    opportunity_chart_png,
    rebalance_chart_png,
    render_static_map_png,
)

KINDS = {"duckdb", "polars"}


class BalancingConfig(dg.Config):
    """How the quarter's alignment is drawn."""

    mode: str = "auto"  # auto | micro | full: auto = full in the annual month or with no previous alignment
    annual_realignment_month: int = 1  # the quarter whose alignment is a full realignment
    tolerance: float = 0.05  # ±5% of target weighted opportunity per territory
    secondary_tolerance: float = 0.15  # provider count and workload
    seed: int = 0
    # rounds of the integer-program compaction of a fresh plan (0: off; see BalanceSettings)
    compaction_rounds: int = 0
    trigger: str = "quarterly_refresh"  # quarterly_refresh | rep_event | market_event | manual
    event_id: str = ""
    # A rep event changes only the territories it touches and those within this many hops of them;
    # every other territory keeps its providers (0: no limit).
    locality_steps: int = 2


CHECKS = [
    dg.AssetCheckSpec(
        "imbalance_within_tolerance",
        asset="territories",
        blocking=True,
        description=(
            "Largest |opportunity − target| / target over territories. Passes at or below the configured "
            "tolerance (default 5%); WARN above it; blocking ERROR at 20% or more, which stops the exports."
        ),
    ),
    dg.AssetCheckSpec(
        "every_provider_assigned_once",
        asset="territory_assignments",
        blocking=True,
        description="Every scored target provider appears exactly once in territory_assignments (ERROR otherwise).",
    ),
    dg.AssetCheckSpec(
        "every_rep_has_territory",
        asset="territories",
        blocking=True,
        description="Every rep on the roster has a territory with at least one provider (ERROR otherwise).",
    ),
    dg.AssetCheckSpec(
        "territories_contiguous",
        asset="territories",
        blocking=True,
        description="Every territory is one connected region on the cluster adjacency graph (ERROR otherwise).",
    ),
    dg.AssetCheckSpec(
        "metros_split_only_beyond_capacity",
        asset="territories",
        description=(
            "A metro is split only when its weight exceeds one territory's capacity ((1 + tolerance) × target). "
            "WARN when a metro under capacity is split."
        ),
    ),
]


def _previous_alignment(conn, current_id: str, quarter: dt.date) -> tuple[str | None, pl.DataFrame | None, pl.DataFrame | None]:
    """The alignment this one starts from: its id, its assignments and its territories.

    A re-run of an alignment (same quarter and trigger) starts from what the
    first run started from, so re-running is idempotent and the history never
    loops; otherwise it is the newest live alignment.
    """
    if not table_exists(conn, "alignment_history"):
        return None, None, None
    recorded = query(conn, "alignment_history", "recorded", [current_id])
    if recorded.height:
        previous_id = recorded["previous_alignment_id"][0]
    else:
        rows = query(conn, "alignment_history", "latest_before", [current_id, quarter])
        previous_id = rows["alignment_id"][0] if rows.height else None
    if previous_id is None:
        return None, None, None
    assignments = query(conn, "alignment_assignment_history", "select_alignment", [previous_id])
    territories = query(conn, "alignment_territory_history", "select_alignment", [previous_id])
    return previous_id, assignments, territories


@dg.multi_asset(
    partitions_def=quarterly_partitions,
    group_name="balancing",
    specs=[
        dg.AssetSpec(
            "territories",
            deps=["scored_clusters", "provider_scores", "cluster_adjacency", "sales_reps"],
            kinds=KINDS,
            description=(
                "One territory per rep: weighted opportunity against its target, provider count, workload, travel "
                "burden, contiguity, metro splits, and the lower bounds the plan is measured against. The "
                "materialization shows the map and the opportunity chart."
            ),
        ),
        dg.AssetSpec(
            "territory_assignments",
            deps=["scored_clusters", "provider_scores", "cluster_adjacency", "sales_reps"],
            kinds=KINDS,
            description="One row per target provider: territory, rep, cluster, balancing unit, score and why it landed there.",
        ),
        dg.AssetSpec(
            "plan_metrics",
            deps=["scored_clusters", "provider_scores", "cluster_adjacency", "sales_reps"],
            kinds=KINDS,
            description=(
                "The plan's measures as rows (imbalance, max/min ratio, CV, granularity bound, best non-geographic "
                "balance, gap, compactness, metro splits, disruption) for the quarter's alignment."
            ),
        ),
    ],
    check_specs=CHECKS,
)
def territory_plan(
    context: dg.AssetExecutionContext,
    config: BalancingConfig,
    database: TerritoryDatabase,
    settings: PipelineSettings,
):
    cfg = settings.to_settings()
    quarter = quarter_date(context.partition_key)
    this_id = alignment_id(quarter, config.trigger, config.event_id)
    with database.connection() as conn:
        scored = read_partition(conn, "scored_clusters", quarter)
        clusters = read_partition(conn, "clusters", quarter)
        adjacency = read_partition(conn, "cluster_adjacency", quarter)
        provider_scores = read_partition(conn, "provider_scores", quarter)
        geocoded = read_partition(conn, "geocoded_providers", quarter)
        reps = read_partition(conn, "sales_reps", quarter)
        event_log = read_partition(conn, "rep_event_log", quarter)
        memberships = read_partition(conn, "provider_clusters", quarter)
        previous_id, previous, previous_territories = _previous_alignment(conn, this_id, quarter)
        history = query(conn, "alignment_history", "history") if table_exists(conn, "alignment_history") else None
    if reps.height == 0:
        raise RuntimeError(f"sales_reps has no rows for {context.partition_key}: materialize it first")
    inputs = engine_inputs(scored, clusters, adjacency, provider_scores, geocoded)
    mode = choose_mode(config.mode, quarter, previous is not None, config.annual_realignment_month)
    previous_for_engine = previous.select("npi", "rep_id") if (mode == "micro" and previous is not None) else None
    departed = set(previous["rep_id"].unique().to_list()) - set(reps["rep_id"].to_list()) if previous is not None else set()
    event_reps = None
    if config.trigger == "rep_event":
        event_reps = set(event_log.filter(pl.col("event_id") == config.event_id)["rep_id"].drop_nulls().to_list())
    # A rep event first changes only the territories within locality_steps hops of the ones it
    # touches; while that leaves the plan beyond the tolerance, the area widens hop by hop.
    def plan_for(steps: int):
        locks = engine_locks(
            locks_file=cfg.locks_file,
            reps=reps,
            providers=inputs.providers,
            previous=previous_for_engine,
            event_reps=event_reps,
            geocoded=geocoded,
            provider_clusters=memberships,
            adjacency=adjacency,
            locality_steps=steps,
            tolerance=config.tolerance,
        )
        plan = balance(
            inputs.units,
            reps.select("rep_id", "rep_name", "home_latitude", "home_longitude", "capacity"),
            adjacency=inputs.adjacency,
            providers=inputs.providers,
            locks=locks.all,
            previous=previous_for_engine,
            settings=BalanceSettings(
                tolerance=config.tolerance,
                secondary_tolerance=config.secondary_tolerance,
                seed=config.seed,
                compaction_rounds=config.compaction_rounds,
            ),
        )
        if locks.movable_territories is not None:
            context.log.info(
                f"rep event {config.event_id}: {len(locks.movable_territories)} territories within {steps} hops "
                f"may change ({', '.join(sorted(locks.movable_territories))}), the others keep their {locks.frozen_providers} "
                f"providers: imbalance {plan.metrics['imbalance']:.2%}, moved {plan.metrics.get('moved_opportunity_share') or 0.0:.2%}"
            )
        return plan, locks

    chosen = widen_until_balanced(plan_for, config.locality_steps, config.tolerance)
    plan, locks = chosen.plan, chosen.locks
    if len(chosen.tried) > 1:
        context.log.info(f"rep event {config.event_id}: kept the plan with locality {chosen.steps or 'off'} ({len(chosen.tried)} widths tried)")
    metrics = dict(plan.metrics)
    if chosen.tried[0][1].movable_territories is not None:
        # a rep event's reach: the hops kept (0: the whole plan) and the imbalance the configured
        # locality left, which is why it widened when the two differ
        metrics["locality_steps"] = chosen.steps
        metrics["locality_configured_imbalance"] = chosen.tried[0][2].metrics["imbalance"]
    seconds = metrics.pop("seconds", None)  # run time: metadata only, so stored rows stay deterministic
    context.log.info(
        f"alignment {this_id} ({mode}): imbalance {metrics['imbalance']:.2%}, bound {metrics['granularity_bound']:.2%}, "
        f"{metrics.get('metro_splits', 0)} metro splits, {metrics.get('disconnected_territories', 0)} disconnected"
    )

    assignments = (
        plan.provider_assignments.join(provider_scores.select("npi", "cluster_id", "opportunity_score"), on="npi", how="left")
        .select("npi", "territory_id", "rep_id", "cluster_id", "unit_id", "opportunity_score")
        .sort("npi")
    )
    assignments = assignment_reasons(assignments, previous if mode == "micro" else None, locks.accounts, departed, clusters)
    territories = plan.territories.sort("territory_id")
    guards = guardrails(metrics, territories, assignments, provider_scores, reps, config.tolerance)
    blocked = guards.blocking_failures
    status = "blocked" if blocked else "live"
    metric_table = metric_rows({**metrics, "alignment_status": status}, this_id, mode)

    created = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    history_row = pl.DataFrame(
        {
            "alignment_id": [this_id],
            "refresh_quarter": [quarter],
            "trigger": [config.trigger],
            "event_id": [config.event_id],
            "run_id": [context.run.run_id],
            "mode": [mode],
            "status": [status],
            "previous_alignment_id": [previous_id],
            "created_at": [created],
            "imbalance": [float(metrics["imbalance"])],
            "granularity_bound": [float(metrics["granularity_bound"])],
            "territory_count": [territories.height],
            "provider_count": [assignments.height],
            "metrics_json": [json.dumps(metrics, sort_keys=True, default=str)],
        },
        schema_overrides={"previous_alignment_id": pl.Utf8},
    )
    history_assignments = assignments.select(
        pl.lit(this_id).alias("alignment_id"), "npi", "territory_id", "rep_id", "unit_id", "opportunity_score"
    )
    history_territories = territories.select(
        pl.lit(this_id).alias("alignment_id"), "territory_id", "rep_id", "opportunity_score", "target_score", "deviation", "provider_count"
    )
    with database.connection() as conn, partition_transaction(conn, quarter) as tx:
        tx.replace("territories", territories)
        tx.replace("territory_assignments", assignments)
        tx.replace("plan_metrics", metric_table)
        tx.write("alignment_history", history_row, [("delete_alignment", [this_id]), ("insert", [])])
        tx.write("alignment_assignment_history", history_assignments, [("delete_alignment", [this_id]), ("insert", [])])
        tx.write("alignment_territory_history", history_territories, [("delete_alignment", [this_id]), ("insert", [])])

    history_points = (history.filter(pl.col("alignment_id") != this_id) if history is not None else history_row.clear())
    history_points = pl.concat([history_points.select("refresh_quarter", "created_at", "imbalance"), history_row.select("refresh_quarter", "created_at", "imbalance")])
    map_frame = assignment_details(assignments, geocoded, reps)
    static_map = render_static_map_png(map_frame, territories, title=f"Territories {context.partition_key} ({mode})")
    chart = opportunity_chart_png(territories, tolerance=config.tolerance)
    trend = imbalance_history_png(history_points.sort("refresh_quarter", "created_at"), tolerance=config.tolerance, action_threshold=ACTION_THRESHOLD)

    charts = {}
    if previous_territories is not None and previous_territories.height:
        before_after = rebalance_chart_png(previous_territories, territories, tolerance=config.tolerance)
        charts["before_and_after"] = dg.MetadataValue.md(markdown_image(before_after, f"before ({previous_id}) and after"))

    plan_meta = numeric_metadata({k: v for k, v in {**metrics, "seconds": seconds}.items() if k != "explanation"})
    yield dg.MaterializeResult(
        asset_key="territories",
        metadata={
            **table_metadata("territories", territories),
            **plan_meta,
            "alignment_id": dg.MetadataValue.text(this_id),
            "mode": dg.MetadataValue.text(mode),
            "alignment_status": dg.MetadataValue.text(
                status if not blocked else f"blocked ({'; '.join(blocked)}): kept for inspection, not exported, not the live alignment"
            ),
            "previous_alignment_id": dg.MetadataValue.text(previous_id or "none"),
            "explanation": dg.MetadataValue.text(str(metrics.get("explanation", ""))),
            "map": dg.MetadataValue.md(markdown_image(static_map, "territory map")),
            "opportunity_vs_target": dg.MetadataValue.md(markdown_image(chart, "opportunity per territory")),
            "imbalance_over_quarters": dg.MetadataValue.md(markdown_image(trend, "imbalance over quarters")),
            **charts,
            "territories": dg.MetadataValue.md(
                markdown_table(
                    territories.select(
                        [c for c in ("territory_id", "rep_name", "opportunity_score", "target_score", "deviation", "provider_count", "workload_hours", "mean_travel_miles", "max_travel_miles", "is_contiguous") if c in territories.columns]
                    ),
                    max_rows=60,
                )
            ),
        },
    )
    yield dg.MaterializeResult(
        asset_key="territory_assignments",
        metadata={
            **table_metadata("territory_assignments", assignments),
            "moved_provider_share": dg.MetadataValue.float(float(metrics.get("moved_provider_share", 0.0))),
        },
    )
    yield dg.MaterializeResult(asset_key="plan_metrics", metadata={**table_metadata("plan_metrics", metric_table), "alignment_id": dg.MetadataValue.text(this_id)})

    # --- guardrails ---------------------------------------------------------
    imbalance = guards.imbalance
    if imbalance >= ACTION_THRESHOLD:
        severity, passed = dg.AssetCheckSeverity.ERROR, False
    elif imbalance > config.tolerance:
        severity, passed = dg.AssetCheckSeverity.WARN, False
    else:
        severity, passed = dg.AssetCheckSeverity.WARN, True
    worst = territories.sort(pl.col("deviation").abs(), descending=True).head(3)
    yield dg.AssetCheckResult(
        check_name="imbalance_within_tolerance",
        asset_key="territories",
        passed=passed,
        severity=severity,
        description=(
            f"imbalance {imbalance:.2%}: tolerance {config.tolerance:.0%}, action threshold {ACTION_THRESHOLD:.0%}; "
            f"granularity bound {float(metrics['granularity_bound']):.2%}, "
            f"neighbourhood bound {float(metrics['neighbourhood_bound']):.2%}"
        ),
        metadata={
            "imbalance": imbalance,
            "tolerance": config.tolerance,
            "action_threshold": ACTION_THRESHOLD,
            "granularity_bound": float(metrics["granularity_bound"]),
            "neighbourhood_bound": float(metrics["neighbourhood_bound"]),
            "worst_territories": dg.MetadataValue.md(markdown_table(worst.select("territory_id", "opportunity_score", "target_score", "deviation"))),
        },
    )
    yield dg.AssetCheckResult(
        check_name="every_provider_assigned_once",
        asset_key="territory_assignments",
        passed=not (guards.duplicated or guards.unassigned or guards.unknown),
        metadata={"providers": provider_scores.height, "duplicated": guards.duplicated, "unassigned": guards.unassigned, "unknown": guards.unknown},
    )
    yield dg.AssetCheckResult(
        check_name="every_rep_has_territory",
        asset_key="territories",
        passed=not guards.idle_reps,
        metadata={"reps": reps.height, "reps_without_territory": dg.MetadataValue.text(", ".join(guards.idle_reps) or "none")},
    )
    yield dg.AssetCheckResult(
        check_name="territories_contiguous",
        asset_key="territories",
        passed=not guards.disconnected,
        metadata={"disconnected_territories": dg.MetadataValue.text(", ".join(guards.disconnected) or "none")},
    )
    yield dg.AssetCheckResult(
        check_name="metros_split_only_beyond_capacity",
        asset_key="territories",
        passed=guards.metros_split_beyond_bound == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"metro_splits": int(metrics.get("metro_splits", 0)), "splits_of_metros_under_capacity": guards.metros_split_beyond_bound},
    )
