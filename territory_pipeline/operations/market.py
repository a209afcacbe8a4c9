"""Market events applied to the provider universe before scoring.

* ``new_asc``: an ambulatory surgery center opened at a practice address
  (``address_line_1``, ``zip5``): providers practising there are now in the
  ASC setting.
* ``practice_acquisition``: a system (``acquirer``) bought a practice, given by
  ``npis`` or by its address: its providers become system-employed
  (organization subpart of the acquirer).
"""

from __future__ import annotations

import polars as pl

from territory_pipeline.operations.events import Event, npis_of
from territory_pipeline.universe.addresses import address_key, address_key_expr


def apply_market_events(providers: pl.DataFrame, events: list[Event]) -> tuple[pl.DataFrame, list[dict]]:
    """Return the providers with the events applied, and one log entry per event."""
    frame = providers.with_columns(address_key_expr().alias("_address_key"))
    log: list[dict] = []
    for event in events:
        if event.get("npis"):
            match = pl.col("npi").is_in(npis_of(event))
        else:
            match = pl.col("_address_key") == address_key(event.get("address_line_1"), event.get("zip5"))
        hits = frame.filter(match).height
        source = f"market_event:{event.event_id}"
        if event.event_type == "new_asc":
            frame = frame.with_columns(
                pl.when(match).then(pl.lit("asc")).otherwise(pl.col("practice_setting")).alias("practice_setting"),
                pl.when(match).then(pl.lit(source)).otherwise(pl.col("practice_setting_source")).alias("practice_setting_source"),
            )
        elif event.event_type == "practice_acquisition":
            frame = frame.with_columns(
                pl.when(match).then(pl.lit("Y")).otherwise(pl.col("is_organization_subpart")).alias("is_organization_subpart"),
                pl.when(match)
                .then(pl.lit(str(event.get("acquirer"))))
                .otherwise(pl.col("parent_organization_lbn"))
                .alias("parent_organization_lbn"),
            )
        log.append(
            {
                "event_id": event.event_id,
                "event_type": event.event_type,
                "providers_affected": hits,
                "applied": hits > 0,
                "note": "" if hits else "no provider matched",
            }
        )
    return frame.drop("_address_key"), log
