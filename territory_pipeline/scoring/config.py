"""Scoring configuration: load, merge over the shipped defaults, validate.

The documented defaults live in ``default_weights.yaml`` next to this module.
A user file (the lead wires ``TERRITORY_SCORING_CONFIG``) is deep-merged over
them, so it only needs the keys it changes.  Validation is strict: an unknown
key, a weight that is not a number, or a value out of range raises
:class:`ScoringConfigError` naming the dotted key (e.g. ``setting.weights.asc``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

#: The multiplicative factors of the score, in the default attribution order.
FACTORS: tuple[str, ...] = (
    "specialty",
    "practice_size",
    "procedure_volume",
    "customer_share",
    "competition",
    "practice_type",
    "setting",
)

PRACTICE_TYPES: tuple[str, ...] = ("system", "independent")
SETTINGS: tuple[str, ...] = ("hospital", "asc", "office")

_TAXONOMY_RE = re.compile(r"^[0-9A-Z]{9}X$")


class ScoringConfigError(ValueError):
    """A scoring configuration is malformed; the message names the key."""


# --- schema ------------------------------------------------------------------
# A leaf is a tuple (kind, lower_bound, lower_inclusive); a dict is a section.
_NUM_POS = ("number", 0.0, False)  # > 0
_NUM_NONNEG = ("number", 0.0, True)  # >= 0
_NUM_ANY = ("number", -math.inf, True)
_SCHEMA: dict[str, Any] = {
    "base_points": _NUM_POS,
    "attribution_order": ("factor_order", None, None),
    "specialty": {
        "default_weight": _NUM_NONNEG,
        "replace_default_weights": ("bool", None, None),
        "weights": ("code_weights", None, None),
    },
    "practice_size": {"coefficient": _NUM_ANY, "floor": _NUM_NONNEG, "cap": _NUM_POS},
    "procedure_volume": {
        "reference_services": _NUM_POS,
        "floor": _NUM_NONNEG,
        "cap": _NUM_POS,
        "missing_factor": _NUM_NONNEG,
    },
    "practice_type": {
        "weights": {name: _NUM_NONNEG for name in PRACTICE_TYPES},
        "system_group_min_members": ("number", 1.0, True),
        "use_hospital_affiliation": ("bool", None, None),
    },
    "setting": {"weights": {name: _NUM_NONNEG for name in SETTINGS}, "unknown_weight": _NUM_NONNEG},
    "customer_share": {
        "potential_revenue_per_point": _NUM_POS,
        "customer_statuses": ("status_list", None, None),
    },
    "competition": {"present_multiplier": _NUM_NONNEG},
}
# Keys a user file may omit even though the default file does not list them.
_OPTIONAL_DEFAULTS: dict[str, Any] = {"specialty": {"replace_default_weights": False}}


@dataclass(frozen=True)
class ScoringConfig:
    """Validated scoring weights.  Build it with :func:`load_scoring_config`."""

    base_points: float
    attribution_order: tuple[str, ...]
    specialty_default_weight: float
    specialty_weights: Mapping[str, float]
    size_coefficient: float
    size_floor: float
    size_cap: float
    procedure_reference_services: float
    procedure_floor: float
    procedure_cap: float
    procedure_missing_factor: float
    practice_type_weights: Mapping[str, float]
    system_group_min_members: float
    use_hospital_affiliation: bool
    setting_weights: Mapping[str, float]
    setting_unknown_weight: float
    potential_revenue_per_point: float
    customer_statuses: tuple[str, ...]
    competitor_multiplier: float
    source: str  # where the user part came from: 'defaults' or the file path

    def to_dict(self) -> dict[str, Any]:
        """The configuration as the nested mapping of the YAML file."""
        return {
            "base_points": self.base_points,
            "attribution_order": list(self.attribution_order),
            "specialty": {
                "default_weight": self.specialty_default_weight,
                "weights": dict(sorted(self.specialty_weights.items())),
            },
            "practice_size": {"coefficient": self.size_coefficient, "floor": self.size_floor, "cap": self.size_cap},
            "procedure_volume": {
                "reference_services": self.procedure_reference_services,
                "floor": self.procedure_floor,
                "cap": self.procedure_cap,
                "missing_factor": self.procedure_missing_factor,
            },
            "practice_type": {
                "weights": dict(self.practice_type_weights),
                "system_group_min_members": self.system_group_min_members,
                "use_hospital_affiliation": self.use_hospital_affiliation,
            },
            "setting": {"weights": dict(self.setting_weights), "unknown_weight": self.setting_unknown_weight},
            "customer_share": {
                "potential_revenue_per_point": self.potential_revenue_per_point,
                "customer_statuses": list(self.customer_statuses),
            },
            "competition": {"present_multiplier": self.competitor_multiplier},
        }


def default_config_text() -> str:
    """The text of the shipped ``default_weights.yaml`` (with its documentation)."""
    return resources.files("territory_pipeline.scoring").joinpath("default_weights.yaml").read_text("utf-8")


def load_scoring_config(path: str | Path | None = None) -> ScoringConfig:
    """Load the scoring configuration.

    ``None`` gives the shipped defaults.  A path is read as YAML and merged over
    the defaults (mappings merge key by key; ``specialty.weights`` adds to or
    overrides the default codes unless ``specialty.replace_default_weights`` is
    true).  Raises :class:`ScoringConfigError` naming the offending key, and
    ``FileNotFoundError`` for a missing file.
    """
    if path is None:
        return scoring_config_from_dict({}, source="defaults")
    file_path = Path(path)
    if not file_path.is_file():
        raise FileNotFoundError(f"scoring configuration file not found: {file_path}")
    try:
        data = yaml.safe_load(file_path.read_text("utf-8"))
    except yaml.YAMLError as exc:
        raise ScoringConfigError(f"{file_path}: not valid YAML: {exc}") from exc
    return scoring_config_from_dict({} if data is None else data, source=str(file_path))


def scoring_config_from_dict(overrides: Mapping[str, Any], *, source: str = "mapping") -> ScoringConfig:
    """Merge ``overrides`` (same shape as the YAML file) over the defaults and validate."""
    if not isinstance(overrides, Mapping):
        raise ScoringConfigError(f"scoring configuration must be a mapping of keys, got {type(overrides).__name__}")
    defaults = yaml.safe_load(default_config_text())
    _check_keys(overrides, _SCHEMA, "")
    merged = _deep_merge(_deep_merge(_OPTIONAL_DEFAULTS, defaults), overrides)
    user_specialty = overrides.get("specialty", {})
    if user_specialty.get("replace_default_weights") is True and "weights" in user_specialty:
        merged["specialty"]["weights"] = user_specialty["weights"]
    if merged["specialty"].get("weights") is None:
        merged["specialty"]["weights"] = {}
    _validate(merged, _SCHEMA, "")
    for section in ("practice_size", "procedure_volume"):
        if merged[section]["cap"] < merged[section]["floor"]:
            raise ScoringConfigError(
                f"{section}.cap ({merged[section]['cap']}) must be >= {section}.floor ({merged[section]['floor']})"
            )
    spec, size, proc = merged["specialty"], merged["practice_size"], merged["procedure_volume"]
    ptype, setting, cust = merged["practice_type"], merged["setting"], merged["customer_share"]
    return ScoringConfig(
        base_points=float(merged["base_points"]),
        attribution_order=tuple(merged["attribution_order"]),
        specialty_default_weight=float(spec["default_weight"]),
        specialty_weights={str(k): float(v) for k, v in sorted(spec["weights"].items())},
        size_coefficient=float(size["coefficient"]),
        size_floor=float(size["floor"]),
        size_cap=float(size["cap"]),
        procedure_reference_services=float(proc["reference_services"]),
        procedure_floor=float(proc["floor"]),
        procedure_cap=float(proc["cap"]),
        procedure_missing_factor=float(proc["missing_factor"]),
        practice_type_weights={k: float(ptype["weights"][k]) for k in PRACTICE_TYPES},
        system_group_min_members=float(ptype["system_group_min_members"]),
        use_hospital_affiliation=bool(ptype["use_hospital_affiliation"]),
        setting_weights={k: float(setting["weights"][k]) for k in SETTINGS},
        setting_unknown_weight=float(setting["unknown_weight"]),
        potential_revenue_per_point=float(cust["potential_revenue_per_point"]),
        customer_statuses=tuple(s.strip().lower() for s in cust["customer_statuses"]),
        competitor_multiplier=float(merged["competition"]["present_multiplier"]),
        source=source,
    )


def _deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in base.items()}
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _check_keys(data: Mapping[str, Any], schema: Mapping[str, Any], prefix: str) -> None:
    """Reject keys the schema does not know, before merging."""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in schema:
            known = ", ".join(sorted(schema))
            raise ScoringConfigError(f"unknown configuration key '{name}' (known at this level: {known})")
        sub = schema[key]
        if isinstance(sub, dict):
            if not isinstance(value, Mapping):
                raise ScoringConfigError(f"'{name}' must be a mapping, got {value!r}")
            _check_keys(value, sub, f"{name}.")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _validate(data: Mapping[str, Any], schema: Mapping[str, Any], prefix: str) -> None:
    for key, spec in schema.items():
        name = f"{prefix}{key}"
        if key not in data:
            raise ScoringConfigError(f"missing configuration key '{name}'")
        value = data[key]
        if isinstance(spec, dict):
            if not isinstance(value, Mapping):
                raise ScoringConfigError(f"'{name}' must be a mapping, got {value!r}")
            _check_keys(value, spec, f"{name}.")
            _validate(value, spec, f"{name}.")
            continue
        kind, low, inclusive = spec
        if kind == "number":
            _check_number(name, value, low, inclusive)
        elif kind == "bool":
            if not isinstance(value, bool):
                raise ScoringConfigError(f"'{name}' must be true or false, got {value!r}")
        elif kind == "factor_order":
            if not isinstance(value, list) or sorted(map(str, value)) != sorted(FACTORS):
                raise ScoringConfigError(f"'{name}' must list each of {', '.join(FACTORS)} exactly once, got {value!r}")
        elif kind == "status_list":
            if not isinstance(value, list) or not value or not all(isinstance(s, str) and s.strip() for s in value):
                raise ScoringConfigError(f"'{name}' must be a non-empty list of account statuses, got {value!r}")
        elif kind == "code_weights":
            if not isinstance(value, Mapping):
                raise ScoringConfigError(f"'{name}' must map taxonomy codes to weights, got {value!r}")
            for code, weight in value.items():
                if not isinstance(code, str) or not _TAXONOMY_RE.match(code):
                    raise ScoringConfigError(f"'{name}.{code}': not a NUCC taxonomy code (9 characters + 'X')")
                _check_number(f"{name}.{code}", weight, 0.0, True)


def _check_number(name: str, value: Any, low: float, inclusive: bool) -> None:
    if not _is_number(value):
        raise ScoringConfigError(f"'{name}' must be a number, got {value!r} ({type(value).__name__})")
    if value < low or (value == low and not inclusive):
        bound = f">= {low:g}" if inclusive else f"> {low:g}"
        raise ScoringConfigError(f"'{name}' must be {bound}, got {value!r}")
