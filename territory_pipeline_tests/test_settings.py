"""Settings from the environment: typed defaults, clear errors, target universe resolution."""

import pytest

from territory_pipeline.settings import Settings
from territory_pipeline.universe.provider_sources import target_codes, taxonomy_for


def test_defaults_work_offline_with_no_settings():
    settings = Settings.from_env({})
    assert settings.provider_source == "sample" and settings.geocoder == "zip"
    assert settings.taxonomy_codes == ("207XS0117X", "207T00000X", "207X00000X")
    assert settings.duckdb_path.endswith("data/territory.duckdb")


def test_values_are_parsed_and_typed():
    settings = Settings.from_env(
        {"TERRITORY_TAXONOMY_CODES": " 207T00000X , 207X00000X ", "TERRITORY_H3_RESOLUTION": "6", "TERRITORY_INCLUDE_ORGANIZATIONS": "yes"}
    )
    assert settings.taxonomy_codes == ("207T00000X", "207X00000X")
    assert settings.h3_resolution == 6 and settings.include_organizations is True


@pytest.mark.parametrize(
    "env, message",
    [
        ({"TERRITORY_PROVIDER_SOURCE": "ftp"}, "sample, nppes or api"),
        ({"TERRITORY_PROVIDER_SOURCE": "nppes"}, "NPPES_SOURCE"),
        ({"TERRITORY_GEOCODER": "google"}, "zip or census"),
        ({"TERRITORY_H3_RESOLUTION": "seven"}, "TERRITORY_H3_RESOLUTION"),
        ({"TERRITORY_INCLUDE_ORGANIZATIONS": "maybe"}, "TERRITORY_INCLUDE_ORGANIZATIONS"),
        ({"TERRITORY_PRACTICE_SETTINGS": "hospital,clinic"}, "clinic"),
        ({"TERRITORY_PROCEDURES_FILE": "mup.csv"}, "TERRITORY_HCPCS_CODES"),
        ({"TERRITORY_MIN_PROCEDURE_VOLUME": "10"}, "TERRITORY_PROCEDURES_FILE"),
    ],
)
def test_bad_values_fail_clearly(env, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)


def test_target_universe_by_code_classification_or_specialization():
    codes = Settings.from_env({"TERRITORY_TAXONOMY_CODES": "207T00000X", "TERRITORY_TAXONOMY_SPECIALIZATIONS": "Orthopaedic Surgery of the Spine"})
    assert target_codes(codes, taxonomy_for(codes)) == ["207T00000X", "207XS0117X"]
    classes = Settings.from_env({"TERRITORY_TAXONOMY_CODES": "207T00000X", "TERRITORY_TAXONOMY_CLASSIFICATIONS": "orthopaedic surgery"})
    resolved = target_codes(classes, taxonomy_for(classes))
    assert {"207X00000X", "207XS0117X", "207XX0005X", "207T00000X"} <= set(resolved)
    unknown = Settings.from_env({"TERRITORY_TAXONOMY_CODES": "999X00000X"})
    with pytest.raises(ValueError, match="999X00000X"):
        target_codes(unknown, taxonomy_for(unknown))


def test_full_nucc_file_from_a_path(reference_dir):
    settings = Settings.from_env({"NUCC_TAXONOMY_SOURCE": str(reference_dir / "nucc_taxonomy_251.csv"), "TERRITORY_TAXONOMY_CLASSIFICATIONS": "Dermatology"})
    taxonomy = taxonomy_for(settings)
    assert taxonomy.height == 883
    assert "207NS0135X" in target_codes(settings, taxonomy)
