"""The geography stage as the pipeline runs it: metros, geocoding, H3, clusters.

Chooses the sources from the settings (official metro files or the offline
approximation; ZIP centroids or the Census geocoder) and chains the pieces of
this package.  No dagster here: the assets call these functions.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from territory_pipeline.geography.adjacency import build_adjacency
from territory_pipeline.geography.census_geocoder import CensusBatchGeocoder
from territory_pipeline.geography.clustering import ClusterSettings, cluster_providers
from territory_pipeline.geography.geocode import geocode_providers
from territory_pipeline.geography.h3index import add_h3_cells
from territory_pipeline.geography.metros import assign_metros, metro_reference_tables
from territory_pipeline.geography.travel import make_travel_provider
from territory_pipeline.geography.zip_reference import load_zcta_gazetteer
from territory_pipeline.schemas import GEOCODED_PROVIDERS, REJECTS, conform
from territory_pipeline.settings import Settings
from territory_pipeline.universe.downloads import local_source

METRO_TABLES = {
    "cbsa_delineation": "ref_cbsa_delineation",
    "hud_zip_cbsa": "ref_hud_zip_cbsa",
    "approximate_metros": "ref_approximate_metros",
}


def metro_references(settings: Settings) -> dict[str, pl.DataFrame]:
    """Reference frames keyed by table name: official files when configured, else approximate."""
    cbsa = local_source(settings.cbsa_delineation_source, Path(settings.cache_dir)) if settings.cbsa_delineation_source else None
    hud = local_source(settings.hud_zip_cbsa_source, Path(settings.cache_dir)) if settings.hud_zip_cbsa_source else None
    frames = metro_reference_tables(cbsa_path=cbsa, hud_path=hud, include_approximate=True)
    return {METRO_TABLES[k]: v for k, v in frames.items()}


@dataclass
class LocatedProviders:
    geocoded: pl.DataFrame
    cache_updates: pl.DataFrame
    rejects: pl.DataFrame
    stats: dict = field(default_factory=dict)


def locate_providers(
    providers: pl.DataFrame,
    settings: Settings,
    *,
    cache: pl.DataFrame | None,
    references: dict[str, pl.DataFrame],
    quarter: dt.date,
    progress=None,
) -> LocatedProviders:
    """Geocode (cache first), add county, metro and H3 cell to every provider."""
    census = None
    if settings.geocoder == "census":
        census = CensusBatchGeocoder(base_url=settings.census_geocoder_url, progress=progress)
    zcta = load_zcta_gazetteer(local_source(settings.zcta_gazetteer_source, Path(settings.cache_dir))) if settings.zcta_gazetteer_source else None
    result = geocode_providers(
        providers, geocoder=settings.geocoder, cache=cache, census=census, zcta=zcta, quarter=quarter.isoformat()
    )
    located = assign_metros(
        result.geocoded,
        zip_cbsa=references.get("ref_hud_zip_cbsa"),
        cbsa=references.get("ref_cbsa_delineation"),
        approx=references.get("ref_approximate_metros"),
    )
    located = add_h3_cells(located, settings.h3_resolution)
    geocoded = conform(located, GEOCODED_PROVIDERS).select(list(GEOCODED_PROVIDERS)).sort("npi")
    rejects = conform(result.rejects, REJECTS).select(list(REJECTS))
    stats = dict(result.stats)
    stats["metro_official"] = geocoded.filter(pl.col("metro_source") == "official").height
    stats["metro_approximate"] = geocoded.filter(pl.col("metro_source") == "approximate").height
    stats["metro_none"] = geocoded.filter(pl.col("metro_source") == "none").height
    stats["geocode_match_rate"] = geocoded.height / max(1, providers.height)
    return LocatedProviders(geocoded, result.cache_updates, rejects, stats)


@dataclass
class ClusteredProviders:
    clusters: pl.DataFrame
    provider_clusters: pl.DataFrame
    adjacency: pl.DataFrame
    stats: dict = field(default_factory=dict)


def cluster_settings(settings: Settings, **overrides) -> ClusterSettings:
    return ClusterSettings(method=settings.cluster_method, h3_resolution=settings.h3_resolution, **overrides)


def cluster_and_connect(
    geocoded: pl.DataFrame,
    settings: Settings,
    cluster_cfg: ClusterSettings,
    neighbor_minutes: float,
    natural_neighbor_minutes: float | None,
) -> ClusteredProviders:
    """Cluster the providers with the configured method and build the adjacency graph."""
    travel = make_travel_provider(settings.osrm_url or None)
    result = cluster_providers(geocoded, cluster_cfg, travel)
    adjacency = build_adjacency(
        result.clusters,
        result.provider_clusters,
        geocoded,
        travel=travel,
        neighbor_minutes=neighbor_minutes,
        natural_neighbor_minutes=natural_neighbor_minutes,
    )
    return ClusteredProviders(result.clusters, result.provider_clusters, adjacency, dict(result.stats))
