"""Resources: the DuckDB database and the pipeline settings.

Both take their values from environment variables (see ``settings.py``) when
the definitions load, and fall back to offline defaults, so a run needs no
configuration at all.  The values show in the UI under Resources.
"""


import contextlib
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from territory_pipeline.settings import Settings


class PipelineSettings(dg.ConfigurableResource):
    """Every setting of the pipeline; defaults come from the environment."""

    provider_source: str = "sample"
    taxonomy_codes: list[str] = []
    taxonomy_classifications: list[str] = []
    taxonomy_specializations: list[str] = []
    include_organizations: bool = False
    practice_settings: list[str] = []
    reps_file: str = ""
    sample_seed: int = 20260701
    sample_providers: int = 3000
    generated_dir: str = ""
    nppes_source: str = ""
    nppes_weekly_sources: list[str] = []
    npi_registry_url: str = ""
    npi_registry_states: list[str] = []
    npi_registry_rate: float = 5.0
    npi_registry_max_retries: int = 6
    nucc_taxonomy_source: str = ""
    procedures_file: str = ""
    hcpcs_codes: list[str] = []
    min_procedure_volume: float = 0.0
    facility_affiliations_file: str = ""
    clinicians_file: str = ""
    geocoder: str = "zip"
    census_geocoder_url: str = ""
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
    output_dir: str = ""
    events_dir: str = ""
    cache_dir: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> "PipelineSettings":
        values = {}
        for name in cls.model_fields:
            value = getattr(settings, name)
            values[name] = list(value) if isinstance(value, tuple) else value
        return cls(**values)

    def to_settings(self) -> Settings:
        defaults = Settings()
        values = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, list):
                value = tuple(value) if value else getattr(defaults, name)
            elif value == "" and getattr(defaults, name) != "":
                value = getattr(defaults, name)
            values[name] = value
        return Settings(duckdb_path=defaults.duckdb_path, **values)


class TerritoryDatabase(DuckDBResource):
    """The DuckDB file holding every table (``TERRITORY_DUCKDB_PATH``).

    One writer at a time: the definitions use the in-process executor and a
    run queue of one, so steps and runs never contend for the file lock.
    """

    @contextlib.contextmanager
    def connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection, closed even when the body raises."""
        with self.get_connection() as conn:
            try:
                yield conn
            finally:
                conn.close()


def default_resources() -> dict:
    settings = Settings.from_env()
    Path(settings.duckdb_path).parent.mkdir(parents=True, exist_ok=True)
    return {
        "database": TerritoryDatabase(database=settings.duckdb_path),
        "settings": PipelineSettings.from_settings(settings),
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=default_resources())
