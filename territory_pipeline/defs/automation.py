"""Jobs, the quarterly schedule and the event sensors."""


import datetime as dt
import json
from pathlib import Path

import dagster as dg

from territory_pipeline.defs.partitions import latest_quarter_key, quarterly_partitions
from territory_pipeline.operations.events import MalformedEventFile, list_event_files, read_event_file
from territory_pipeline.settings import Settings

quarterly_refresh_job = dg.define_asset_job(
    "quarterly_refresh_job",
    selection=dg.AssetSelection.all(),
    description=(
        "Every asset of one refresh quarter: provider universe, geography, scores, territories, diff, exports "
        "and map. Set ops.territory_plan.config.mode to 'full' for the annual realignment or 'micro' to keep "
        "the previous alignment and move the least possible ('auto', the default, realigns in January)."
    ),
)

rep_rebalance_job = dg.define_asset_job(
    "rep_rebalance_job",
    selection=dg.AssetSelection.assets("sales_reps").downstream(),
    description="Re-reads the roster with its rep events and rebalances the quarter with the least disruption.",
)

market_rebalance_job = dg.define_asset_job(
    "market_rebalance_job",
    selection=dg.AssetSelection.assets("provider_scores", "scored_clusters", "scoring_report").downstream(),
    description="Re-scores the quarter with its market events applied and rebalances with the least disruption.",
)


@dg.schedule(
    cron_schedule="0 6 1 1,4,7,10 *",
    job=quarterly_refresh_job,
    execution_timezone="UTC",
    description=(
        "At 06:00 UTC on the first day of each quarter, refreshes the quarter that just closed "
        "(for example the 2026-10-01 tick runs partition 2026-07-01)."
    ),
)
def quarterly_refresh_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    with dg.partition_loading_context(effective_dt=context.scheduled_execution_time):
        key = quarterly_partitions.get_last_partition_key()
    return dg.RunRequest(run_key=f"quarterly-refresh-{key}", partition_key=key, tags={"trigger": "quarterly_refresh"})


def current_quarter_key(now: dt.datetime | None = None) -> str:
    """The partition the sensors rebalance: the latest refresh quarter, whose alignment is live."""
    return latest_quarter_key(now)


def _event_sensor_tick(context: dg.SensorEvaluationContext, kind: str, op_trigger: str, run_prefix: str) -> dg.SensorResult:
    """One run per new event; malformed files are reported once and skipped.

    The cursor is the high-water mark ``(arrived_ns, file name)`` of the files
    already read (arrival: the later of modification and status-change time, so
    a file moved in with an old modification time is still new), so it stays
    small however many events arrive.  New files are read in the order of their
    modification time.  Run keys are per event, so a file seen again never
    launches a second run.  The sensor reads only the events folder, never DuckDB.
    """
    settings = Settings.from_env()
    cursor = json.loads(context.cursor) if context.cursor else {}
    # cursors written before arrival times were kept hold the modification-time mark
    mark = (int(cursor.get("arrived_ns", cursor.get("mtime_ns", 0))), str(cursor.get("name", "")))
    new_files = [f for f in list_event_files(Path(settings.events_dir), kind) if f.arrival_key > mark]
    if not new_files:
        return dg.SensorResult(skip_reason=f"no new {kind} event files in {settings.events_dir}/{kind}")
    partition = current_quarter_key()
    requests: list[dg.RunRequest] = []
    skipped: list[str] = []
    for event_file in new_files:
        try:
            events = read_event_file(event_file)
        except MalformedEventFile as exc:
            context.log.warning(f"skipping malformed event file: {exc}")
            skipped.append(event_file.path.name)
            continue
        for event in events:
            requests.append(
                dg.RunRequest(
                    run_key=f"{run_prefix}-{event.event_id}",
                    partition_key=partition,
                    run_config={"ops": {"territory_plan": {"config": {"trigger": op_trigger, "event_id": event.event_id, "mode": "micro"}}}},
                    tags={"trigger": op_trigger, "event_id": event.event_id, "event_type": event.event_type, "event_file": event_file.path.name},
                )
            )
    last = max(f.arrival_key for f in new_files)
    new_cursor = json.dumps({"arrived_ns": last[0], "name": last[1]})
    if not requests:
        return dg.SensorResult(cursor=new_cursor, skip_reason=f"only malformed event files: {', '.join(skipped)}")
    return dg.SensorResult(run_requests=requests, cursor=new_cursor)


@dg.sensor(
    job=rep_rebalance_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Watches TERRITORY_EVENTS_DIR/reps for rep events (rep_joined, rep_left, territory_change, "
        "capacity_change) as CSV or JSON files; each new event launches one rebalancing run of the latest quarter."
    ),
)
def rep_turnover_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    return _event_sensor_tick(context, "reps", "rep_event", "rep-event")


@dg.sensor(
    job=market_rebalance_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Watches TERRITORY_EVENTS_DIR/market for market events (new_asc, practice_acquisition); each new event "
        "re-scores the affected providers and rebalances the latest quarter."
    ),
)
def market_event_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    return _event_sensor_tick(context, "market", "market_event", "market-event")
