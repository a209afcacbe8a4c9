"""Rep and market events dropped as files into the events folder.

Layout of ``TERRITORY_EVENTS_DIR``::

    reps/    rep events: rep_joined, rep_left, territory_change, capacity_change
    market/  market events: new_asc, practice_acquisition

Each file is CSV (a header row, one event per row) or JSON (one object, a list
of objects, or ``{"events": [...]}``).  Every event gets a stable
``event_id``: the ``event_id`` field when given, otherwise
``<file name>:<row>``.  A file that cannot be parsed, or that holds an invalid
event, is *malformed*: the whole file is reported and skipped, so it never
half-applies and never blocks the files after it.

Events are ordered by ``(effective_date, file name, row)``; an event applies to
a refresh quarter when its effective date falls before the quarter's end.  The
effective date defaults to the day the file was written.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

REP_EVENT_TYPES = ("rep_joined", "rep_left", "territory_change", "capacity_change")
MARKET_EVENT_TYPES = ("new_asc", "practice_acquisition")
EVENT_KINDS = {"reps": REP_EVENT_TYPES, "market": MARKET_EVENT_TYPES}
EVENT_SUFFIXES = (".csv", ".json")


class MalformedEventFile(ValueError):
    """An event file that cannot be applied; the message says why."""


@dataclass(frozen=True)
class Event:
    event_id: str
    event_type: str
    effective_date: dt.date
    file_name: str
    row: int
    fields: dict = field(default_factory=dict, compare=False)

    @property
    def order_key(self) -> tuple:
        return (self.effective_date, self.file_name, self.row)

    def get(self, name: str, default=None):
        value = self.fields.get(name, default)
        return default if value in (None, "") else value


@dataclass(frozen=True)
class EventFile:
    """An event file seen in the folder: its identity, modification time and arrival time.

    ``arrived_ns`` is the later of the modification and status-change times: a
    file moved or copied into the folder with its old modification time kept
    (``mv``, ``cp -p``, an unzipped archive) still arrives now, because
    renaming or creating it changes its status time.
    """

    path: Path
    kind: str
    mtime_ns: int
    arrived_ns: int = 0

    @property
    def cursor_key(self) -> tuple[int, str]:
        """Order of the events' own time (modification, then name)."""
        return (self.mtime_ns, self.path.name)

    @property
    def arrival_key(self) -> tuple[int, str]:
        """Order of arrival in the folder (the sensors' high-water mark)."""
        return (max(self.arrived_ns, self.mtime_ns), self.path.name)


def list_event_files(events_dir: Path, kind: str) -> list[EventFile]:
    """Event files of one kind (``reps`` or ``market``), oldest first."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    folder = Path(events_dir) / kind
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        if p.is_file() and p.suffix.lower() in EVENT_SUFFIXES and not p.name.startswith("."):
            st = p.stat()
            found.append(EventFile(p, kind, st.st_mtime_ns, max(st.st_mtime_ns, st.st_ctime_ns)))
    return sorted(found, key=lambda f: f.cursor_key)


def _records(path: Path, text: str) -> list[dict]:
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MalformedEventFile(f"{path.name}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
        if isinstance(data, dict) and "events" in data:
            data = data["events"]
        if isinstance(data, dict):
            data = [data]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise MalformedEventFile(f"{path.name}: JSON must be an object, a list of objects or {{'events': [...]}}")
        return data
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "event_type" not in [f.strip() for f in reader.fieldnames]:
        raise MalformedEventFile(f"{path.name}: CSV needs a header row with an event_type column")
    rows = []
    for row in reader:
        if None in row:
            raise MalformedEventFile(f"{path.name}: line {reader.line_num} has more fields than the header")
        rows.append({k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items()})
    return rows


def _date(value, path: Path, row: int) -> dt.date | None:
    if value in (None, ""):
        return None
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError as exc:
        raise MalformedEventFile(f"{path.name} row {row}: effective_date {value!r} is not YYYY-MM-DD") from exc


def _require(record: dict, names: tuple[str, ...], path: Path, row: int, event_type: str) -> None:
    missing = [n for n in names if record.get(n) in (None, "", [])]
    if missing:
        raise MalformedEventFile(f"{path.name} row {row}: {event_type} event needs {', '.join(missing)}")


def _check_capacity(record: dict, path: Path, row: int) -> None:
    try:
        capacity = float(record["capacity"])
    except (TypeError, ValueError) as exc:
        raise MalformedEventFile(f"{path.name} row {row}: capacity {record['capacity']!r} is not a number") from exc
    if not 0 < capacity <= 2:
        raise MalformedEventFile(f"{path.name} row {row}: capacity {capacity} must be in (0, 2]")


def _check_coordinates(record: dict, path: Path, row: int) -> None:
    for name, limit in (("home_latitude", 90.0), ("home_longitude", 180.0)):
        value = record.get(name)
        if value in (None, ""):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise MalformedEventFile(f"{path.name} row {row}: {name} {value!r} is not a number") from exc
        if not -limit <= number <= limit:
            raise MalformedEventFile(f"{path.name} row {row}: {name} {number} is out of range")


def _validate(record: dict, kind: str, path: Path, row: int) -> None:
    event_type = record.get("event_type")
    if event_type not in EVENT_KINDS[kind]:
        raise MalformedEventFile(
            f"{path.name} row {row}: event_type {event_type!r} is not one of {', '.join(EVENT_KINDS[kind])}"
        )
    if event_type == "rep_joined":
        _require(record, ("rep_id", "rep_name"), path, row, event_type)
        has_zip = record.get("home_zip") not in (None, "")
        has_coords = record.get("home_latitude") not in (None, "") and record.get("home_longitude") not in (None, "")
        if not (has_zip or has_coords):
            raise MalformedEventFile(f"{path.name} row {row}: rep_joined needs home_zip or home_latitude/home_longitude")
        _check_coordinates(record, path, row)
        if record.get("capacity") not in (None, ""):
            _check_capacity(record, path, row)
    elif event_type == "rep_left":
        _require(record, ("rep_id",), path, row, event_type)
    elif event_type == "capacity_change":
        _require(record, ("rep_id", "capacity"), path, row, event_type)
        _check_capacity(record, path, row)
    elif event_type == "territory_change":
        _require(record, ("rep_id",), path, row, event_type)
        if not (record.get("npis") or record.get("home_zip")):
            raise MalformedEventFile(f"{path.name} row {row}: territory_change needs npis (accounts to move) or home_zip")
        _check_coordinates(record, path, row)
    elif event_type == "new_asc":
        _require(record, ("address_line_1", "zip5"), path, row, event_type)
    elif event_type == "practice_acquisition":
        _require(record, ("acquirer",), path, row, event_type)
        if not (record.get("npis") or (record.get("address_line_1") and record.get("zip5"))):
            raise MalformedEventFile(f"{path.name} row {row}: practice_acquisition needs npis or address_line_1 and zip5")


def npis_of(event: Event) -> list[str]:
    """The NPI list of an event, from a JSON list or a ``|``/``;``-separated CSV field."""
    value = event.get("npis", [])
    if isinstance(value, str):
        value = [v for part in value.replace(";", "|").split("|") for v in [part.strip()] if v]
    return [str(v).strip() for v in value]


def read_event_file(event_file: EventFile) -> list[Event]:
    """Parse and validate every event of a file, or raise ``MalformedEventFile``."""
    path = event_file.path
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise MalformedEventFile(f"{path.name}: cannot be read ({exc})") from exc
    records = _records(path, text)
    if not records:
        raise MalformedEventFile(f"{path.name}: holds no event")
    received = dt.datetime.fromtimestamp(event_file.mtime_ns / 1e9, tz=dt.timezone.utc).date()
    events = []
    seen: set[str] = set()
    for row, record in enumerate(records, start=1):
        _validate(record, event_file.kind, path, row)
        event_id = str(record.get("event_id") or f"{path.name}:{row}")
        if event_id in seen:
            raise MalformedEventFile(f"{path.name} row {row}: event_id {event_id!r} appears twice")
        seen.add(event_id)
        effective = _date(record.get("effective_date"), path, row) or received
        events.append(Event(event_id, record["event_type"], effective, path.name, row, dict(record)))
    return events


@dataclass(frozen=True)
class EventScan:
    events: list[Event]
    malformed: list[tuple[str, str]]  # (file name, reason)


def scan_events(events_dir: Path, kind: str, *, before: dt.date | None = None) -> EventScan:
    """All valid events of one kind, ordered, with the malformed files reported.

    ``before`` keeps only events effective before that day (a quarter's end).
    Event ids must be unique across files; a file repeating an id already seen
    is reported as malformed.
    """
    events: list[Event] = []
    malformed: list[tuple[str, str]] = []
    seen: set[str] = set()
    for event_file in sorted(list_event_files(events_dir, kind), key=lambda f: f.path.name):
        try:
            parsed = read_event_file(event_file)
        except MalformedEventFile as exc:
            malformed.append((event_file.path.name, str(exc)))
            continue
        duplicate = next((e.event_id for e in parsed if e.event_id in seen), None)
        if duplicate:
            malformed.append((event_file.path.name, f"{event_file.path.name}: event_id {duplicate!r} was already used"))
            continue
        seen.update(e.event_id for e in parsed)
        events.extend(e for e in parsed if before is None or e.effective_date < before)
    events.sort(key=lambda e: e.order_key)
    return EventScan(events, malformed)
