"""Scoring configuration: shipped defaults, merging a user file, validation errors."""

from __future__ import annotations

import polars as pl
import pytest
import yaml

from territory_pipeline.scoring import (
    FACTORS,
    ScoringConfigError,
    default_config_text,
    load_scoring_config,
    score_providers,
    scoring_config_from_dict,
)
from territory_pipeline_tests.test_scoring import mixed_providers


def test_shipped_defaults_load_and_are_documented():
    cfg = load_scoring_config(None)
    assert cfg.source == "defaults"
    assert cfg.attribution_order == FACTORS
    assert cfg.setting_weights == {"hospital": 0.9, "asc": 1.2, "office": 1.0}
    assert cfg.practice_type_weights == {"system": 0.7, "independent": 1.0}
    assert cfg.competitor_multiplier == 0.85 and cfg.customer_statuses == ("active",)
    text = default_config_text()
    assert "opportunity = potential x (1 - share)" in text and "Sequential attribution" in text
    # the dict view round-trips through the validator unchanged
    assert scoring_config_from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()
    assert yaml.safe_load(text)["specialty"]["weights"] == dict(cfg.specialty_weights)


def test_user_file_is_merged_over_the_defaults(tmp_path):
    path = tmp_path / "weights.yaml"
    path.write_text("setting:\n  weights:\n    asc: 1.35\npractice_type:\n  weights:\n    system: 0.5\n", "utf-8")
    cfg = load_scoring_config(path)
    assert cfg.source == str(path)
    assert cfg.setting_weights == {"hospital": 0.9, "asc": 1.35, "office": 1.0}
    assert cfg.practice_type_weights == {"system": 0.5, "independent": 1.0}
    assert cfg.size_cap == 1.5
    providers = mixed_providers()
    by_path = score_providers(providers, path)
    by_object = score_providers(providers, cfg)
    assert by_path.provider_scores.equals(by_object.provider_scores)
    assert by_path.summary["config"]["setting"]["weights"]["asc"] == 1.35
    assert by_path.summary["config_source"] == str(path)


def test_empty_user_file_gives_the_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing changed\n", "utf-8")
    assert load_scoring_config(path).to_dict() == load_scoring_config(None).to_dict()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"setting": {"weights": {"asc": "high"}}}, r"'setting\.weights\.asc' must be a number, got 'high'"),
        ({"practice_type": {"weights": {"system": None}}}, r"'practice_type\.weights\.system' must be a number"),
        ({"competition": {"present_multiplier": True}}, r"'competition\.present_multiplier' must be a number"),
        ({"specialty": {"weights": {"207X00000X": "1.0"}}}, r"'specialty\.weights\.207X00000X' must be a number"),
        ({"base_points": float("nan")}, r"'base_points' must be a number"),
        ({"setting": {"weights": {"asc": -0.1}}}, r"'setting\.weights\.asc' must be >= 0"),
        ({"customer_share": {"potential_revenue_per_point": 0}}, r"potential_revenue_per_point' must be > 0"),
        ({"weights": {"asc": 1}}, r"unknown configuration key 'weights'"),
        ({"setting": {"weights": {"ambulatory": 1.1}}}, r"unknown configuration key 'setting\.weights\.ambulatory'"),
        ({"setting": {"weight": {"asc": 1.1}}}, r"unknown configuration key 'setting\.weight'"),
        ({"setting": 1.2}, r"'setting' must be a mapping"),
        ({"specialty": {"weights": {"ortho": 1.0}}}, r"'specialty\.weights\.ortho': not a NUCC taxonomy code"),
        ({"attribution_order": ["setting", "specialty"]}, r"'attribution_order' must list each of"),
        ({"practice_size": {"floor": 2.0}}, r"practice_size\.cap \(1\.5\) must be >= practice_size\.floor"),
        (
            {"practice_type": {"use_hospital_affiliation": "yes"}},
            r"'practice_type\.use_hospital_affiliation' must be true or false",
        ),
        (
            {"customer_share": {"customer_statuses": []}},
            r"'customer_share\.customer_statuses' must be a non-empty list",
        ),
    ],
)
def test_invalid_configuration_names_the_key(overrides, message):
    with pytest.raises(ScoringConfigError, match=message):
        scoring_config_from_dict(overrides)


def test_invalid_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="scoring configuration file not found"):
        load_scoring_config(tmp_path / "absent.yaml")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("setting: [unclosed\n", "utf-8")
    with pytest.raises(ScoringConfigError, match="not valid YAML"):
        load_scoring_config(bad_yaml)
    a_list = tmp_path / "list.yaml"
    a_list.write_text("- 1\n- 2\n", "utf-8")
    with pytest.raises(ScoringConfigError, match="must be a mapping of keys, got list"):
        load_scoring_config(a_list)
    text_weight = tmp_path / "text.yaml"
    text_weight.write_text("procedure_volume:\n  cap: two\n", "utf-8")
    with pytest.raises(ScoringConfigError, match=r"'procedure_volume\.cap' must be a number, got 'two'"):
        load_scoring_config(text_weight)


def test_zero_weight_removes_a_setting_and_the_breakdown_still_adds_up():
    providers = mixed_providers()
    result = score_providers(providers, scoring_config_from_dict({"setting": {"weights": {"hospital": 0}}}))
    hospital = result.provider_scores.filter(pl.col("practice_setting") == "hospital")
    assert hospital.height > 0 and (hospital["opportunity_score"] == 0).all()
    total = hospital.select(pl.sum_horizontal(pl.col("^contrib_.*$"))).to_series()
    assert total.abs().max() <= 1e-12
