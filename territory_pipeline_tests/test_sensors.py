"""Event sensors: one run per new event, idempotent ticks, malformed files skipped."""

import json
import os

import dagster as dg
import pytest

from territory_pipeline.defs.automation import current_quarter_key, market_event_sensor, rep_turnover_sensor


def write(path, text, mtime=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime is not None:
        os.utime(path, ns=(mtime, mtime))
    return path


def tick(sensor, cursor=None):
    return sensor(dg.build_sensor_context(cursor=cursor))


@pytest.fixture
def events_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TERRITORY_EVENTS_DIR", str(tmp_path))
    return tmp_path


def test_each_new_rep_event_launches_one_run_and_a_second_tick_does_nothing(events_dir):
    write(events_dir / "reps" / "a.json", json.dumps({"event_id": "e1", "event_type": "rep_left", "rep_id": "REP07"}), 1_000)
    write(
        events_dir / "reps" / "b.csv",
        "event_type,rep_id,rep_name,home_zip\nrep_joined,REP21,Ana Diaz,85004\ncapacity_change,REP03,,\n",
        2_000,
    )
    # b.csv's capacity_change lacks a capacity: the whole file is malformed and skipped.
    result = tick(rep_turnover_sensor)
    assert [r.run_key for r in result.run_requests] == ["rep-event-e1"]
    request = result.run_requests[0]
    assert request.partition_key == current_quarter_key()
    assert request.run_config["ops"]["territory_plan"]["config"] == {"trigger": "rep_event", "event_id": "e1", "mode": "micro"}
    cursor = json.loads(result.cursor)
    # the mark is the latest arrival (status-change time: the files were just written)
    assert set(cursor) == {"arrived_ns", "name"}
    latest = max((p.stat().st_ctime_ns, p.name) for p in (events_dir / "reps").iterdir())
    assert (cursor["arrived_ns"], cursor["name"]) == latest
    again = tick(rep_turnover_sensor, result.cursor)
    assert not again.run_requests
    assert "no new" in again.skip_reason.skip_message


def test_a_file_moved_in_with_an_old_modification_time_still_launches_a_run(events_dir, tmp_path_factory):
    write(events_dir / "reps" / "a.json", json.dumps({"event_id": "e1", "event_type": "rep_left", "rep_id": "REP07"}), 2_000_000_000)
    first = tick(rep_turnover_sensor)
    assert [r.run_key for r in first.run_requests] == ["rep-event-e1"]
    # prepared elsewhere long ago, then moved into the folder (mv keeps the modification time)
    outside = write(tmp_path_factory.mktemp("outbox") / "old.json",
                    json.dumps({"event_id": "e0", "event_type": "rep_left", "rep_id": "REP03"}), 1_000)
    outside.rename(events_dir / "reps" / "old.json")
    assert (events_dir / "reps" / "old.json").stat().st_mtime_ns == 1_000
    second = tick(rep_turnover_sensor, first.cursor)
    assert [r.run_key for r in second.run_requests] == ["rep-event-e0"]
    assert not tick(rep_turnover_sensor, second.cursor).run_requests
    # a cursor from before arrival times were kept (a modification-time mark) still works
    legacy = json.dumps({"mtime_ns": 0, "name": ""})
    assert sorted(r.run_key for r in tick(rep_turnover_sensor, legacy).run_requests) == ["rep-event-e0", "rep-event-e1"]


def test_a_malformed_file_never_blocks_later_events(events_dir):
    write(events_dir / "reps" / "bad.json", "{not json", 1_000)
    first = tick(rep_turnover_sensor)
    assert not first.run_requests
    assert "malformed" in first.skip_reason.skip_message
    write(events_dir / "reps" / "good.json", json.dumps([{"event_type": "rep_left", "rep_id": "REP01"}]), 3_000)
    second = tick(rep_turnover_sensor, first.cursor)
    assert [r.run_key for r in second.run_requests] == ["rep-event-good.json:1"]


def test_a_rewritten_file_keeps_its_run_keys(events_dir):
    path = write(events_dir / "reps" / "a.json", json.dumps({"event_id": "e9", "event_type": "rep_left", "rep_id": "REP02"}), 1_000)
    first = tick(rep_turnover_sensor)
    os.utime(path, ns=(5_000, 5_000))
    second = tick(rep_turnover_sensor, first.cursor)
    # Seen again after a touch, but with the same run key: Dagster launches a run key only once.
    assert [r.run_key for r in second.run_requests] == [r.run_key for r in first.run_requests] == ["rep-event-e9"]


def test_market_events_go_to_the_market_sensor_only(events_dir):
    write(
        events_dir / "market" / "asc.json",
        json.dumps({"event_id": "m1", "event_type": "new_asc", "address_line_1": "1 Main St", "zip5": "85004"}),
        1_000,
    )
    assert not tick(rep_turnover_sensor).run_requests
    result = tick(market_event_sensor)
    assert [r.run_key for r in result.run_requests] == ["market-event-m1"]
    assert result.run_requests[0].tags["event_type"] == "new_asc"
