"""Weighted opportunity scoring of providers and clusters.

The formula (weights from ``default_weights.yaml`` or a user YAML file)::

    potential   = base_points × specialty × practice_size × procedure_volume
    share       = clip(our_revenue / (potential × potential_revenue_per_point), 0, 1)
    opportunity = potential × (1 − share) × competition × practice_type × setting

Factors, per provider (one row per NPI, at its primary practice location):

- ``specialty``: the weight of the primary taxonomy code, ``default_weight``
  for codes not listed.
- ``practice_size``: ``clip(1 + coefficient × ln(size), floor, cap)``; size is
  ``num_org_mem`` when given, else the number of target providers at the same
  normalized practice address (``practice_size_source`` says which).
- ``procedure_volume``: ``clip(log1p(services) / log1p(reference_services),
  floor, cap)``, ``missing_factor`` when ``procedure_services`` is null.
- ``customer_share``: ``1 − share``.
- ``competition``: ``present_multiplier`` when a competitor account is at the
  provider (by NPI or practice address), else 1.
- ``practice_type``: the 'system' or 'independent' weight; the rule is in
  ``default_weights.yaml`` (first system signal wins; ``practice_type_source``
  names it).
- ``setting``: the weight of practice_setting ('hospital' | 'asc' | 'office'),
  ``unknown_weight`` otherwise.

Breakdown (sequential attribution).  Starting from ``s0 = base_points``, the
factors are applied one at a time in ``attribution_order``:
``s_k = s_{k-1} × f_k`` and ``contrib_k = s_k − s_{k-1}``.  The sum telescopes,
so ``opportunity_score = contrib_base_potential + Σ contrib_k`` exactly (up to
float rounding).  Changing one factor changes its own contribution and those of
the factors after it in the order, never those before it; the last factor
(``setting`` by default) changes only itself and the total.  A cluster's score
and contributions are the sums over its providers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from territory_pipeline.schemas import REJECTS
from territory_pipeline.scoring.config import ScoringConfig, load_scoring_config
from territory_pipeline.scoring.overlays import (
    load_competitors,
    load_customers,
    normalized_address_expr,
    validate_competitors,
    validate_customers,
)

#: Breakdown column of each component, in display order.
CONTRIBUTION_COLUMNS: dict[str, str] = {
    "base_potential": "contrib_base_potential",
    "specialty": "contrib_specialty",
    "practice_size": "contrib_practice_size",
    "procedure_volume": "contrib_procedure_volume",
    "practice_type": "contrib_practice_type",
    "setting": "contrib_setting",
    "customer_share": "contrib_customer_share",
    "competition": "contrib_competition",
}
#: Column holding each factor's multiplier in ``provider_scores``.
FACTOR_COLUMNS: dict[str, str] = {
    "specialty": "specialty_weight",
    "practice_size": "factor_practice_size",
    "procedure_volume": "factor_procedure_volume",
    "customer_share": "factor_customer_share",
    "competition": "factor_competition",
    "practice_type": "factor_practice_type",
    "setting": "factor_setting",
}
REQUIRED_PROVIDER_COLUMNS: tuple[str, ...] = (
    "npi",
    "cluster_id",
    "taxonomy_code",
    "entity_type",
    "practice_setting",
    "address_line_1",
    "zip5",
)
_OPTIONAL_PROVIDER_COLUMNS: dict[str, pl.DataType] = {
    "is_organization_subpart": pl.Utf8,
    "parent_organization_lbn": pl.Utf8,
    "is_sole_proprietor": pl.Utf8,
    "procedure_services": pl.Float64,
    "org_pac_id": pl.Utf8,
    "num_org_mem": pl.Float64,
    "hospital_affiliated": pl.Boolean,
    "location_seq": pl.Int64,
}
PROVIDER_SCORE_COLUMNS: tuple[str, ...] = (
    "npi",
    "cluster_id",
    "opportunity_score",
    *CONTRIBUTION_COLUMNS.values(),
    "potential",
    "potential_revenue",
    "taxonomy_code",
    "specialty_weight",
    "practice_type",
    "practice_type_source",
    "practice_size",
    "practice_size_source",
    "procedure_services",
    "practice_setting",
    "customer_status",
    "our_revenue",
    "share",
    "competitor_present",
    "competitor_count",
    *[c for c in FACTOR_COLUMNS.values() if c != "specialty_weight"],
)
CLUSTER_SCORE_COLUMNS: tuple[str, ...] = (
    "cluster_id",
    "opportunity_score",
    "provider_count",
    *CONTRIBUTION_COLUMNS.values(),
    "customer_count",
    "penetration",
    "our_revenue",
    "potential_revenue",
    "market_share",
    "competitor_count",
    "mean_score",
)
_QUANTILES: tuple[tuple[str, float], ...] = (
    ("p10", 0.10),
    ("p25", 0.25),
    ("p50", 0.50),
    ("p75", 0.75),
    ("p90", 0.90),
)
_TRUE_TEXT = {"y", "yes", "true", "t", "1"}
_FALSE_TEXT = {"n", "no", "false", "f", "0", ""}


@dataclass(frozen=True)
class ScoringResult:
    """Output of :func:`score_providers`.

    ``provider_scores``: one row per NPI (:data:`PROVIDER_SCORE_COLUMNS`).
    ``scored_clusters``: one row per cluster (:data:`CLUSTER_SCORE_COLUMNS`).
    ``report``: problem rows (``schemas.REJECTS`` columns) from the providers,
    customers and competitors inputs.  ``summary``: weights used, score
    quantiles, top/bottom clusters, counts.
    """

    provider_scores: pl.DataFrame
    scored_clusters: pl.DataFrame
    report: pl.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)


def score_providers(
    providers: pl.DataFrame,
    config: ScoringConfig | str | Path | None = None,
    *,
    customers: pl.DataFrame | str | Path | None = None,
    competitors: pl.DataFrame | str | Path | None = None,
) -> ScoringResult:
    """Score every provider and cluster (formula in the module docstring).

    ``providers`` is the clustered providers frame (``schemas.PROVIDERS`` +
    geography + ``cluster_id``; optional CMS columns ``org_pac_id``,
    ``num_org_mem``, ``hospital_affiliated``).  ``config`` is a
    :class:`ScoringConfig`, a YAML path, or ``None`` for the defaults.
    ``customers`` / ``competitors`` are CSV paths or frames with the file's
    columns (see :mod:`territory_pipeline.scoring.overlays`); their problem rows
    land in ``report``.

    Each NPI counts once: when an NPI appears more than once the primary row is
    kept (smallest ``location_seq`` with null first when the column exists, else
    the first row) and the others are reported as ``duplicate_npi_location``.
    Rows without an NPI (``missing_npi``) or a cluster (``missing_cluster_id``)
    are reported and not scored.  A missing required column raises ValueError.
    """
    cfg = config if isinstance(config, ScoringConfig) else load_scoring_config(config)
    frame = _prepare_providers(providers)
    context, scoring_rows, provider_report = _count_once(frame)

    customer_matched, customer_report = _customer_overlay(customers, context)
    competitor_matched, competitor_report = _competitor_overlay(competitors, context)

    scored = _provider_factors(scoring_rows, context, cfg, customer_matched, competitor_matched)
    scored = _attribute(scored, cfg)
    provider_scores = scored.select(PROVIDER_SCORE_COLUMNS).sort("npi")
    scored_clusters = _cluster_scores(provider_scores, cfg)
    report = pl.concat([provider_report, customer_report, competitor_report]).sort(
        ["source", "reason", "npi", "raw_record"], nulls_last=True
    )
    summary = _summary(provider_scores, scored_clusters, report, cfg)
    return ScoringResult(provider_scores, scored_clusters, report, summary)


# --- inputs ---------------------------------------------------------------------


def _prepare_providers(providers: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in REQUIRED_PROVIDER_COLUMNS if c not in providers.columns]
    if missing:
        raise ValueError(f"providers: missing required column(s) {', '.join(repr(c) for c in missing)}")
    frame = providers.with_row_index("_row")
    exprs = [pl.col(c).cast(pl.Utf8).str.strip_chars().alias(c) for c in REQUIRED_PROVIDER_COLUMNS]
    exprs[REQUIRED_PROVIDER_COLUMNS.index("taxonomy_code")] = (
        pl.col("taxonomy_code").cast(pl.Utf8).str.strip_chars().str.to_uppercase()
    )
    for name, dtype in _OPTIONAL_PROVIDER_COLUMNS.items():
        if name not in frame.columns:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
        elif name == "hospital_affiliated":
            exprs.append(_boolean_column(frame, name))
        elif dtype == pl.Utf8:
            exprs.append(pl.col(name).cast(pl.Utf8).str.strip_chars().alias(name))
        else:
            exprs.append(_numeric_column(frame, name, dtype))
    frame = frame.with_columns(exprs).with_columns(
        pl.col("practice_setting").str.to_lowercase(),
        pl.col("entity_type").str.to_lowercase(),
        pl.when(pl.col("cluster_id") == "").then(None).otherwise(pl.col("cluster_id")).alias("cluster_id"),
        pl.when(pl.col("npi") == "").then(None).otherwise(pl.col("npi")).alias("npi"),
    )
    negative = frame.filter(pl.col("procedure_services") < 0)
    if negative.height:
        raise ValueError(
            f"providers: procedure_services is negative for {negative.height} provider(s), e.g. NPI "
            f"{negative['npi'][0]} ({negative['procedure_services'][0]})"
        )
    return frame


def _numeric_column(frame: pl.DataFrame, name: str, dtype: pl.DataType) -> pl.Expr:
    """Cast a column to a number, raising with an example when a value is not one."""
    column = frame[name]
    cast = (
        column.cast(pl.Utf8).str.strip_chars().cast(dtype, strict=False)
        if column.dtype == pl.Utf8
        else column.cast(dtype, strict=False)
    )
    bad = column.is_not_null() & cast.is_null()
    if column.dtype == pl.Utf8:
        bad = bad & (column.str.strip_chars() != "")
    if bad.any():
        example = column.filter(bad)[0]
        raise ValueError(f"providers: column '{name}' has a value that is not a number: {example!r}")
    return pl.lit(cast.fill_nan(None)).alias(name)  # NaN means "not given", like null


def _boolean_column(frame: pl.DataFrame, name: str) -> pl.Expr:
    """Read a boolean column given as bool or as text (Y/N, true/false, 1/0)."""
    column = frame[name]
    if column.dtype == pl.Boolean:
        return pl.col(name)
    text = column.cast(pl.Utf8).str.strip_chars().str.to_lowercase()
    unknown = text.is_not_null() & ~text.is_in(sorted(_TRUE_TEXT | _FALSE_TEXT))
    if unknown.any():
        raise ValueError(
            f"providers: column '{name}' has a value that is not true/false: {column.filter(unknown)[0]!r}"
        )
    values = pl.select(pl.when(text.is_null()).then(None).otherwise(text.is_in(sorted(_TRUE_TEXT)))).to_series()
    return pl.lit(values).alias(name)


def _count_once(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Keep one row per NPI (the primary location); report what is not scored.

    Returns ``(context, scoring_rows, report)``: ``context`` is every kept NPI
    (used for address counts and address-level organization signals),
    ``scoring_rows`` those with a cluster.
    """
    with_npi = frame.filter(pl.col("npi").is_not_null())
    repeated = with_npi["npi"].is_duplicated()
    if repeated.any():  # rank only the repeated NPIs: sorting the whole frame is slow
        ranked = (
            with_npi.filter(repeated)
            .sort(["npi", "location_seq", "_row"], nulls_last=False)
            .with_columns(pl.col("_row").cum_count().over("npi").alias("_rank"))
        )
        duplicates = ranked.filter(pl.col("_rank") > 1).drop("_rank")
        with_npi = pl.concat([with_npi.filter(~repeated), ranked.filter(pl.col("_rank") == 1).drop("_rank")])
    else:
        duplicates = with_npi.clear()
    context = with_npi.with_columns(normalized_address_expr().alias("_address_key"))
    missing_npi = frame.filter(pl.col("npi").is_null())
    missing_cluster = context.filter(pl.col("cluster_id").is_null())
    scoring_rows = context.filter(pl.col("cluster_id").is_not_null())
    raw = pl.struct(
        [pl.col(c).cast(pl.Utf8) for c in ("npi", "cluster_id", "taxonomy_code", "address_line_1", "zip5")]
    ).struct.json_encode()
    missing_npi, duplicates, missing_cluster = (
        f.with_columns(raw.alias("_raw_record")) for f in (missing_npi, duplicates, missing_cluster)
    )
    report = pl.concat(
        [
            missing_npi.select(
                pl.lit("providers").alias("source"),
                pl.col("npi"),
                pl.lit("missing_npi").alias("reason"),
                pl.format("provider row {} has no NPI and cannot be scored", pl.col("_row")).alias("detail"),
                pl.col("_raw_record").alias("raw_record"),
            ),
            duplicates.select(
                pl.lit("providers").alias("source"),
                pl.col("npi"),
                pl.lit("duplicate_npi_location").alias("reason"),
                pl.format(
                    "NPI counted once at its primary location; this extra location (row {}) is not scored",
                    pl.col("_row"),
                ).alias("detail"),
                pl.col("_raw_record").alias("raw_record"),
            ),
            missing_cluster.select(
                pl.lit("providers").alias("source"),
                pl.col("npi"),
                pl.lit("missing_cluster_id").alias("reason"),
                pl.lit("provider has no cluster_id and is not scored").alias("detail"),
                pl.col("_raw_record").alias("raw_record"),
            ),
        ]
    ).select([pl.col(c).cast(t) for c, t in REJECTS.items()])
    return context, scoring_rows, report


def _customer_overlay(
    customers: pl.DataFrame | str | Path | None, context: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    if customers is None:
        return validate_customers(pl.DataFrame(schema={"npi": pl.Utf8, "account_status": pl.Utf8, "revenue": pl.Utf8}))
    if isinstance(customers, pl.DataFrame):
        return validate_customers(customers, context)
    return load_customers(customers, context)


def _competitor_overlay(
    competitors: pl.DataFrame | str | Path | None, context: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    if competitors is None:
        return validate_competitors(pl.DataFrame(schema={"npi": pl.Utf8}))
    if isinstance(competitors, pl.DataFrame):
        return validate_competitors(competitors, context)
    return load_competitors(competitors, context)


# --- factors ----------------------------------------------------------------------


def _practice_type_exprs(cfg: ScoringConfig) -> tuple[pl.Expr, pl.Expr]:
    """``(practice_type, practice_type_source)`` expressions.

    Needs the provider columns plus ``_addr_parent_org`` and
    ``_addr_hospital_org`` (address-level organization signals).  The first
    system signal that holds names the source; otherwise the provider is
    independent (source ``nppes_sole_proprietor``, ``cms_group_size`` or
    ``no_system_signal``).
    """
    own_subpart = pl.col("is_organization_subpart").str.to_uppercase() == "Y"
    own_parent = pl.col("parent_organization_lbn").str.len_chars() > 0
    big_group = (pl.col("org_pac_id").str.len_chars() > 0) & (pl.col("num_org_mem") >= cfg.system_group_min_members)
    affiliated = pl.col("hospital_affiliated") & pl.lit(cfg.use_hospital_affiliation)
    system_signals = [
        (own_subpart, "nppes_subpart"),
        (own_parent, "nppes_parent_org"),
        (pl.col("_addr_parent_org"), "nppes_parent_org_at_address"),
        (pl.col("_addr_hospital_org"), "nppes_hospital_at_address"),
        (pl.col("practice_setting") == "hospital", "practice_setting_hospital"),
        (big_group, "cms_group_size"),
        (affiliated, "cms_hospital_affiliation"),
    ]
    independent_signals = [
        (pl.col("is_sole_proprietor").str.to_uppercase() == "Y", "nppes_sole_proprietor"),
        (pl.col("num_org_mem").is_not_null(), "cms_group_size"),
    ]
    source: Any = pl
    for condition, name in system_signals + independent_signals:
        source = source.when(condition.fill_null(False)).then(pl.lit(name))
    source = source.otherwise(pl.lit("no_system_signal"))
    is_system = pl.lit(False)
    for condition, _ in system_signals:
        is_system = is_system | condition.fill_null(False)
    practice_type = pl.when(is_system).then(pl.lit("system")).otherwise(pl.lit("independent"))
    return practice_type.alias("practice_type"), source.alias("practice_type_source")


def _provider_factors(
    rows: pl.DataFrame,
    context: pl.DataFrame,
    cfg: ScoringConfig,
    customers: pl.DataFrame,
    competitors: pl.DataFrame,
) -> pl.DataFrame:
    """Add every factor column (and the inputs behind them) to the scoring rows."""
    is_org = pl.col("entity_type") == "organization"
    hospital_code = pl.col("taxonomy_code").str.slice(0, 2).is_in(["27", "28"])
    by_address = (
        context.filter(pl.col("_address_key").is_not_null())
        .group_by("_address_key")
        .agg(
            pl.len().alias("_addr_count"),
            (
                (pl.col("is_organization_subpart").str.to_uppercase() == "Y")
                | (pl.col("parent_organization_lbn").str.len_chars() > 0)
            )
            .fill_null(False)
            .any()
            .alias("_addr_parent_org"),
            (is_org & ((pl.col("practice_setting") == "hospital") | hospital_code))
            .fill_null(False)
            .any()
            .alias("_addr_hospital_org"),
        )
    )
    frame = rows.join(by_address, on="_address_key", how="left").with_columns(
        pl.col("_addr_parent_org").fill_null(False),
        pl.col("_addr_hospital_org").fill_null(False),
    )
    # practice size
    has_members = pl.col("num_org_mem").is_not_null() & (pl.col("num_org_mem") > 0)
    frame = frame.with_columns(
        pl.when(has_members)
        .then(pl.col("num_org_mem"))
        .otherwise(pl.col("_addr_count").cast(pl.Float64).fill_null(1.0))
        .alias("practice_size"),
        pl.when(has_members)
        .then(pl.lit("cms_num_org_mem"))
        .when(pl.col("_addr_count").is_not_null())
        .then(pl.lit("address_count"))
        .otherwise(pl.lit("no_address"))
        .alias("practice_size_source"),
    )
    practice_type, practice_type_source = _practice_type_exprs(cfg)
    reference = math.log1p(cfg.procedure_reference_services)
    frame = frame.with_columns(
        pl.col("taxonomy_code")
        .replace_strict(dict(cfg.specialty_weights), default=cfg.specialty_default_weight, return_dtype=pl.Float64)
        .alias("specialty_weight"),
        (1.0 + cfg.size_coefficient * pl.col("practice_size").log())
        .clip(cfg.size_floor, cfg.size_cap)
        .alias("factor_practice_size"),
        pl.when(pl.col("procedure_services").is_null())
        .then(pl.lit(cfg.procedure_missing_factor))
        .otherwise((pl.col("procedure_services").log1p() / reference).clip(cfg.procedure_floor, cfg.procedure_cap))
        .alias("factor_procedure_volume"),
        practice_type,
        practice_type_source,
        pl.col("practice_setting")
        .replace_strict(dict(cfg.setting_weights), default=cfg.setting_unknown_weight, return_dtype=pl.Float64)
        .alias("factor_setting"),
    ).with_columns(
        pl.col("practice_type")
        .replace_strict(dict(cfg.practice_type_weights), return_dtype=pl.Float64)
        .alias("factor_practice_type"),
        (
            pl.lit(cfg.base_points)
            * pl.col("specialty_weight")
            * pl.col("factor_practice_size")
            * pl.col("factor_procedure_volume")
        ).alias("potential"),
    )
    # customer share
    frame = (
        frame.with_columns((pl.col("potential") * cfg.potential_revenue_per_point).alias("potential_revenue"))
        .join(
            customers.select(
                "npi", pl.col("account_status").alias("customer_status"), pl.col("revenue").alias("our_revenue")
            ),
            on="npi",
            how="left",
        )
        .with_columns(pl.col("our_revenue").fill_null(0.0), pl.col("customer_status").fill_null("none"))
        .with_columns(
            pl.when(pl.col("potential_revenue") > 0)
            .then((pl.col("our_revenue") / pl.col("potential_revenue")).clip(0.0, 1.0))
            .otherwise(pl.when(pl.col("our_revenue") > 0).then(1.0).otherwise(0.0))
            .alias("share")
        )
        .with_columns((1.0 - pl.col("share")).alias("factor_customer_share"))
    )
    # competition
    by_npi = competitors.filter(pl.col("match_basis") == "npi").group_by("npi").agg(pl.len().alias("_comp_npi"))
    by_key = (
        competitors.filter(pl.col("match_basis") == "address")
        .with_columns(normalized_address_expr().alias("_address_key"))
        .group_by("_address_key")
        .agg(pl.len().alias("_comp_addr"))
    )
    frame = (
        frame.join(by_npi, on="npi", how="left")
        .join(by_key, on="_address_key", how="left")
        .with_columns(
            (pl.col("_comp_npi").fill_null(0) + pl.col("_comp_addr").fill_null(0))
            .cast(pl.Int64)
            .alias("competitor_count")
        )
        .with_columns((pl.col("competitor_count") > 0).alias("competitor_present"))
        .with_columns(
            pl.when(pl.col("competitor_present"))
            .then(pl.lit(cfg.competitor_multiplier))
            .otherwise(pl.lit(1.0))
            .alias("factor_competition")
        )
    )
    return frame


def _attribute(frame: pl.DataFrame, cfg: ScoringConfig) -> pl.DataFrame:
    """Sequential attribution: apply the factors in order, record each step's change."""
    running = pl.lit(cfg.base_points, dtype=pl.Float64)
    exprs = [running.alias("contrib_base_potential")]
    for factor in cfg.attribution_order:
        after = running * pl.col(FACTOR_COLUMNS[factor])
        exprs.append((after - running).alias(CONTRIBUTION_COLUMNS[factor]))
        running = after
    exprs.append(running.alias("opportunity_score"))
    return frame.with_columns(exprs)


# --- clusters and summary --------------------------------------------------------------


def _cluster_scores(provider_scores: pl.DataFrame, cfg: ScoringConfig) -> pl.DataFrame:
    is_customer = pl.col("customer_status").is_in(list(cfg.customer_statuses))
    clusters = (
        provider_scores.group_by("cluster_id")
        .agg(
            pl.col("opportunity_score").sum(),
            pl.len().cast(pl.Int64).alias("provider_count"),
            *[pl.col(c).sum() for c in CONTRIBUTION_COLUMNS.values()],
            is_customer.sum().cast(pl.Int64).alias("customer_count"),
            pl.col("our_revenue").sum(),
            pl.col("potential_revenue").sum(),
            pl.col("competitor_present").sum().cast(pl.Int64).alias("competitor_count"),
        )
        .with_columns(
            (pl.col("customer_count") / pl.col("provider_count")).alias("penetration"),
            pl.when(pl.col("potential_revenue") > 0)
            .then(pl.col("our_revenue") / pl.col("potential_revenue"))
            .otherwise(None)
            .alias("market_share"),
            (pl.col("opportunity_score") / pl.col("provider_count")).alias("mean_score"),
        )
    )
    return clusters.select(CLUSTER_SCORE_COLUMNS).sort("cluster_id")


def _quantiles(values: pl.Series) -> dict[str, float | None]:
    if values.len() == 0:
        return {name: None for name in ("min", *[q for q, _ in _QUANTILES], "max", "mean")}
    out: dict[str, float | None] = {"min": float(values.min())}
    for name, q in _QUANTILES:
        out[name] = float(values.quantile(q, interpolation="linear"))
    out["max"] = float(values.max())
    out["mean"] = float(values.mean())
    return out


def _summary(
    provider_scores: pl.DataFrame,
    scored_clusters: pl.DataFrame,
    report: pl.DataFrame,
    cfg: ScoringConfig,
    top_n: int = 5,
) -> dict[str, Any]:
    ranked = scored_clusters.sort(["opportunity_score", "cluster_id"], descending=[True, False])
    breakdown = ["cluster_id", "opportunity_score", "provider_count", *CONTRIBUTION_COLUMNS.values(), "market_share"]
    counts = report.group_by("source", "reason").len().sort("source", "reason")
    return {
        "config": cfg.to_dict(),
        "config_source": cfg.source,
        "provider_count": provider_scores.height,
        "cluster_count": scored_clusters.height,
        "total_score": float(provider_scores["opportunity_score"].sum()),
        "provider_score_quantiles": _quantiles(provider_scores["opportunity_score"]),
        "cluster_score_quantiles": _quantiles(scored_clusters["opportunity_score"]),
        "practice_type_counts": dict(
            provider_scores.group_by("practice_type_source").len().sort("practice_type_source").iter_rows()
        ),
        "top_clusters": ranked.head(top_n).select(breakdown).to_dicts(),
        "bottom_clusters": ranked.tail(top_n).reverse().select(breakdown).to_dicts(),
        "report_counts": {f"{s}:{r}": n for s, r, n in counts.iter_rows()},
    }


def _row_dict(row: Mapping[str, Any] | pl.DataFrame) -> dict[str, Any]:
    if isinstance(row, pl.DataFrame):
        if row.height != 1:
            raise ValueError(f"explain_provider needs exactly one row, got {row.height}")
        return row.row(0, named=True)
    return dict(row)


def explain_provider(row: Mapping[str, Any] | pl.DataFrame, config: ScoringConfig | None = None) -> str:
    """Plain-text explanation of one ``provider_scores`` row.

    Lists each factor with the input behind it, its multiplier and its
    contribution, in the configuration's attribution order, then the total.
    """
    cfg = config if config is not None else load_scoring_config(None)
    r = _row_dict(row)
    inputs = {
        "specialty": f"taxonomy {r['taxonomy_code']}",
        "practice_size": f"{r['practice_size']:g} ({r['practice_size_source']})",
        "procedure_volume": "no volume data"
        if r["procedure_services"] is None
        else f"{r['procedure_services']:g} services",
        "customer_share": f"{r['customer_status']}, revenue {r['our_revenue']:,.0f}, share {r['share']:.1%}",
        "competition": f"{r['competitor_count']} competitor account(s)" if r["competitor_present"] else "none",
        "practice_type": f"{r['practice_type']} ({r['practice_type_source']})",
        "setting": str(r["practice_setting"]),
    }
    lines = [
        f"NPI {r['npi']} in cluster {r['cluster_id']}: opportunity {r['opportunity_score']:.4f} points",
        f"  {'base potential':<17} {'':<48} {r['contrib_base_potential']:+.4f}",
    ]
    for factor in cfg.attribution_order:
        label = factor.replace("_", " ")
        multiplier = f"x{r[FACTOR_COLUMNS[factor]]:.3f}"
        lines.append(f"  {label:<17} {inputs[factor]:<40} {multiplier:>7} {r[CONTRIBUTION_COLUMNS[factor]]:+.4f}")
    total = sum(r[c] for c in CONTRIBUTION_COLUMNS.values())
    lines.append(f"  {'= total':<17} {'':<48} {total:.4f}")
    return "\n".join(lines)


def check_score_integrity(provider_scores: pl.DataFrame, scored_clusters: pl.DataFrame) -> tuple[bool, dict[str, Any]]:
    """Check that each provider counts once and the scores add up.

    ``ok`` is true when no NPI appears twice, Σ provider scores equals Σ
    cluster scores (relative tolerance 1e-9), every cluster's score and
    provider count equal the sums over its providers, and every row's
    breakdown adds up to its score (absolute 1e-9 × max(1, |score|)).
    """
    tolerance = 1e-9
    contrib = list(CONTRIBUTION_COLUMNS.values())
    duplicated = provider_scores.filter(pl.col("npi").is_duplicated())["npi"].unique().sort()
    provider_total = float(provider_scores["opportunity_score"].sum())
    cluster_total = float(scored_clusters["opportunity_score"].sum())
    relative = abs(provider_total - cluster_total) / max(abs(provider_total), abs(cluster_total), 1e-300)
    by_cluster = provider_scores.group_by("cluster_id").agg(
        pl.col("opportunity_score").sum().alias("_sum"), pl.len().cast(pl.Int64).alias("_n")
    )
    joined = scored_clusters.join(by_cluster, on="cluster_id", how="full", coalesce=True)
    mismatched = joined.filter(
        pl.col("_sum").is_null()
        | pl.col("opportunity_score").is_null()
        | (
            (pl.col("_sum") - pl.col("opportunity_score")).abs()
            > tolerance * pl.max_horizontal(pl.lit(1.0), pl.col("_sum").abs())
        )
        | (pl.col("_n") != pl.col("provider_count"))
    )["cluster_id"].sort()

    def breakdown_error(frame: pl.DataFrame) -> tuple[float, int]:
        if frame.height == 0:
            return 0.0, 0
        error = (pl.sum_horizontal(contrib) - pl.col("opportunity_score")).abs()
        scale = pl.max_horizontal(pl.lit(1.0), pl.col("opportunity_score").abs())
        errors = frame.select(error.alias("e"), (error > tolerance * scale).alias("bad"))
        return float(errors["e"].max()), int(errors["bad"].sum())

    provider_error, provider_bad = breakdown_error(provider_scores)
    cluster_error, cluster_bad = breakdown_error(scored_clusters)
    details = {
        "provider_total": provider_total,
        "cluster_total": cluster_total,
        "relative_difference": relative,
        "duplicate_npi_count": duplicated.len(),
        "duplicate_npis": duplicated.head(10).to_list(),
        "mismatched_clusters": mismatched.head(10).to_list(),
        "mismatched_cluster_count": mismatched.len(),
        "max_provider_breakdown_error": provider_error,
        "providers_breakdown_not_adding_up": provider_bad,
        "max_cluster_breakdown_error": cluster_error,
        "clusters_breakdown_not_adding_up": cluster_bad,
    }
    ok = (
        duplicated.len() == 0
        and relative <= tolerance
        and mismatched.len() == 0
        and provider_bad == 0
        and cluster_bad == 0
    )
    return ok, details


def markdown_summary(result: ScoringResult, top_n: int = 5) -> str:
    """Markdown for the Dagster asset: weights used, score distribution, top and bottom clusters."""
    s = result.summary
    cfg = s["config"]
    out = [
        "## Opportunity scoring",
        "",
        f"{s['provider_count']} providers in {s['cluster_count']} clusters, total "
        f"{s['total_score']:.2f} opportunity points (1 point = one reference provider). "
        f"Configuration: `{s['config_source']}`.",
        "",
        "**Formula:** potential = base x specialty x practice size x procedure volume; "
        "opportunity = potential x (1 - share) x competition x practice type x setting. "
        f"Breakdown order: {', '.join(cfg['attribution_order'])}.",
        "",
        "### Weights used",
        "",
        "| parameter | value |",
        "|---|---|",
    ]
    for key, value in _flatten(cfg):
        out.append(f"| {key} | {value} |")
    out += [
        "",
        "### Score distribution",
        "",
        "| level | min | p10 | p25 | p50 | p75 | p90 | max | mean |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for level, key in (("provider", "provider_score_quantiles"), ("cluster", "cluster_score_quantiles")):
        q = s[key]
        cells = [
            "" if q[n] is None else f"{q[n]:.3f}" for n in ("min", "p10", "p25", "p50", "p75", "p90", "max", "mean")
        ]
        out.append(f"| {level} | " + " | ".join(cells) + " |")
    ranked = result.scored_clusters.sort(["opportunity_score", "cluster_id"], descending=[True, False])
    for title, frame in (("Top clusters", ranked.head(top_n)), ("Bottom clusters", ranked.tail(top_n).reverse())):
        out += ["", f"### {title}", "", _cluster_table(frame)]
    if result.report.height:
        out += ["", "### Input problems", "", "| source | reason | rows |", "|---|---|---|"]
        for source, reason, n in result.report.group_by("source", "reason").len().sort("source", "reason").iter_rows():
            out.append(f"| {source} | {reason} | {n} |")
    return "\n".join(out) + "\n"


def _cluster_table(frame: pl.DataFrame) -> str:
    headers = [
        "cluster",
        "score",
        "providers",
        *[k for k in CONTRIBUTION_COLUMNS],
        "share",
        "penetration",
        "competitors",
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in frame.iter_rows(named=True):
        share = "" if r["market_share"] is None else f"{r['market_share']:.1%}"
        cells = [
            str(r["cluster_id"]),
            f"{r['opportunity_score']:.2f}",
            str(r["provider_count"]),
            *[f"{r[c]:+.2f}" for c in CONTRIBUTION_COLUMNS.values()],
            share,
            f"{r['penetration']:.1%}",
            str(r["competitor_count"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            items.extend(_flatten(value, f"{name}."))
        elif isinstance(value, list):
            items.append((name, ", ".join(map(str, value))))
        else:
            items.append((name, f"{value:g}" if isinstance(value, float) else str(value)))
    return items
