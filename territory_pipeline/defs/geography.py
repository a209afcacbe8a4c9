"""Stages 2 and 3, geography: metro references, geocoded providers, clusters and adjacency."""


import dagster as dg
import polars as pl

from territory_pipeline.defs.metadata import markdown_table, numeric_metadata, table_metadata
from territory_pipeline.defs.partitions import quarterly_partitions
from territory_pipeline.defs.resources import PipelineSettings, TerritoryDatabase
from territory_pipeline.geography.pipeline import METRO_TABLES, cluster_and_connect, cluster_settings, locate_providers, metro_references
from territory_pipeline.storage.partitions import partition_transaction, query, quarter_date, read_partition, table_exists

KINDS = {"duckdb", "polars"}


class GeocodeConfig(dg.Config):
    min_match_rate: float = 0.95  # WARN when fewer providers than this share are located


class ClusterConfig(dg.Config):
    dbscan_eps_miles: float = 10.0
    dbscan_min_samples: int = 3
    noise_rule: str = "nearest"  # nearest | singleton
    noise_reach_miles: float = 30.0
    drive_time_minutes: float = 150.0
    max_reach_minutes: float = 180.0
    neighbor_minutes: float = 90.0  # clusters this close by road are adjacent
    natural_neighbor_minutes: float = 240.0  # Delaunay neighbours up to this drive time are adjacent (0 disables)


@dg.asset(
    partitions_def=quarterly_partitions,
    group_name="geography",
    kinds=KINDS,
    description=(
        "Metro reference tables with their vintage: the official CBSA delineation (CBSA_DELINEATION_SOURCE) and "
        "HUD ZIP->CBSA crosswalk (HUD_ZIP_CBSA_SOURCE) when given, and always the approximate metros derived "
        "offline from cities of 50,000+ people (labelled approximate)."
    ),
)
def metro_reference(context: dg.AssetExecutionContext, database: TerritoryDatabase, settings: PipelineSettings) -> dg.MaterializeResult:
    cfg = settings.to_settings()
    quarter = quarter_date(context.partition_key)
    frames = metro_references(cfg)
    with database.connection() as conn, partition_transaction(conn, quarter) as tx:
        for table in METRO_TABLES.values():
            if table in frames:
                tx.replace(table, frames[table])
            else:
                tx.clear(table)
    return dg.MaterializeResult(
        metadata={
            "official": dg.MetadataValue.bool("ref_hud_zip_cbsa" in frames or "ref_cbsa_delineation" in frames),
            **{f"{table}_rows": dg.MetadataValue.int(frames[table].height) for table in frames},
            **{f"{table}_vintage": dg.MetadataValue.text(str(frames[table]["vintage"][0])) for table in frames if frames[table].height},
        }
    )


@dg.multi_asset(
    partitions_def=quarterly_partitions,
    group_name="geography",
    specs=[
        dg.AssetSpec(
            "geocoded_providers",
            deps=["providers", "metro_reference"],
            kinds=KINDS,
            description=(
                "Every provider with latitude/longitude, geocode_method and geocode_quality, county FIPS, CBSA code "
                "and title (or approximate metro, labelled), and H3 cell. Geocoded through the persistent "
                "geocode_cache, so a later quarter only geocodes new or changed addresses."
            ),
        ),
        dg.AssetSpec(
            "geocode_rejects",
            deps=["providers", "metro_reference"],
            kinds=KINDS,
            description="Providers that could not be placed (unknown ZIP, outside the US), with the reason.",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "geocode_match_rate_above_floor",
            asset="geocoded_providers",
            description="Share of providers located (any method). WARN below GeocodeConfig.min_match_rate (default 95%).",
        )
    ],
)
def provider_geography(
    context: dg.AssetExecutionContext, config: GeocodeConfig, database: TerritoryDatabase, settings: PipelineSettings
):
    cfg = settings.to_settings()
    quarter = quarter_date(context.partition_key)
    with database.connection() as conn:
        providers = read_partition(conn, "providers", quarter)
        cache = query(conn, "geocode_cache", "select_all") if table_exists(conn, "geocode_cache") else None
        references = {table: read_partition(conn, table, quarter) for table in METRO_TABLES.values()}
    if providers.height == 0:
        raise RuntimeError(f"providers has no rows for {context.partition_key}: materialize it first")
    references = {k: v for k, v in references.items() if v.height}
    located = locate_providers(providers, cfg, cache=cache, references=references, quarter=quarter, progress=context.log.info)
    with database.connection() as conn, partition_transaction(conn, quarter) as tx:
        tx.replace("geocoded_providers", located.geocoded)
        tx.replace("geocode_rejects", located.rejects)
        if located.cache_updates.height:
            tx.write("geocode_cache", located.cache_updates, [("delete_incoming", []), ("insert_incoming", [])])
    stats = located.stats
    yield dg.MaterializeResult(
        asset_key="geocoded_providers",
        metadata={
            **table_metadata("geocoded_providers", located.geocoded),
            **numeric_metadata(stats),
            "by_method": dg.MetadataValue.md(markdown_table(located.geocoded.group_by("geocode_method", "geocode_quality").len().sort("geocode_method", "geocode_quality"))),
            "by_metro_source": dg.MetadataValue.md(markdown_table(located.geocoded.group_by("metro_source").len().sort("metro_source"))),
            "top_metros": dg.MetadataValue.md(markdown_table(located.geocoded.group_by("cbsa_code", "cbsa_title").len().sort("len", "cbsa_code", descending=[True, False]), max_rows=15)),
        },
    )
    yield dg.MaterializeResult(asset_key="geocode_rejects", metadata=table_metadata("geocode_rejects", located.rejects))
    rate = float(stats["geocode_match_rate"])
    yield dg.AssetCheckResult(
        check_name="geocode_match_rate_above_floor",
        asset_key="geocoded_providers",
        passed=rate >= config.min_match_rate,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"match_rate": rate, "floor": config.min_match_rate, "rejected": located.rejects.height, "cache_hit_rate": float(stats.get("cache_hit_rate", 0.0))},
    )


@dg.multi_asset(
    partitions_def=quarterly_partitions,
    group_name="geography",
    specs=[
        dg.AssetSpec(
            "clusters",
            deps=["geocoded_providers"],
            kinds=KINDS,
            description=(
                "Provider clusters by TERRITORY_CLUSTER_METHOD (density: DBSCAN on haversine distance; metro: by CBSA; "
                "drive_time: groups within a drive time of a centre), each with centroid, member count, H3 footprint, "
                "metro and travel reach."
            ),
        ),
        dg.AssetSpec("provider_clusters", deps=["geocoded_providers"], kinds=KINDS, description="The cluster of every provider (exactly one)."),
        dg.AssetSpec(
            "cluster_adjacency",
            deps=["geocoded_providers"],
            kinds=KINDS,
            description=(
                "Which clusters neighbour each other (touching H3 footprints, within a drive time, natural (Delaunay) "
                "neighbours within a longer drive time, or links joining components and offshore regions); used for contiguity."
            ),
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec("every_provider_in_one_cluster", asset="provider_clusters", blocking=True, description="Each geocoded provider is in exactly one cluster (ERROR otherwise)."),
        dg.AssetCheckSpec(
            "cluster_reach_within_limit",
            asset="clusters",
            description="No cluster's reach (largest drive time from its centre) exceeds ClusterConfig.max_reach_minutes (WARN).",
        ),
    ],
)
def provider_clustering(context: dg.AssetExecutionContext, config: ClusterConfig, database: TerritoryDatabase, settings: PipelineSettings):
    cfg = settings.to_settings()
    quarter = quarter_date(context.partition_key)
    with database.connection() as conn:
        geocoded = read_partition(conn, "geocoded_providers", quarter)
    if geocoded.height == 0:
        raise RuntimeError(f"geocoded_providers has no rows for {context.partition_key}: materialize it first")
    cluster_cfg = cluster_settings(
        cfg,
        dbscan_eps_miles=config.dbscan_eps_miles,
        dbscan_min_samples=config.dbscan_min_samples,
        noise_rule=config.noise_rule,
        noise_reach_miles=config.noise_reach_miles,
        drive_time_minutes=config.drive_time_minutes,
        max_reach_minutes=config.max_reach_minutes,
    )
    result = cluster_and_connect(geocoded, cfg, cluster_cfg, config.neighbor_minutes, config.natural_neighbor_minutes or None)
    with database.connection() as conn, partition_transaction(conn, quarter) as tx:
        tx.replace("clusters", result.clusters)
        tx.replace("provider_clusters", result.provider_clusters)
        tx.replace("cluster_adjacency", result.adjacency)
    sizes = result.clusters["member_count"]
    yield dg.MaterializeResult(
        asset_key="clusters",
        metadata={
            **table_metadata("clusters", result.clusters),
            **numeric_metadata({k: v for k, v in result.stats.items() if not isinstance(v, (dict, list))}),
            "method": dg.MetadataValue.text(cluster_cfg.method),
            "cluster_count": result.clusters.height,
            "largest_cluster": int(sizes.max() or 0),
            "singletons": int((sizes == 1).sum()),
            "largest": dg.MetadataValue.md(markdown_table(result.clusters.sort("member_count", "cluster_id", descending=[True, False]).select("cluster_id", "member_count", "cbsa_title", "reach_miles", "reach_minutes"), max_rows=10)),
        },
    )
    yield dg.MaterializeResult(asset_key="provider_clusters", metadata=table_metadata("provider_clusters", result.provider_clusters))
    yield dg.MaterializeResult(
        asset_key="cluster_adjacency",
        metadata={**table_metadata("cluster_adjacency", result.adjacency), "by_reason": dg.MetadataValue.md(markdown_table(result.adjacency.group_by("reason").len().sort("reason")))},
    )
    counts = result.provider_clusters.group_by("npi").len()
    missing = geocoded.filter(~pl.col("npi").is_in(result.provider_clusters["npi"].implode())).height
    yield dg.AssetCheckResult(
        check_name="every_provider_in_one_cluster",
        asset_key="provider_clusters",
        passed=missing == 0 and counts.filter(pl.col("len") > 1).height == 0,
        metadata={"providers": geocoded.height, "unclustered": missing, "in_several": counts.filter(pl.col("len") > 1).height},
    )
    too_far = result.clusters.filter(pl.col("reach_minutes") > config.max_reach_minutes)
    yield dg.AssetCheckResult(
        check_name="cluster_reach_within_limit",
        asset_key="clusters",
        passed=too_far.height == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"max_reach_minutes": float(result.clusters["reach_minutes"].max() or 0.0), "limit": config.max_reach_minutes, "clusters_beyond": too_far.height},
    )
