"""Weighted opportunity scoring that a sales leader can read and tune.

See :mod:`territory_pipeline.scoring.model` for the formula and the breakdown,
and ``default_weights.yaml`` for the documented default weights.
"""

from territory_pipeline.scoring.config import (
    FACTORS,
    ScoringConfig,
    ScoringConfigError,
    default_config_text,
    load_scoring_config,
    scoring_config_from_dict,
)
from territory_pipeline.scoring.model import (
    CLUSTER_SCORE_COLUMNS,
    CONTRIBUTION_COLUMNS,
    FACTOR_COLUMNS,
    PROVIDER_SCORE_COLUMNS,
    ScoringResult,
    check_score_integrity,
    explain_provider,
    markdown_summary,
    score_providers,
)
from territory_pipeline.scoring.overlays import (
    COMPETITOR_COLUMNS,
    CUSTOMER_COLUMNS,
    load_competitors,
    load_customers,
    validate_competitors,
    validate_customers,
)

__all__ = [
    "CLUSTER_SCORE_COLUMNS",
    "COMPETITOR_COLUMNS",
    "CONTRIBUTION_COLUMNS",
    "CUSTOMER_COLUMNS",
    "FACTORS",
    "FACTOR_COLUMNS",
    "PROVIDER_SCORE_COLUMNS",
    "ScoringConfig",
    "ScoringConfigError",
    "ScoringResult",
    "check_score_integrity",
    "default_config_text",
    "explain_provider",
    "load_competitors",
    "load_customers",
    "load_scoring_config",
    "markdown_summary",
    "score_providers",
    "scoring_config_from_dict",
    "validate_competitors",
    "validate_customers",
]
