"""Refresh quarters: a partition key is the quarter's first day, YYYY-MM-DD."""

import datetime as dt

import dagster as dg

from territory_pipeline.storage.partitions import quarter_date, quarter_end

quarterly_partitions = dg.TimeWindowPartitionsDefinition(
    start="2024-01-01",
    cron_schedule="0 0 1 */3 *",
    fmt="%Y-%m-%d",
)


def latest_quarter_key(now: dt.datetime | None = None) -> str:
    """The latest refresh quarter: the one that just closed, whose alignment is live."""
    with dg.partition_loading_context(effective_dt=now or dt.datetime.now(dt.timezone.utc)):
        return quarterly_partitions.get_last_partition_key()


def event_cutoff(partition_key: str, now: dt.datetime | None = None) -> dt.date | None:
    """Events effective before this day apply to the quarter.

    The latest quarter's alignment stays live until the next refresh, so every
    event received so far applies to it (None: no cutoff).  An earlier quarter,
    when backfilled, sees only the events effective before its end.
    """
    if partition_key >= latest_quarter_key(now):
        return None
    return quarter_end(quarter_date(partition_key))
