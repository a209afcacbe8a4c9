"""Settings read from the environment, with typed defaults that work offline.

Every setting has a default: with no environment variable at all the pipeline
runs on the embedded sample data, geocodes by ZIP centroid and writes to
``data/territory.duckdb``.  The Dagster shell exposes these values as the
``settings`` resource, so they are shown in the UI.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = PROJECT_ROOT / "data"

DEFAULT_TAXONOMY_CODES = ("207XS0117X", "207T00000X", "207X00000X")

# name of the environment variable -> (settings field, description)
ENVIRONMENT: dict[str, tuple[str, str]] = {
    "TERRITORY_DUCKDB_PATH": ("duckdb_path", "DuckDB database file (default data/territory.duckdb)."),
    "TERRITORY_PROVIDER_SOURCE": ("provider_source", "Provider universe source: sample (default), nppes or api."),
    "TERRITORY_TAXONOMY_CODES": ("taxonomy_codes", "Comma-separated NUCC codes of the target universe."),
    "TERRITORY_TAXONOMY_CLASSIFICATIONS": (
        "taxonomy_classifications",
        "Comma-separated NUCC classifications (each with all its specializations), added to the codes; without NUCC_TAXONOMY_SOURCE only the built-in subset's codes are known.",
    ),
    "TERRITORY_TAXONOMY_SPECIALIZATIONS": (
        "taxonomy_specializations",
        "Comma-separated NUCC specializations (e.g. Orthopaedic Surgery of the Spine), added to the codes.",
    ),
    "TERRITORY_INCLUDE_ORGANIZATIONS": ("include_organizations", "true to keep organization NPIs as targets (default false)."),
    "TERRITORY_PRACTICE_SETTINGS": ("practice_settings", "Comma-separated settings kept (hospital,asc,office); empty keeps all."),
    "TERRITORY_REPS_FILE": ("reps_file", "Rep roster CSV (rep_id,rep_name,home_zip[,capacity,home_latitude,home_longitude]); default the sample roster."),
    "TERRITORY_SAMPLE_SEED": ("sample_seed", "Seed of the embedded sample data (default 20260701)."),
    "TERRITORY_SAMPLE_PROVIDERS": ("sample_providers", "Target providers in the embedded sample (default 3000)."),
    "TERRITORY_GENERATED_DIR": ("generated_dir", "Where the sample generator writes its files (default data/generated)."),
    "NPPES_SOURCE": ("nppes_source", "NPPES monthly zip, extracted npidata_pfile CSV, or its official URL."),
    "NPPES_WEEKLY_SOURCES": ("nppes_weekly_sources", "Comma-separated weekly incremental files applied on top of the monthly one."),
    "NPI_REGISTRY_URL": ("npi_registry_url", "NPI Registry API base URL (default the official endpoint)."),
    "NPI_REGISTRY_STATES": ("npi_registry_states", "Comma-separated states queried through the API (default all)."),
    "NPI_REGISTRY_RATE": ("npi_registry_rate", "Requests per second to the NPI Registry (default 5)."),
    "NPI_REGISTRY_MAX_RETRIES": ("npi_registry_max_retries", "Retries of one NPI Registry request (429, 5xx, timeouts) before the run fails (default 6)."),
    "NUCC_TAXONOMY_SOURCE": ("nucc_taxonomy_source", "NUCC taxonomy CSV path or URL (default the built-in subset)."),
    "TERRITORY_PROCEDURES_FILE": ("procedures_file", "CMS Medicare by Provider and Service CSV for procedure fit."),
    "TERRITORY_HCPCS_CODES": ("hcpcs_codes", "Comma-separated HCPCS codes that define procedure fit."),
    "TERRITORY_MIN_PROCEDURE_VOLUME": ("min_procedure_volume", "Minimum services of those codes to keep a provider."),
    "TERRITORY_FACILITY_AFFILIATIONS_FILE": ("facility_affiliations_file", "CMS Facility Affiliations CSV (optional)."),
    "TERRITORY_CLINICIANS_FILE": ("clinicians_file", "CMS Doctors and Clinicians CSV (optional)."),
    "TERRITORY_GEOCODER": ("geocoder", "zip (default, offline) or census."),
    "CENSUS_GEOCODER_URL": ("census_geocoder_url", "US Census geocoder base URL (default the official one)."),
    "ZCTA_GAZETTEER_SOURCE": ("zcta_gazetteer_source", "Census ZCTA Gazetteer file (optional, better ZIP centroids)."),
    "CBSA_DELINEATION_SOURCE": ("cbsa_delineation_source", "CBSA delineation xlsx/CSV path or URL (official metros)."),
    "HUD_ZIP_CBSA_SOURCE": ("hud_zip_cbsa_source", "HUD ZIP->CBSA crosswalk path (official metros)."),
    "OSRM_URL": ("osrm_url", "OSRM base URL for drive times (default: offline estimate)."),
    "TERRITORY_CLUSTER_METHOD": ("cluster_method", "density (default), metro or drive_time."),
    "TERRITORY_H3_RESOLUTION": ("h3_resolution", "H3 resolution of provider cells (default 7)."),
    "TERRITORY_SCORING_CONFIG": ("scoring_config", "YAML file of scoring weights (default the shipped defaults)."),
    "TERRITORY_CUSTOMERS_FILE": ("customers_file", "Existing-customer CSV keyed by NPI (optional)."),
    "TERRITORY_COMPETITORS_FILE": ("competitors_file", "Competitor accounts CSV (optional)."),
    "TERRITORY_LOCKS_FILE": ("locks_file", "Locked accounts CSV (npi, rep_id): each account stays with its rep (optional)."),
    "TERRITORY_OUTPUT_DIR": ("output_dir", "Exports and maps (default data/outputs); files go under <quarter>/."),
    "TERRITORY_EVENTS_DIR": ("events_dir", "Rep and market event files watched by the sensors (default data/events)."),
    "TERRITORY_CACHE_DIR": ("cache_dir", "Downloads of official files (default data/cache)."),
}


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r}")


@dataclass(frozen=True)
class Settings:
    duckdb_path: str = str(DATA_DIR / "territory.duckdb")
    provider_source: str = "sample"
    taxonomy_codes: tuple[str, ...] = DEFAULT_TAXONOMY_CODES
    taxonomy_classifications: tuple[str, ...] = ()
    taxonomy_specializations: tuple[str, ...] = ()
    include_organizations: bool = False
    practice_settings: tuple[str, ...] = ()
    reps_file: str = ""
    sample_seed: int = 20260701
    sample_providers: int = 3000
    generated_dir: str = str(DATA_DIR / "generated")
    nppes_source: str = ""
    nppes_weekly_sources: tuple[str, ...] = ()
    npi_registry_url: str = "https://npiregistry.cms.hhs.gov/api/"
    npi_registry_states: tuple[str, ...] = ()
    npi_registry_rate: float = 5.0
    npi_registry_max_retries: int = 6
    nucc_taxonomy_source: str = ""
    procedures_file: str = ""
    hcpcs_codes: tuple[str, ...] = ()
    min_procedure_volume: float = 0.0
    facility_affiliations_file: str = ""
    clinicians_file: str = ""
    geocoder: str = "zip"
    census_geocoder_url: str = "https://geocoding.geo.census.gov/geocoder/"
    zcta_gazetteer_source: str = ""
    cbsa_delineation_source: str = ""
    hud_zip_cbsa_source: str = ""
    osrm_url: str = ""
    cluster_method: str = "density"
    h3_resolution: int = 7
    scoring_config: str = ""
    customers_file: str = ""
    competitors_file: str = ""
    locks_file: str = ""
    output_dir: str = str(DATA_DIR / "outputs")
    events_dir: str = str(DATA_DIR / "events")
    cache_dir: str = str(DATA_DIR / "cache")

    def __post_init__(self) -> None:
        if self.provider_source not in ("sample", "nppes", "api"):
            raise ValueError(f"TERRITORY_PROVIDER_SOURCE must be sample, nppes or api, not {self.provider_source!r}")
        if self.provider_source == "nppes" and not self.nppes_source:
            raise ValueError("TERRITORY_PROVIDER_SOURCE=nppes needs NPPES_SOURCE (a zip, a CSV or the official URL)")
        if self.geocoder not in ("zip", "census"):
            raise ValueError(f"TERRITORY_GEOCODER must be zip or census, not {self.geocoder!r}")
        if self.cluster_method not in ("density", "metro", "drive_time"):
            raise ValueError(f"TERRITORY_CLUSTER_METHOD must be density, metro or drive_time, not {self.cluster_method!r}")
        if not 0 <= self.h3_resolution <= 15:
            raise ValueError(f"TERRITORY_H3_RESOLUTION must be 0..15, not {self.h3_resolution}")
        if bool(self.procedures_file) != bool(self.hcpcs_codes):
            raise ValueError("procedure fit needs both TERRITORY_PROCEDURES_FILE and TERRITORY_HCPCS_CODES")
        if self.min_procedure_volume and not self.procedures_file:
            raise ValueError("TERRITORY_MIN_PROCEDURE_VOLUME needs TERRITORY_PROCEDURES_FILE and TERRITORY_HCPCS_CODES")
        bad = [s for s in self.practice_settings if s not in ("hospital", "asc", "office")]
        if bad:
            raise ValueError(f"TERRITORY_PRACTICE_SETTINGS has unknown settings: {bad}")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, object] = {}
        for var, (name, _) in ENVIRONMENT.items():
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            kind = types[name]
            try:
                if kind == "tuple[str, ...]":
                    values[name] = _split(raw)
                elif kind == "bool":
                    values[name] = _bool(raw)
                elif kind == "int":
                    values[name] = int(raw)
                elif kind == "float":
                    values[name] = float(raw)
                else:
                    values[name] = raw.strip()
            except ValueError as exc:
                raise ValueError(f"environment variable {var}={raw!r}: {exc}") from exc
        return cls(**values)

    def quarter_output_dir(self, quarter: str) -> Path:
        return Path(self.output_dir) / quarter
