"""Column contracts shared by every stage of the pipeline.

Each stage is a plain module (no dagster import) that takes and returns polars
frames.  The frames below are the hand-off points between stages; the DuckDB
tables of the same name add a leading ``refresh_quarter DATE`` column.

A stage may add columns to a frame it returns, but never drops or renames the
ones listed here.  ``conform`` casts a frame to a contract, adding any missing
nullable column as null, so that every provider source (sample, NPPES, API)
yields the same ``providers`` columns.
"""

from __future__ import annotations

import polars as pl

# --- provider universe -----------------------------------------------------

PROVIDERS: dict[str, pl.DataType] = {
    "npi": pl.Utf8,  # 10 digits, always a string
    "entity_type": pl.Utf8,  # 'individual' | 'organization'
    "provider_name": pl.Utf8,  # "LAST, FIRST M" or the organization's legal name
    "last_name": pl.Utf8,
    "first_name": pl.Utf8,
    "middle_name": pl.Utf8,
    "credential": pl.Utf8,
    "organization_name": pl.Utf8,
    "sex": pl.Utf8,
    "taxonomy_code": pl.Utf8,  # primary taxonomy (the 'Y' switch), must be a target code
    "taxonomy_classification": pl.Utf8,
    "taxonomy_specialization": pl.Utf8,
    "taxonomy_display_name": pl.Utf8,
    "all_taxonomy_codes": pl.Utf8,  # every distinct taxonomy code, '|'-separated, slot order
    "taxonomy_group": pl.Utf8,
    "address_line_1": pl.Utf8,  # practice location, never the mailing address
    "address_line_2": pl.Utf8,
    "city": pl.Utf8,
    "state": pl.Utf8,
    "postal_code": pl.Utf8,  # 5 or 9 digits as published
    "zip5": pl.Utf8,
    "country_code": pl.Utf8,
    "phone": pl.Utf8,
    "enumeration_date": pl.Date,
    "last_update_date": pl.Date,
    "is_sole_proprietor": pl.Utf8,
    "is_organization_subpart": pl.Utf8,
    "parent_organization_lbn": pl.Utf8,
    "practice_setting": pl.Utf8,  # 'hospital' | 'asc' | 'office'
    "practice_setting_source": pl.Utf8,  # how the setting was derived
    "org_pac_id": pl.Utf8,  # CMS group (PECOS) id, when the Doctors and Clinicians file is given
    "num_org_mem": pl.Int64,  # clinicians in that group
    "group_name": pl.Utf8,
    "procedure_services": pl.Float64,  # Medicare services for the target HCPCS codes, null when not given
    "procedure_beneficiaries": pl.Float64,
    "source": pl.Utf8,  # 'sample' | 'nppes' | 'api'
}

REJECTS: dict[str, pl.DataType] = {
    "source": pl.Utf8,  # where the row came from ('sample', 'nppes', 'api', 'geocode', 'customers', ...)
    "npi": pl.Utf8,  # may be null or invalid: that is often the reason
    "reason": pl.Utf8,  # short machine-readable code, e.g. 'invalid_npi', 'malformed_zip'
    "detail": pl.Utf8,  # human-readable explanation
    "raw_record": pl.Utf8,  # the offending record (JSON or the CSV line)
}

SECONDARY_LOCATIONS: dict[str, pl.DataType] = {
    "npi": pl.Utf8,
    "location_seq": pl.Int32,
    "address_line_1": pl.Utf8,
    "address_line_2": pl.Utf8,
    "city": pl.Utf8,
    "state": pl.Utf8,
    "postal_code": pl.Utf8,
    "zip5": pl.Utf8,
    "country_code": pl.Utf8,
    "phone": pl.Utf8,
    "source": pl.Utf8,
}

REPS: dict[str, pl.DataType] = {
    "rep_id": pl.Utf8,
    "rep_name": pl.Utf8,
    "home_zip": pl.Utf8,
    "home_latitude": pl.Float64,
    "home_longitude": pl.Float64,
    "capacity": pl.Float64,  # share of a full territory, default 1.0
}

# --- geography --------------------------------------------------------------

GEOGRAPHY_COLUMNS: dict[str, pl.DataType] = {
    "latitude": pl.Float64,
    "longitude": pl.Float64,
    "geocode_method": pl.Utf8,  # 'census' | 'zip_centroid' | 'zcta_centroid'
    "geocode_quality": pl.Utf8,  # 'exact' | 'non_exact' | 'zip5_centroid' | ...
    "geocode_from_cache": pl.Boolean,
    "county_fips": pl.Utf8,  # 5 digits, null when unknown
    "cbsa_code": pl.Utf8,  # official CBSA code, or 'APX-...' for an approximate metro
    "cbsa_title": pl.Utf8,
    "metro_source": pl.Utf8,  # 'official' | 'approximate' | 'none'
    "h3_cell": pl.Utf8,  # hex string at the configured resolution
}

GEOCODED_PROVIDERS: dict[str, pl.DataType] = {**PROVIDERS, **GEOGRAPHY_COLUMNS}

CLUSTERS: dict[str, pl.DataType] = {
    "cluster_id": pl.Utf8,
    "method": pl.Utf8,  # 'metro' | 'density' | 'drive_time'
    "centroid_latitude": pl.Float64,
    "centroid_longitude": pl.Float64,
    "member_count": pl.Int64,
    "h3_cells": pl.List(pl.Utf8),
    "cbsa_code": pl.Utf8,  # the metro holding most members
    "cbsa_title": pl.Utf8,
    "metro_source": pl.Utf8,
    "reach_miles": pl.Float64,  # largest distance from the centre to a member
    "reach_minutes": pl.Float64,  # largest drive time from the centre to a member
}

PROVIDER_CLUSTERS: dict[str, pl.DataType] = {"npi": pl.Utf8, "cluster_id": pl.Utf8}

CLUSTER_ADJACENCY: dict[str, pl.DataType] = {
    "cluster_id": pl.Utf8,
    "neighbor_cluster_id": pl.Utf8,
    "distance_miles": pl.Float64,  # centroid to centroid
    "reason": pl.Utf8,  # 'h3_neighbor' | 'within_reach' | 'nearest_link'
}

# --- balancing ----------------------------------------------------------------

TERRITORY_ASSIGNMENTS: dict[str, pl.DataType] = {
    "npi": pl.Utf8,
    "territory_id": pl.Utf8,
    "rep_id": pl.Utf8,
    "cluster_id": pl.Utf8,
    "unit_id": pl.Utf8,  # the balancing unit (a cluster, or an H3 part of a split metro)
    "opportunity_score": pl.Float64,
}


def conform(frame: pl.DataFrame, contract: dict[str, pl.DataType]) -> pl.DataFrame:
    """Return ``frame`` with the contract's columns first, in order and cast.

    Missing contract columns are added as nulls; extra columns are kept after
    the contract's.  Casting is strict, so a value that does not fit the
    contract raises instead of silently becoming null.
    """
    exprs = []
    for name, dtype in contract.items():
        if name in frame.columns:
            exprs.append(pl.col(name).cast(dtype, strict=True))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
    extra = [c for c in frame.columns if c not in contract]
    return frame.select(exprs + [pl.col(c) for c in extra])


def empty(contract: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=contract)
