"""Evaluation of any territory plan (engine, greedy, or a peer's labels) with one code path.

Measures (per territory, then plan-wide):

* deviation (w_k - mu_k) / mu_k with mu_k = W x capacity_k / sum(capacity);
  imbalance = max |deviation|; max_min_ratio and cv of w_k / mu_k.
* provider_imbalance, workload_imbalance: the same for provider counts and
  workload, against capacity-proportional shares of their totals.
* workload hours per quarter = sum over providers of visits x (call hours +
  one-way travel hours from the rep base), travel = great-circle miles x
  circuity / mph.  The base is the rep's home, else the territory's
  opportunity-weighted centroid.  mean/max_travel_miles use the same road
  estimate (great-circle x circuity).
* compactness_mean_miles: opportunity-weighted mean great-circle distance from
  each provider (or unit centroid when no providers) to its territory's
  opportunity-weighted centroid; inertia_sq_miles: the weighted mean of the
  squared distance (the moment of inertia per unit of opportunity).
* metro_splits: metros (cbsa_code) whose units span more than one territory;
  metros_split_beyond_bound: those split although lighter than (1+τ)·mean mu,
  or split into more territories than ceil(M / ((1+τ)·mean mu)).
* granularity_bound / best_partition_bound: see :mod:`.bounds`; gap =
  imbalance - granularity_bound, partition_gap = imbalance - best_partition_bound.
* neighbourhood_bound: :func:`.bounds.neighbourhood_bound` on the groups the
  metro rule keeps together (light metros whole, heavy metros in at most
  ceil(M / ((1+τ)·mean mu)) territories) and the plan's adjacency: a lower bound
  for connected plans that follow the rule; neighbourhood_gap = imbalance - it.
  When it exceeds the tolerance, the explanation names the group that sets it
  and its neighbours.
* balance_note (per territory; null within the tolerance): why a territory
  beyond the tolerance stays there: what it holds, and whether no single move
  of a piece to or from a neighbour would lower the larger deviation of the
  two, every such move cuts the giver apart, or one exists that the search
  missed (:func:`_why_off_target`); the explanation quotes the three worst.
* disruption (when ``previous`` is given): moved_opportunity_share,
  moved_provider_share, least_move_share (:func:`.bounds.least_move` over
  the same rows) and disruption_ratio = moved / least (None when least is 0);
  least_move_flow_share / disruption_ratio_flow: the same against the
  contiguous estimate of :func:`.bounds.least_move_flow` (weight may only pass
  between neighbouring territories of the previous plan).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .bounds import (
    best_partition_bound,
    granularity_bound,
    least_move,
    least_move_flow,
    neighbourhood_bound,
)
from .geometry import haversine_miles, hull_area, project
from .inputs import territory_id
from .model import BalanceSettings

TERRITORY_COLUMNS = (
    "territory_id",
    "rep_id",
    "rep_name",
    "opportunity_score",
    "target_score",
    "deviation",
    "provider_count",
    "workload_hours",
    "unit_count",
    "metro_count",
    "split_metro_count",
    "mean_travel_miles",
    "max_travel_miles",
    "area_sq_miles",
    "is_contiguous",
    "base_latitude",
    "base_longitude",
    "balance_note",
)

_SPLIT_SUFFIX = r"#\d+$"


def evaluate_plan(
    units: pl.DataFrame,
    unit_assignments: pl.DataFrame,
    reps: pl.DataFrame,
    adjacency: pl.DataFrame,
    providers: pl.DataFrame | None = None,
    previous: pl.DataFrame | None = None,
    settings: BalanceSettings | None = None,
    bound_weights: np.ndarray | None = None,
    base_units: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Territory table and plan metrics for an assignment of ``units`` to reps.

    units: unit_id, weight, provider_count, latitude, longitude, cbsa_code.
    unit_assignments: unit_id, rep_id (territory_id optional); every unit once.
    reps: rep_id, rep_name, home_latitude, home_longitude, capacity.
    adjacency: unit_id, neighbor_unit_id (contiguity is judged on it).
    providers: npi, unit_id, latitude, longitude, weight (optional; finer travel/area).
    previous: (npi, rep_id) or (unit_id, rep_id) of an earlier plan (optional).
    bound_weights: weights of the indivisible pieces the plan was built from
        (the engine passes its atoms: whole light metros, heavy-metro cells);
        the lower bounds are computed on them (default: the units' weights).
    base_units: unit_id, base_unit_id: the input unit each unit was cut from
        (the engine passes it for heavy units cut into pieces); default: none
        was cut.  The neighbourhood bound treats a cut unit as one.
    """
    settings = settings if settings is not None else BalanceSettings()
    from .inputs import normalize_reps, normalize_units

    units = normalize_units(units)
    reps = normalize_reps(reps)
    asg = unit_assignments.select(
        pl.col("unit_id").cast(pl.Utf8), pl.col("rep_id").cast(pl.Utf8)
    )
    if asg["unit_id"].is_duplicated().any():
        raise ValueError("unit_assignments lists a unit more than once")
    missing = units.join(asg, on="unit_id", how="anti")
    if len(missing):
        raise ValueError(
            f"{len(missing)} unit(s) have no assignment, e.g. {missing['unit_id'].head(3).to_list()}"
        )
    unknown = asg.filter(~pl.col("rep_id").is_in(reps["rep_id"].implode()))
    if len(unknown):
        raise ValueError(
            f"unit_assignments name unknown rep_id(s): {unknown['rep_id'].unique().head(3).to_list()}"
        )
    k = len(reps)
    rep_ids = reps["rep_id"].to_list()
    rep_index = {r: i for i, r in enumerate(rep_ids)}
    u = units.join(asg, on="unit_id", how="left").sort("unit_id")
    lab = np.array([rep_index[r] for r in u["rep_id"].to_list()], dtype=np.int64)
    w = u["weight"].to_numpy()
    pc = u["provider_count"].to_numpy().astype(float)
    cap = reps["capacity"].to_numpy()
    total = float(w.sum())
    mu = total * cap / cap.sum()
    tw = np.bincount(lab, weights=w, minlength=k)
    tp = np.bincount(lab, weights=pc, minlength=k)
    dev = (tw - mu) / mu

    # points: providers when given, else unit centroids weighted by provider count
    if providers is not None and len(providers):
        pts = providers.select(
            pl.col("unit_id").cast(pl.Utf8),
            "latitude",
            "longitude",
            pl.col("weight").cast(pl.Float64),
        ).join(u.select("unit_id", "rep_id"), on="unit_id", how="left")
        if pts["rep_id"].null_count():
            raise ValueError("providers reference units that are not in units")
        plab = np.array([rep_index[r] for r in pts["rep_id"].to_list()], dtype=np.int64)
        plat, plon = pts["latitude"].to_numpy(), pts["longitude"].to_numpy()
        pw, pcount = pts["weight"].to_numpy(), np.ones(len(pts))
    else:
        plab, plat, plon = lab, u["latitude"].to_numpy(), u["longitude"].to_numpy()
        pw, pcount = w, pc
    cw = np.bincount(plab, weights=pw, minlength=k)
    cn = np.bincount(plab, weights=np.ones(len(plab)), minlength=k)
    safe = np.where(cw > 0, cw, 1.0)
    clat = np.where(
        cw > 0,
        np.bincount(plab, weights=pw * plat, minlength=k) / safe,
        np.bincount(plab, weights=plat, minlength=k) / np.maximum(cn, 1),
    )
    clon = np.where(
        cw > 0,
        np.bincount(plab, weights=pw * plon, minlength=k) / safe,
        np.bincount(plab, weights=plon, minlength=k) / np.maximum(cn, 1),
    )
    hlat, hlon = reps["home_latitude"].to_numpy(), reps["home_longitude"].to_numpy()
    has_home = ~np.isnan(hlat.astype(float))
    blat = np.where(has_home, hlat, clat)
    blon = np.where(has_home, hlon, clon)
    road = haversine_miles(plat, plon, blat[plab], blon[plab]) * settings.circuity
    visits = settings.visit_frequency_per_quarter
    hours = (
        pcount * visits * (settings.call_minutes / 60.0 + road / settings.travel_mph)
    )
    twl = np.bincount(plab, weights=hours, minlength=k)
    travel_sum = np.bincount(plab, weights=road * pcount, minlength=k)
    mean_travel = np.where(
        tp > 0,
        travel_sum / np.maximum(np.bincount(plab, weights=pcount, minlength=k), 1e-12),
        0.0,
    )
    max_travel = np.zeros(k)
    np.maximum.at(max_travel, plab, np.where(pcount > 0, road, 0.0))
    dcen = haversine_miles(plat, plon, clat[plab], clon[plab])
    wsum = max(float(pw.sum()), 1e-12)
    compact_mean = float((pw * dcen).sum() / wsum)
    inertia = float((pw * dcen**2).sum() / wsum)

    xy = project(plat, plon)
    order = np.argsort(plab, kind="stable")
    bounds = np.searchsorted(plab[order], np.arange(k + 1))
    area = np.array([hull_area(xy[order[bounds[t] : bounds[t + 1]]]) for t in range(k)])

    contiguous = _contiguity(u["unit_id"], lab, adjacency, k)

    # metros
    metro = u.select("cbsa_code", "weight").with_columns(pl.Series("t", lab))
    metro = metro.filter(pl.col("cbsa_code").is_not_null())
    cap_w = (1 + settings.tolerance) * float(mu.mean())
    per_metro = metro.group_by("cbsa_code").agg(
        pl.col("weight").sum().alias("m"), pl.col("t").n_unique().alias("parts")
    )
    split = per_metro.filter(pl.col("parts") > 1)
    beyond = split.filter(
        (pl.col("m") <= cap_w) | (pl.col("parts") > (pl.col("m") / cap_w).ceil())
    )
    split_codes = set(split["cbsa_code"].to_list())
    metro_count = np.zeros(k, dtype=np.int64)
    split_count = np.zeros(k, dtype=np.int64)
    for code, t in metro.select("cbsa_code", "t").unique().iter_rows():
        metro_count[t] += 1
        split_count[t] += code in split_codes

    territories = pl.DataFrame(
        {
            "territory_id": [territory_id(r) for r in rep_ids],
            "rep_id": rep_ids,
            "rep_name": reps["rep_name"].to_list(),
            "opportunity_score": tw,
            "target_score": mu,
            "deviation": dev,
            "provider_count": tp.round().astype(np.int64),
            "workload_hours": twl,
            "unit_count": np.bincount(lab, minlength=k).astype(np.int64),
            "metro_count": metro_count,
            "split_metro_count": split_count,
            "mean_travel_miles": mean_travel,
            "max_travel_miles": max_travel,
            "area_sq_miles": area,
            "is_contiguous": contiguous,
            "base_latitude": blat.astype(float),
            "base_longitude": blon.astype(float),
        },
        schema_overrides={"rep_name": pl.Utf8},
    )

    ratio = tw / mu
    share = cap / cap.sum()
    ptarget, wtarget = share * tp.sum(), share * twl.sum()
    pieces = w if bound_weights is None else np.asarray(bound_weights, dtype=float)
    gb = granularity_bound(pieces, mu)
    bb = best_partition_bound(pieces, mu)
    imbalance = float(np.max(np.abs(dev)))
    disconnected = int((~contiguous).sum())
    metrics: dict[str, Any] = {
        "territories": k,
        "units": len(u),
        "imbalance": imbalance,
        "max_min_ratio": float(ratio.max() / ratio.min())
        if ratio.min() > 0
        else math.inf,
        "cv": float(ratio.std() / ratio.mean()),
        "provider_imbalance": float(
            np.max(np.abs(tp - ptarget) / np.maximum(ptarget, 1e-12))
        ),
        "workload_imbalance": float(
            np.max(np.abs(twl - wtarget) / np.maximum(wtarget, 1e-12))
        ),
        "granularity_bound": gb,
        "best_partition_bound": bb,
        "gap": imbalance - gb,
        "partition_gap": imbalance - bb,
        "compactness_mean_miles": compact_mean,
        "inertia_sq_miles": inertia,
        "mean_travel_miles": float((road * pcount).sum() / max(pcount.sum(), 1e-12)),
        "max_travel_miles": float(max_travel.max()),
        "metro_splits": len(split),
        "metros_split_beyond_bound": len(beyond),
        "disconnected_territories": disconnected,
        "feasible": bool(imbalance <= settings.tolerance + 1e-9 and disconnected == 0),
    }
    nb, nb_text = _neighbourhood(u, adjacency, mu, cap_w, settings, base_units)
    metrics["neighbourhood_bound"] = nb
    metrics["neighbourhood_gap"] = imbalance - nb
    metrics.update(
        _disruption(u, lab, reps, mu, providers, previous, adjacency, settings)
    )
    metrics["explanation"] = _explain(metrics, u, w, mu, settings, nb_text)
    blocked = _why_off_target(u, lab, adjacency, tw, mu, cap_w, settings.tolerance)
    if blocked:
        metrics["explanation"] += " " + " ".join(list(blocked.values())[:3])
    territories = territories.with_columns(
        pl.Series("balance_note", [blocked.get(t) for t in range(k)], dtype=pl.Utf8)
    ).select(TERRITORY_COLUMNS)
    return territories, metrics


def _neighbourhood(
    u: pl.DataFrame,
    adjacency: pl.DataFrame,
    mu: np.ndarray,
    cap_w: float,
    settings: BalanceSettings,
    base_units: pl.DataFrame | None,
) -> tuple[float, str]:
    """The neighbourhood bound (:func:`.bounds.neighbourhood_bound`) and a sentence naming its cause.

    Groups are metros when metros are kept whole (else units), with the pieces of
    a cut unit joined back (``base_units``); a group heavier than cap_w may span
    ceil(weight / cap_w) territories, any other is whole.
    """
    if base_units is None:
        u = u.with_columns(pl.col("unit_id").alias("base_unit_id"))
    else:
        u = u.join(
            base_units.select(pl.col("unit_id").cast(pl.Utf8), pl.col("base_unit_id").cast(pl.Utf8)),
            on="unit_id",
            how="left",
        ).with_columns(pl.col("base_unit_id").fill_null(pl.col("unit_id")))
    name = (
        pl.when(pl.col("cbsa_code").is_not_null() & pl.lit(settings.keep_metros_whole))
        .then(pl.lit("metro ") + pl.col("cbsa_code"))
        .otherwise(pl.lit("unit ") + pl.col("base_unit_id"))
    )
    g = u.select(name.alias("group"), "weight")
    groups = g.group_by("group").agg(pl.col("weight").sort().sum()).sort("group")
    gw = groups["weight"].to_numpy()
    index = dict(zip(groups["group"].to_list(), range(len(groups))))
    of_unit = np.array([index[x] for x in g["group"].to_list()], dtype=np.int64)
    ii, jj = _edge_index(u["unit_id"], adjacency)
    edges = np.column_stack([of_unit[ii], of_unit[jj]])
    edges = np.unique(edges[edges[:, 0] != edges[:, 1]], axis=0)
    parts = np.where(gw > cap_w, np.ceil(gw / cap_w), 0).astype(np.int64)
    found = neighbourhood_bound(gw, parts, edges, mu)
    if found.root < 0 or found.value <= settings.tolerance + 1e-12:
        return found.value, ""
    names = groups["group"].to_list()
    tgt = float(np.median(mu))

    def describe(x: int) -> str:
        if parts[x]:
            return f"{names[x]} ({gw[x] / tgt:.2f}, at most {parts[x]} territories)"
        return f"{names[x]} ({gw[x] / tgt:.2f})"

    around = ", ".join(describe(x) for x in found.neighbours) or "nothing"
    whole = f"light {'metros' if settings.keep_metros_whole else 'units'} whole"
    if parts[found.root]:
        text = (
            f"No connected plan that keeps {whole} and spreads each heavier one over at most its "
            f"part count can reach ±{settings.tolerance:.0%}: {describe(found.root)} borders only "
            f"{around} (weights as shares of a target); its holders carry all of it, one holding "
            f"anything else takes at least a whole light neighbour or what a heavy neighbour's "
            f"other holders cannot carry, so whatever territories hold it, one deviates by at least "
            f"{found.value:.1%} (the neighbourhood bound)."
        )
        return found.value, text
    text = (
        f"No connected plan that keeps {whole} "
        f"can reach ±{settings.tolerance:.0%}: "
        f"{names[found.root]} weighs {gw[found.root] / tgt:.2f} of a target and borders only "
        f"{around} (weights as shares of a target), so whatever connected set holds it, the territory "
        f"deviates by at least {found.value:.1%} (the neighbourhood bound)."
    )
    return found.value, text


def _why_off_target(
    u: pl.DataFrame,
    lab: np.ndarray,
    adjacency: pl.DataFrame,
    tw: np.ndarray,
    mu: np.ndarray,
    cap_w: float,
    tol: float,
) -> dict[int, str]:
    """Why each territory beyond the tolerance stays there: one sentence per territory, worst
    first (the plan's ``explanation`` quotes the three worst; every one is the territory's
    ``balance_note``).

    Pieces move as the engine moves them: a metro lighter than a territory's
    capacity only whole, a unit of a heavier metro only to a territory already
    holding that metro, any other unit alone.  For each territory beyond ±tol,
    every single move of a piece between it and a
    neighbouring territory is tried on the totals; the sentence names what the
    territory is made of and says whether no such move would lower the larger
    deviation of the two territories, whether every one that would cuts the
    giving territory apart, or which one keeps both connected (a move the
    search missed).
    """
    dev = tw / mu - 1.0
    worst = [int(t) for t in np.argsort(-np.abs(dev), kind="stable") if abs(dev[t]) > tol + 1e-9]
    if not worst:
        return {}
    metro_w = (
        u.filter(pl.col("cbsa_code").is_not_null())
        .group_by("cbsa_code")
        .agg(pl.col("weight").sum().alias("mw"))
    )
    frame = (
        u.select("unit_id", "weight", "cbsa_code", "rep_id")
        .with_columns(pl.Series("t", lab))
        .join(metro_w, on="cbsa_code", how="left")
        .with_columns(
            pl.when(pl.col("cbsa_code").is_not_null() & (pl.col("mw") <= cap_w))
            .then(pl.lit("metro ") + pl.col("cbsa_code"))
            .otherwise(pl.lit("unit ") + pl.col("unit_id"))
            .alias("piece"),
            (pl.col("cbsa_code").is_not_null() & (pl.col("mw") > cap_w)).alias("heavy"),
        )
    )
    ii, jj = _edge_index(frame["unit_id"], adjacency)
    n = len(frame)
    graph = coo_matrix((np.ones(len(ii)), (ii, jj)), shape=(n, n)).tocsr()
    holders = frame.filter(pl.col("heavy")).select("cbsa_code", "t").unique()
    side = frame.select("piece", "t", "heavy", "cbsa_code")
    crossing = (
        side[ii]
        .with_columns(pl.Series("to", lab[jj]))
        .filter(pl.col("t") != pl.col("to"))
    )
    # a heavy-metro unit may only go to a territory already holding its metro
    allowed = pl.concat(
        [
            crossing.filter(~pl.col("heavy")),
            crossing.filter(pl.col("heavy")).join(
                holders.rename({"t": "to"}), on=["cbsa_code", "to"], how="semi"
            ),
        ]
    )
    moves = (
        allowed.select("piece", "t", "to")
        .unique()
        .join(
            frame.group_by("piece", "t").agg(pl.col("weight").sort().sum().alias("x")),
            on=["piece", "t"],
        )
        .sort("piece", "t", "to")
    )
    src, dst, x = (moves[c].to_numpy() for c in ("t", "to", "x"))
    names = moves["piece"].to_list()
    piece_code = {p: i for i, p in enumerate(sorted(set(frame["piece"].to_list())))}
    piece_of = np.array([piece_code[p] for p in frame["piece"].to_list()], dtype=np.int64)
    territory = dict(zip(lab.tolist(), u["rep_id"].to_list()))
    out: dict[int, str] = {}
    for t in worst:
        d = dev[t]
        sel = np.nonzero(src == t)[0] if d > 0 else np.nonzero(dst == t)[0]
        a, b = src[sel], dst[sel]
        after = np.maximum(
            np.abs((tw[a] - x[sel]) / mu[a] - 1.0), np.abs((tw[b] + x[sel]) / mu[b] - 1.0)
        )
        better = after < abs(d) - 1e-9
        mine = (
            frame.filter(pl.col("t") == t)
            .group_by("cbsa_code", "heavy")
            .agg(pl.col("weight").sort().sum())
            .sort("weight", "cbsa_code", descending=[True, False], nulls_last=True)
        )
        held, thin = [], []
        for code, heavy, weight in mine.head(3).iter_rows():
            what = (
                "units outside any metro"
                if code is None
                else f"{'part of heavy metro' if heavy else 'whole metro'} {code}"
            )
            held.append(f"{what} ({weight / mu[t]:.2f} of its target)")
            if heavy and d < 0:
                # the fewest parts of a heavy metro can average below the band: its holders
                # then need pieces from outside it, which a holder inside the metro cannot reach
                mw = float(metro_w.filter(pl.col("cbsa_code") == code)["mw"][0])
                count = math.ceil(mw / cap_w - 1e-9)
                if mw / count < (1 - tol) * mu[t]:
                    thin.append(
                        f"heavy metro {code} weighs {mw / mu[t]:.2f} targets and is cut into its fewest "
                        f"parts, {count}, of {mw / count / mu[t]:.3f} of a target on average, below the "
                        f"band ({1 - tol:.2f}): its holders reach the band only with pieces from outside it"
                    )
        label = f"territory of {territory[t]} ({d:+.1%}) holds {', '.join(held)}"
        if thin:
            label += " (" + "; ".join(thin) + ")"
        if not better.any():
            out[t] = (
                f"{label}; no single move of a whole metro or unit between it and a neighbouring "
                f"territory would lower the larger deviation of the two (light metros stay whole, "
                f"heavy-metro units stay with their metro's territories)"
                f"{_hemmed(t, crossing, holders, metro_w, mu, cap_w) if d < 0 else ''}."
            )
            continue
        candidates = sel[better][np.argsort(after[better], kind="stable")]
        kept = next(
            (
                int(i)
                for i in candidates[:25]
                if _stays_connected(graph, lab, piece_of == piece_code[names[i]], int(src[i]))
            ),
            None,
        )
        if kept is None:
            i = int(candidates[0])
            out[t] = (
                f"{label}; every single move that would lower the larger deviation of the two "
                f"territories cuts the giving territory apart (e.g. {names[i]} from the territory of "
                f"{territory[int(src[i])]} to that of {territory[int(dst[i])]})."
            )
        else:
            out[t] = (
                f"{label}; moving {names[kept]} from the territory of {territory[int(src[kept])]} to "
                f"that of {territory[int(dst[kept])]} keeps both connected and would lower the larger "
                f"deviation of the two: the search did not find that move."
            )
    return out


def _hemmed(
    t: int,
    crossing: pl.DataFrame,
    holders: pl.DataFrame,
    metro_w: pl.DataFrame,
    mu: np.ndarray,
    cap_w: float,
) -> str:
    """Clause naming the neighbouring heavy metros that territory t cannot take cells from.

    A heavy metro's units only join territories already holding it while it
    spans its part count, ceil(weight / cap_w); t could take some only when
    one of those territories gives up its whole part.  The engine tries that
    hand-over (:func:`.partition.handover`) for new plans where the holder
    keeps other units to stay a territory; a holder with nothing but its part
    cannot.
    """
    near = (
        crossing.filter(pl.col("heavy") & (pl.col("to") == t))
        .select("cbsa_code")
        .unique()
        .join(holders.filter(pl.col("t") == t), on="cbsa_code", how="anti")
        .join(holders.group_by("cbsa_code").agg(pl.len().alias("n")), on="cbsa_code")
        .join(metro_w, on="cbsa_code")
        .filter(pl.col("n") >= (pl.col("mw") / cap_w).ceil())
        .sort("cbsa_code")
    )
    if near.is_empty():
        return ""
    names = [
        f"{code} ({w / mu[t]:.2f} of a target, in {n} territories)"
        for code, n, w in near.select("cbsa_code", "n", "mw").iter_rows()
    ]
    return (
        f"; it borders heavy metro(s) {', '.join(names[:4])} already spread over their part count, "
        f"so their cells can reach it only if a holder gives up its whole part (new plans try such "
        f"hand-overs where the holder keeps other units to stay a territory)"
    )


def _stays_connected(graph, lab: np.ndarray, moving: np.ndarray, a: int) -> bool:
    """Whether territory ``a`` is still one connected region without the units ``moving``."""
    rest = np.nonzero((lab == a) & ~moving)[0]
    if len(rest) <= 1:
        return True
    n_comp, _ = connected_components(graph[rest][:, rest], directed=False)
    return n_comp == 1


def _edge_index(
    unit_ids: pl.Series, adjacency: pl.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """Adjacency as row indices (i, j) into ``unit_ids``; pairs naming unknown units are left out."""
    index = pl.DataFrame({"unit_id": unit_ids, "i": np.arange(len(unit_ids))})
    e = (
        adjacency.select(
            pl.col("unit_id").cast(pl.Utf8), pl.col("neighbor_unit_id").cast(pl.Utf8)
        )
        .join(index, on="unit_id")
        .join(
            index.rename({"unit_id": "neighbor_unit_id", "i": "j"}),
            on="neighbor_unit_id",
        )
    )
    return e["i"].to_numpy(), e["j"].to_numpy()


def _contiguity(
    unit_ids: pl.Series, lab: np.ndarray, adjacency: pl.DataFrame, k: int
) -> np.ndarray:
    n = len(lab)
    i, j = _edge_index(unit_ids, adjacency)
    same = lab[i] == lab[j]
    g = coo_matrix((np.ones(int(same.sum())), (i[same], j[same])), shape=(n, n))
    _, comp = connected_components(g, directed=False)
    pairs = np.unique(np.column_stack([lab, comp]), axis=0)
    per_territory = np.bincount(pairs[:, 0], minlength=k)
    return per_territory <= 1


def _disruption(
    u: pl.DataFrame,
    lab: np.ndarray,
    reps: pl.DataFrame,
    mu: np.ndarray,
    providers: pl.DataFrame | None,
    previous: pl.DataFrame | None,
    adjacency: pl.DataFrame,
    settings: BalanceSettings,
) -> dict[str, Any]:
    if previous is None:
        return {}
    rep_ids = reps["rep_id"].to_list()
    rep_index = {r: i for i, r in enumerate(rep_ids)}
    now = u.select("unit_id", "weight", "provider_count").with_columns(
        pl.Series("new", lab)
    )
    if "npi" in previous.columns:
        if providers is None:
            raise ValueError(
                "previous is given per npi, so providers are needed to compare"
            )
        prev = previous.select(
            pl.col("npi").cast(pl.Utf8),
            pl.col("rep_id").cast(pl.Utf8).alias("prev_rep"),
        )
        rows = (
            providers.select(
                pl.col("npi").cast(pl.Utf8),
                pl.col("unit_id").cast(pl.Utf8),
                pl.col("weight").cast(pl.Float64),
            )
            .join(prev, on="npi", how="inner")
            .join(now.select("unit_id", "new"), on="unit_id")
            .with_columns(pl.lit(1.0).alias("count"))
        )
    elif "unit_id" in previous.columns:
        prev = previous.select(
            pl.col("unit_id").cast(pl.Utf8).alias("base_unit"),
            pl.col("rep_id").cast(pl.Utf8).alias("prev_rep"),
        )
        rows = (
            now.with_columns(
                pl.col("unit_id").str.replace(_SPLIT_SUFFIX, "").alias("base_unit")
            )
            .join(prev, on="base_unit", how="inner")
            .rename({"provider_count": "count"})
            .with_columns(pl.col("count").cast(pl.Float64))
        )
    else:
        raise ValueError("previous needs an npi or a unit_id column, and rep_id")
    if len(rows) == 0:
        return {
            "moved_opportunity_share": 0.0,
            "moved_provider_share": 0.0,
            "least_move_share": 0.0,
            "disruption_ratio": None,
        }
    prev_idx = np.array(
        [
            rep_index.get(r, -1) if r is not None else -1
            for r in rows["prev_rep"].to_list()
        ]
    )
    new_idx = rows["new"].to_numpy()
    rw, rc = rows["weight"].to_numpy(), rows["count"].to_numpy()
    moved = prev_idx != new_idx
    wt, ct = max(rw.sum(), 1e-12), max(rc.sum(), 1e-12)
    kept = prev_idx >= 0
    k = len(rep_ids)
    start = np.bincount(prev_idx[kept], weights=rw[kept], minlength=k)
    scaled_mu = mu / mu.sum() * rw.sum()
    least = least_move(start, float(rw[~kept].sum()), scaled_mu, settings.tolerance)
    moved_w = float(rw[moved].sum())
    flow = _least_move_flow(
        rows, u, reps, rep_index, scaled_mu, adjacency, settings.tolerance
    )
    return {
        "moved_opportunity_share": float(moved_w / wt),
        "moved_provider_share": float(rc[moved].sum() / ct),
        "least_move_share": float(least / wt),
        "disruption_ratio": (moved_w / least) if least > 0 else None,
        "least_move_flow_share": float(flow / wt) if flow is not None else None,
        "disruption_ratio_flow": (moved_w / flow) if flow else None,
    }


def _least_move_flow(
    rows: pl.DataFrame,
    u: pl.DataFrame,
    reps: pl.DataFrame,
    rep_index: dict[str, int],
    mu: np.ndarray,
    adjacency: pl.DataFrame,
    tolerance: float,
) -> float | None:
    """Contiguous least-move estimate (:func:`.bounds.least_move_flow`) on the previous plan's territory graph."""
    k = len(rep_index)
    per_unit = (
        rows.group_by("unit_id", "prev_rep")
        .agg(pl.col("weight").sum().alias("w"))
        .sort(["unit_id", "w", "prev_rep"], descending=[False, True, False])
        .group_by("unit_id", maintain_order=True)
        .first()
    )
    # every departed rep of the previous plan, also one holding only minority shares of units
    # (the cells of a heavy metro's unit split between territories)
    departed = sorted(
        {r for r in rows["prev_rep"].to_list() if r is not None and r not in rep_index}
    )
    node = {**rep_index, **{r: k + i for i, r in enumerate(departed)}}
    unit_node = {
        a: node[r]
        for a, r in per_unit.select("unit_id", "prev_rep").iter_rows()
        if r is not None
    }
    n = k + len(departed)
    w_node = np.zeros(n)
    np.add.at(
        w_node,
        [node[r] for r in rows["prev_rep"].to_list() if r is not None],
        [
            x
            for x, r in zip(rows["weight"].to_list(), rows["prev_rep"].to_list())
            if r is not None
        ],
    )
    pairs = set()
    # a rep holding part of a unit borders the rep holding most of it
    for a, r in rows.select("unit_id", "prev_rep").unique().iter_rows():
        x, y = unit_node.get(a), node.get(r)
        if x is not None and y is not None and x != y:
            pairs.add((min(x, y), max(x, y)))
    for a, b in adjacency.select("unit_id", "neighbor_unit_id").iter_rows():
        x, y = unit_node.get(a), unit_node.get(b)
        if x is not None and y is not None and x != y:
            pairs.add((min(x, y), max(x, y)))
    # a new rep has no previous territory: it borders the one holding the unit nearest its home
    ulat, ulon = u["latitude"].to_numpy(), u["longitude"].to_numpy()
    uids = u["unit_id"].to_list()
    for t, (hl, ho) in enumerate(
        reps.select("home_latitude", "home_longitude").iter_rows()
    ):
        if w_node[t] > 0:
            continue
        if hl is not None:
            order = np.argsort(
                (ulat - hl) ** 2 + ((ulon - ho) * np.cos(np.radians(hl))) ** 2
            )
            host = next(
                (unit_node[uids[i]] for i in order if uids[i] in unit_node), None
            )
        else:
            host = int(np.argmax(w_node[:k] / mu))
        if host is not None and host != t:
            pairs.add((min(t, host), max(t, host)))
    sources = np.where(np.arange(n) >= k, w_node, 0.0)
    return least_move_flow(w_node[:k], mu, tolerance, np.array(sorted(pairs)), sources)


def _explain(
    metrics: dict[str, Any],
    u: pl.DataFrame,
    w: np.ndarray,
    mu: np.ndarray,
    s: BalanceSettings,
    neighbourhood: str = "",
) -> str:
    tol = s.tolerance
    heavy = int(np.argmax(w))
    parts = []
    if metrics["granularity_bound"] > tol + 1e-12:
        parts.append(
            f"±{tol:.0%} is infeasible with these units: the heaviest unit {u['unit_id'][heavy]!r} weighs "
            f"{w[heavy] / mu.max():.2f}× the largest target, and the pigeonhole bound over the heaviest units "
            f"forces an imbalance of at least {metrics['granularity_bound']:.1%}; split heavy units (finer H3 cells) "
            f"or use fewer territories."
        )
    elif neighbourhood:
        gap = metrics["neighbourhood_gap"]
        if gap >= -1e-9:
            where = f"{gap * 100:.1f} points above that bound."
        else:
            broken = []
            if metrics["disconnected_territories"]:
                broken.append(f"{metrics['disconnected_territories']} territory(ies) not connected")
            if metrics["metros_split_beyond_bound"]:
                broken.append(f"{metrics['metros_split_beyond_bound']} metro(s) split beyond the bound")
            if not s.keep_metros_whole:
                broken.append("metros not kept whole")
            where = f"below it, because the plan does not follow those rules ({'; '.join(broken) or 'units split'})."

        parts.append(f"{neighbourhood} This plan's imbalance is {metrics['imbalance']:.1%}, {where}")
    elif metrics["imbalance"] > tol + 1e-12:
        parts.append(
            f"imbalance {metrics['imbalance']:.1%} exceeds ±{tol:.0%} although the unit weights allow "
            f"{metrics['granularity_bound']:.1%} (best non-geographic partition found: "
            f"{metrics['best_partition_bound']:.1%}); contiguity, whole metros, locks or the time limit held it back."
        )
    else:
        parts.append(f"every territory is within ±{tol:.0%} of its target.")
    if metrics["disconnected_territories"]:
        parts.append(
            f"{metrics['disconnected_territories']} territory(ies) are not one connected region."
        )
    return " ".join(parts)
