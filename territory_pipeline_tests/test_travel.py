"""Travel providers: haversine estimate, OSRM table client against a local mimic."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from osrm_mimic import OsrmMimic
from territory_pipeline.geography.travel import (
    HaversineTravelEstimate,
    OsrmError,
    OsrmTravelTime,
    TravelTimeProvider,
    haversine_matrix_miles,
    haversine_miles,
    make_travel_provider,
    max_straight_line_miles,
    paired_travel,
)

PHOENIX = (33.4484, -112.0740)
TUCSON = (32.2226, -110.9747)
ALBUQUERQUE = (35.0844, -106.6504)
DALLAS = (32.7767, -96.7970)


def _grid(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(np.column_stack([rng.uniform(31.0, 36.0, n), rng.uniform(-113.0, -105.0, n)]), 6)


def test_haversine_known_distances() -> None:
    assert 105 <= haversine_miles(*PHOENIX, *TUCSON) <= 120
    assert 320 <= haversine_miles(*PHOENIX, *ALBUQUERQUE) <= 340
    assert 870 <= haversine_miles(*PHOENIX, *DALLAS) <= 900
    assert haversine_miles(*PHOENIX, *PHOENIX) == 0.0
    m = haversine_matrix_miles(np.array([PHOENIX, TUCSON]), np.array([TUCSON, ALBUQUERQUE, DALLAS]))
    assert m.shape == (2, 3)
    assert m[0, 0] == pytest.approx(haversine_miles(*PHOENIX, *TUCSON))


def test_estimate_phoenix_tucson_minutes_and_bound() -> None:
    est = HaversineTravelEstimate()
    miles, minutes = est.matrix(np.array([PHOENIX]), np.array([TUCSON]))
    assert 90 <= minutes[0, 0] <= 180
    assert miles[0, 0] == pytest.approx(haversine_miles(*PHOENIX, *TUCSON) * 1.25)
    assert isinstance(est, TravelTimeProvider)
    # the straight-line bound is exact for the estimate: a point at the bound takes the full time
    assert max_straight_line_miles(est, 60) == pytest.approx(36.0)
    pm, pt = est.paired(np.array([PHOENIX, TUCSON]), np.array([TUCSON, PHOENIX]))
    assert pt[0] == pytest.approx(minutes[0, 0]) and pt[1] == pytest.approx(minutes[0, 0])


def test_estimate_rejects_bad_parameters_and_points() -> None:
    with pytest.raises(ValueError, match="circuity"):
        HaversineTravelEstimate(circuity=0.9)
    with pytest.raises(ValueError, match="mph"):
        HaversineTravelEstimate(mph=0)
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        HaversineTravelEstimate().matrix(np.zeros((2, 3)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="NaN"):
        HaversineTravelEstimate().matrix(np.array([[np.nan, 1.0]]), np.zeros((1, 2)))


def test_make_travel_provider_picks_osrm_only_with_url() -> None:
    assert isinstance(make_travel_provider(None), HaversineTravelEstimate)
    assert isinstance(make_travel_provider("  "), HaversineTravelEstimate)
    osrm = make_travel_provider("http://127.0.0.1:5000/", max_coordinates=10)
    assert isinstance(osrm, OsrmTravelTime) and osrm.base_url == "http://127.0.0.1:5000"
    with pytest.raises(ValueError, match="http"):
        OsrmTravelTime("localhost:5000")


def test_osrm_matrix_matches_mimic_model_and_chunking_is_transparent() -> None:
    origins, destinations = _grid(37, 1), _grid(41, 2)
    with OsrmMimic(factor=1.3, mph=50.0, max_table_size=100) as mimic:
        whole = OsrmTravelTime(mimic.url, max_coordinates=100).matrix(origins, destinations)
        assert mimic.coordinate_counts == [78]
        chunked_client = OsrmTravelTime(mimic.url, max_coordinates=10)
        chunked = chunked_client.matrix(origins, destinations)
        assert max(mimic.coordinate_counts[1:]) <= 10 and len(mimic.coordinate_counts) > 20
    np.testing.assert_allclose(chunked[0], whole[0])
    np.testing.assert_allclose(chunked[1], whole[1])
    expected_miles = haversine_matrix_miles(origins, destinations) * 1.3
    np.testing.assert_allclose(whole[0], expected_miles, rtol=1e-4)
    np.testing.assert_allclose(whole[1], expected_miles / 50.0 * 60.0, rtol=1e-3)


def test_osrm_too_many_coordinates_surfaces_as_error() -> None:
    with OsrmMimic(max_table_size=20) as mimic:
        with pytest.raises(OsrmError, match="TooBig") as info:
            OsrmTravelTime(mimic.url, max_coordinates=30).matrix(_grid(15), _grid(15, 9))
    assert info.value.code == "TooBig"


def test_osrm_unreachable_points_are_infinite() -> None:
    points = _grid(4)
    with OsrmMimic() as mimic:
        mimic.unreachable.add((float(points[3, 0]), float(points[3, 1])))
        miles, minutes = OsrmTravelTime(mimic.url).matrix(points[:2], points)
    assert np.isinf(minutes[:, 3]).all() and np.isinf(miles[:, 3]).all()
    assert np.isfinite(minutes[:, :3]).all()


def test_osrm_error_codes_raise_with_message() -> None:
    with OsrmMimic() as mimic:
        client = OsrmTravelTime(mimic.url, retry_wait_seconds=0)
        mimic.fail_next(1, status=400, code="InvalidQuery", message="Query string malformed close to position 7")
        with pytest.raises(OsrmError, match="InvalidQuery: Query string malformed"):
            client.matrix(_grid(2), _grid(2, 5))
        mimic.fail_next(1, status=200, code="NoTable", message="No table found")
        with pytest.raises(OsrmError, match="NoTable"):
            client.matrix(_grid(2), _grid(2, 5))
        assert client.requests_sent == 2  # client errors are not retried


def test_osrm_retries_5xx_then_succeeds_or_gives_up() -> None:
    with OsrmMimic() as mimic:
        client = OsrmTravelTime(mimic.url, attempts=3, retry_wait_seconds=0)
        mimic.fail_next(2, status=503)
        _, minutes = client.matrix(_grid(3), _grid(2, 5))
        assert minutes.shape == (3, 2) and client.requests_sent == 3
        mimic.fail_next(3, status=503)
        with pytest.raises(OsrmError, match="HTTP503"):
            client.matrix(_grid(3), _grid(2, 5))
        assert client.requests_sent == 6


def test_osrm_timeout_is_retried() -> None:
    class FlakySession(requests.Session):
        def __init__(self) -> None:
            super().__init__()
            self.timeouts_left = 1

        def get(self, *args, **kwargs):
            if self.timeouts_left:
                self.timeouts_left -= 1
                raise requests.Timeout("simulated timeout")
            return super().get(*args, **kwargs)

    with OsrmMimic() as mimic:
        client = OsrmTravelTime(mimic.url, retry_wait_seconds=0, session=FlakySession())
        _, minutes = client.matrix(_grid(2), _grid(2, 5))
    assert client.requests_sent == 2 and np.isfinite(minutes).all()


def test_paired_travel_falls_back_to_matrix_per_origin() -> None:
    origins = np.array([PHOENIX, PHOENIX, TUCSON])
    destinations = np.array([TUCSON, ALBUQUERQUE, PHOENIX])
    with OsrmMimic(factor=1.25, mph=45.0) as mimic:
        client = OsrmTravelTime(mimic.url)
        miles, minutes = paired_travel(client, origins, destinations)
        assert client.requests_sent == 2  # one per distinct origin
    exp_miles, exp_minutes = HaversineTravelEstimate().paired(origins, destinations)
    np.testing.assert_allclose(miles, exp_miles, rtol=1e-4)
    np.testing.assert_allclose(minutes, exp_minutes, rtol=1e-3)
