"""The provider universe as the pipeline builds it, whichever the source.

``sample`` generates the embedded NPPES-format sample and reads it with the
NPPES reader; ``nppes`` reads the monthly file (zip, CSV or official URL) and
its weekly increments; ``api`` pulls the NPI Registry (or rebuilds from the
raw responses stored for the quarter).  Every source then goes through the same
steps: practice setting, the setting filter and procedure fit, so the
``providers`` table has the same columns whichever source is used.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from territory_pipeline.schemas import PROVIDERS, REJECTS, SECONDARY_LOCATIONS, conform
from territory_pipeline.settings import Settings
from territory_pipeline.universe.downloads import local_source
from territory_pipeline.universe.npi_registry import STATES_50_DC, NpiRegistryClient, fetch_universe, parse_registry_responses
from territory_pipeline.universe.nppes import read_nppes
from territory_pipeline.universe.practice_setting import (
    derive_practice_setting,
    filter_by_setting,
    load_doctors_clinicians,
    load_facility_affiliations,
)
from territory_pipeline.universe.procedures import apply_procedure_fit, load_procedure_volumes
from territory_pipeline.universe.sample_data import generate_sample
from territory_pipeline.universe.taxonomy import load_taxonomy, resolve_target_codes

FACILITY_COLUMNS = {"address_key": pl.Utf8, "facility_type": pl.Utf8}


@dataclass
class Universe:
    providers: pl.DataFrame
    rejects: pl.DataFrame
    secondary_locations: pl.DataFrame
    api_responses: pl.DataFrame | None = None
    stats: dict = field(default_factory=dict)


def sample_dir(settings: Settings) -> Path:
    return Path(settings.generated_dir) / f"sample-seed{settings.sample_seed}-n{settings.sample_providers}"


def taxonomy_for(settings: Settings) -> pl.DataFrame:
    return load_taxonomy(settings.nucc_taxonomy_source or None, cache_dir=Path(settings.cache_dir))


def target_codes(settings: Settings, taxonomy: pl.DataFrame) -> list[str]:
    return resolve_target_codes(
        taxonomy,
        codes=settings.taxonomy_codes,
        classifications=settings.taxonomy_classifications,
        specializations=settings.taxonomy_specializations,
    )


def _read_nppes_source(settings: Settings, taxonomy: pl.DataFrame, targets: list[str]):
    if settings.provider_source == "sample":
        files = generate_sample(sample_dir(settings), seed=settings.sample_seed, target_providers=settings.sample_providers)
        return read_nppes(
            files.npidata_path,
            target_codes=targets,
            taxonomy=taxonomy,
            include_organizations=settings.include_organizations,
            pl_pfile=files.pl_pfile_path,
            source_label="sample",
        )
    weekly = [local_source(w, Path(settings.cache_dir)) for w in settings.nppes_weekly_sources]
    return read_nppes(
        local_source(settings.nppes_source, Path(settings.cache_dir)),
        target_codes=targets,
        taxonomy=taxonomy,
        include_organizations=settings.include_organizations,
        weekly_files=weekly,
        source_label="nppes",
    )


def api_descriptions(taxonomy: pl.DataFrame, targets: list[str]) -> list[str]:
    """The taxonomy_description values that cover the target codes.

    A code with a specialization is queried by the specialization, a base code
    by its classification; the parser then keeps only the target codes.
    """
    rows = taxonomy.filter(pl.col("code").is_in(targets))
    names = {spec or cls for spec, cls in rows.select("specialization", "classification").iter_rows()}
    return sorted(n for n in names if n)


def covers(responses: pl.DataFrame, descriptions: list[str], states: list[str]) -> bool:
    """Whether stored responses answer every (taxonomy description, state) query of the settings."""
    asked = set()
    for params in responses["params_json"].unique().to_list():
        query = json.loads(params)
        asked.add((query.get("taxonomy_description"), query.get("state")))
    return all((d, s) in asked for d in descriptions for s in states)


def _read_api(
    settings: Settings,
    taxonomy: pl.DataFrame,
    targets: list[str],
    cached: pl.DataFrame | None,
    log: Callable[[str], None],
):
    stats: dict = {}
    descriptions = api_descriptions(taxonomy, targets)
    states = list(settings.npi_registry_states or STATES_50_DC)
    if cached is not None and cached.height and covers(cached, descriptions, states):
        responses = cached
        log(f"rebuilding providers from {cached.height} stored NPI Registry responses (no API call)")
        stats["api_responses_reused"] = cached.height
    else:
        client = NpiRegistryClient(
            settings.npi_registry_url,
            requests_per_second=settings.npi_registry_rate,
            max_retries=settings.npi_registry_max_retries,
        )
        pull = fetch_universe(
            client,
            descriptions,
            states,
            progress=lambda counts: log(f"NPI Registry: {counts}"),
        )
        responses = pull.responses
        stats.update({f"api_{k}": v for k, v in pull.stats.items()})
    parsed = parse_registry_responses(
        responses, taxonomy=taxonomy, target_codes=targets, include_organizations=settings.include_organizations
    )
    stats.update(parsed.stats)
    facilities = pl.DataFrame(schema=FACILITY_COLUMNS)
    return parsed.providers, parsed.rejects, parsed.secondary_locations, facilities, responses, stats


def _excluded_as_rejects(excluded: pl.DataFrame, source: str) -> pl.DataFrame:
    if excluded.height == 0:
        return pl.DataFrame(schema=REJECTS)
    return excluded.select(
        pl.lit(source).alias("source"),
        "npi",
        "reason",
        "detail",
        pl.struct(pl.all().exclude("reason", "detail")).struct.json_encode().alias("raw_record"),
    )


def load_universe(
    settings: Settings,
    taxonomy: pl.DataFrame,
    targets: list[str],
    *,
    cached_api_responses: pl.DataFrame | None = None,
    log: Callable[[str], None] = print,
) -> Universe:
    """Build the provider universe of the configured source."""
    api_responses = None
    if settings.provider_source == "api":
        providers, rejects, secondary, facilities, api_responses, stats = _read_api(
            settings, taxonomy, targets, cached_api_responses, log
        )
    else:
        log(f"reading the NPPES file ({settings.provider_source} source)")
        result = _read_nppes_source(settings, taxonomy, targets)
        providers, rejects, secondary, facilities = result.providers, result.rejects, result.secondary_locations, result.facilities
        stats = dict(result.stats)
        rows, seconds = stats.get("rows_read", 0), max(float(stats.get("seconds", 0.0)), 1e-9)
        log(f"NPPES: {rows:,} rows read in {seconds:.1f} s ({rows / seconds:,.0f} rows/s); {providers.height:,} target providers, {rejects.height:,} rejects")
    affiliations = load_facility_affiliations(Path(settings.facility_affiliations_file)) if settings.facility_affiliations_file else None
    doctors = load_doctors_clinicians(Path(settings.clinicians_file)) if settings.clinicians_file else None
    providers = derive_practice_setting(providers, facilities, affiliations, doctors)
    extra_rejects = []
    if settings.practice_settings:
        providers, excluded = filter_by_setting(providers, list(settings.practice_settings))
        extra_rejects.append(_excluded_as_rejects(excluded, "practice_setting"))
        stats["excluded_by_setting"] = excluded.height
    if settings.procedures_file and settings.hcpcs_codes:
        volumes = load_procedure_volumes(Path(settings.procedures_file), settings.hcpcs_codes, settings.min_procedure_volume)
        providers, excluded = apply_procedure_fit(providers, volumes, settings.min_procedure_volume)
        extra_rejects.append(_excluded_as_rejects(excluded, "procedure_fit"))
        stats["excluded_by_procedure_fit"] = excluded.height
    providers = conform(providers, PROVIDERS).select(list(PROVIDERS)).sort("npi")
    rejects = pl.concat([conform(rejects, REJECTS).select(list(REJECTS))] + [conform(r, REJECTS).select(list(REJECTS)) for r in extra_rejects])
    secondary = conform(secondary, SECONDARY_LOCATIONS).select(list(SECONDARY_LOCATIONS)).sort("npi", "location_seq")
    stats["providers"] = providers.height
    stats["rejects"] = rejects.height
    return Universe(providers, rejects, secondary, api_responses, stats)
