"""Refresh quarters: a partition key is the quarter's first day, YYYY-MM-DD."""

import dagster as dg

quarterly_partitions = dg.TimeWindowPartitionsDefinition(
    start="2024-01-01",
    cron_schedule="0 0 1 */3 *",
    fmt="%Y-%m-%d",
)
