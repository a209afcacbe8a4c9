"""Balance charts as PNG bytes (matplotlib, Agg canvas, no pyplot state).

* ``opportunity_chart_png``: opportunity per territory against its target band;
* ``rebalance_chart_png``: the same, before and after a rebalance, as paired bars;
* ``imbalance_history_png``: imbalance per refresh quarter against the
  tolerance and action thresholds;
* ``markdown_image``: a PNG as an inline Markdown image for Dagster metadata.
"""

from __future__ import annotations

import base64
import math

import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from territory_pipeline.visuals.maps import figure_png

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IN_BAND = "#4c78a8"
_OUT_OF_BAND = "#e45756"
_BEFORE = "#bab0ac"
_BAND = "#54a24b"
_TICK_LABEL_LIMIT = 60


def _require(frame: pl.DataFrame, columns: tuple[str, ...], frame_name: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{frame_name} frame lacks required columns: {', '.join(missing)}")
    if frame.height == 0:
        raise ValueError(f"{frame_name} frame is empty: nothing to chart")


def _check_tolerance(tolerance: float) -> None:
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must be a fraction in [0, 1), got {tolerance}")


def _new_figure(bar_count: int) -> Figure:
    width = min(18.0, max(8.0, 0.45 * bar_count + 3))
    figure = Figure(figsize=(width, 5.2), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _draw_band(axes: Axes, positions: np.ndarray, targets: np.ndarray, tolerance: float, slot: float) -> None:
    """Shade each territory's ±tolerance band and draw its target across its slot."""
    for position, target in zip(positions, targets, strict=True):
        if math.isnan(target):
            continue
        left, right = position - slot / 2, position + slot / 2
        axes.fill_between(
            [left, right],
            target * (1 - tolerance),
            target * (1 + tolerance),
            color=_BAND,
            alpha=0.18,
            linewidth=0,
            zorder=1,
        )
        axes.plot([left, right], [target, target], color=_BAND, linewidth=1.6, zorder=3)


def _label_axis(axes: Axes, positions: np.ndarray, labels: list[str]) -> None:
    if len(labels) <= _TICK_LABEL_LIMIT:
        axes.set_xticks(
            positions,
            labels,
            rotation=60 if len(labels) > 12 else 0,
            ha="right" if len(labels) > 12 else "center",
            fontsize=8,
        )
    else:
        axes.set_xticks([])
        axes.set_xlabel(f"{len(labels)} territories (labels omitted)", fontsize=8)
    axes.set_xlim(positions[0] - 0.6, positions[-1] + 0.6)
    axes.set_ylabel("opportunity score", fontsize=9)
    axes.tick_params(axis="y", labelsize=8)
    axes.grid(axis="y", color="#ddd", linewidth=0.6, zorder=0)
    axes.set_axisbelow(True)


def _leave_room_for_legend(axes: Axes, heights: np.ndarray) -> None:
    """Raise the y limit so the legend row sits above the tallest bar or band."""
    finite = heights[np.isfinite(heights)]
    axes.set_ylim(0, (float(finite.max()) if finite.size else 1.0) * 1.2)


def _outside(deviation: np.ndarray, tolerance: float) -> np.ndarray:
    return np.abs(np.nan_to_num(deviation, nan=0.0)) > tolerance


def opportunity_chart_png(territories: pl.DataFrame, tolerance: float = 0.05) -> bytes:
    """Bar chart of opportunity per territory against its target band, as PNG bytes.

    ``territories`` needs ``territory_id``, ``opportunity_score``, ``target_score``
    and ``deviation`` (signed fraction).  Bars are sorted by score (highest
    first, ties by id); each bar's target is a line over its slot with the
    ``±tolerance`` band shaded, and bars whose ``|deviation|`` exceeds the
    tolerance are drawn in red with their deviation printed above.
    """
    _check_tolerance(tolerance)
    _require(territories, ("territory_id", "opportunity_score", "target_score", "deviation"), "territories")
    ordered = territories.sort(["opportunity_score", "territory_id"], descending=[True, False])
    scores = ordered["opportunity_score"].cast(pl.Float64).to_numpy()
    targets = ordered["target_score"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    deviations = ordered["deviation"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    outside = _outside(deviations, tolerance)
    positions = np.arange(len(scores), dtype=float)

    figure = _new_figure(len(scores))
    axes = figure.add_subplot(1, 1, 1)
    axes.bar(positions, scores, width=0.7, color=np.where(outside, _OUT_OF_BAND, _IN_BAND), zorder=2)
    _draw_band(axes, positions, targets, tolerance, slot=1.0)
    if len(scores) <= _TICK_LABEL_LIMIT:
        for position, score, deviation, is_outside in zip(
            positions, scores, deviations, outside, strict=True
        ):
            if is_outside:
                axes.annotate(
                    f"{deviation:+.1%}",
                    (position, score),
                    xytext=(0, 3),
                    textcoords="offset points",
                    ha="center",
                    fontsize=7,
                    color=_OUT_OF_BAND,
                )
    _label_axis(axes, positions, ordered["territory_id"].to_list())
    _leave_room_for_legend(axes, np.concatenate([scores, targets * (1 + tolerance)]))
    max_deviation = float(np.nanmax(np.abs(deviations))) if not np.all(np.isnan(deviations)) else float("nan")
    axes.set_title(
        f"Opportunity per territory — {int(outside.sum())} of {len(scores)} outside ±{tolerance:.0%}"
        f" (largest |deviation| {max_deviation:.1%})",
        fontsize=11,
    )
    axes.legend(
        handles=[
            Patch(color=_IN_BAND, label="within band"),
            Patch(color=_OUT_OF_BAND, label="outside band"),
            Line2D([], [], color=_BAND, linewidth=1.6, label="target"),
            Patch(color=_BAND, alpha=0.18, label=f"target ±{tolerance:.0%}"),
        ],
        fontsize=8,
        loc="upper center",
        ncol=5,
    )
    figure.tight_layout()
    return figure_png(figure)


def rebalance_chart_png(before: pl.DataFrame, after: pl.DataFrame, tolerance: float = 0.05) -> bytes:
    """Paired bars of each territory's opportunity before and after a rebalance, as PNG bytes.

    Both frames need ``territory_id``, ``opportunity_score``, ``target_score``
    and ``deviation``.  Territories are the union of both frames sorted by id;
    one present on one side only gets no bar on the other (its label says
    "new" or "closed").  The target band drawn is the after frame's (the
    before frame's for a closed territory); after-bars outside it are red and
    the title compares the largest ``|deviation|`` before and after.
    """
    _check_tolerance(tolerance)
    columns = ("territory_id", "opportunity_score", "target_score", "deviation")
    _require(before, columns, "before")
    _require(after, columns, "after")
    joined = (
        before.select(columns)
        .join(after.select(columns), on="territory_id", how="full", coalesce=True, suffix="_after")
        .sort("territory_id")
    )
    before_scores = joined["opportunity_score"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    after_scores = joined["opportunity_score_after"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    targets = (
        joined.select(pl.coalesce("target_score_after", "target_score").cast(pl.Float64))
        .to_series()
        .fill_null(float("nan"))
        .to_numpy()
    )
    before_deviation = joined["deviation"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    after_deviation = joined["deviation_after"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    after_outside = _outside(after_deviation, tolerance)
    labels = []
    for territory_id, before_score, after_score in zip(
        joined["territory_id"], before_scores, after_scores, strict=True
    ):
        suffix = " (new)" if math.isnan(before_score) else " (closed)" if math.isnan(after_score) else ""
        labels.append(f"{territory_id}{suffix}")

    positions = np.arange(joined.height, dtype=float)
    figure = _new_figure(math.ceil(joined.height * 1.5))
    axes = figure.add_subplot(1, 1, 1)
    _draw_band(axes, positions, targets, tolerance, slot=1.0)
    axes.bar(positions - 0.19, np.nan_to_num(before_scores), width=0.38, color=_BEFORE, zorder=2)
    axes.bar(
        positions + 0.19,
        np.nan_to_num(after_scores),
        width=0.38,
        color=np.where(after_outside, _OUT_OF_BAND, _IN_BAND),
        zorder=2,
    )
    _label_axis(axes, positions, labels)
    _leave_room_for_legend(axes, np.concatenate([before_scores, after_scores, targets * (1 + tolerance)]))

    def largest(deviations: np.ndarray) -> str:
        return "n/a" if np.all(np.isnan(deviations)) else f"{float(np.nanmax(np.abs(deviations))):.1%}"

    outside_before = int(_outside(before_deviation, tolerance).sum())
    axes.set_title(
        f"Rebalance — largest |deviation| {largest(before_deviation)} before, "
        f"{largest(after_deviation)} after; {outside_before} → {int(after_outside.sum())} "
        f"territories outside ±{tolerance:.0%}",
        fontsize=11,
    )
    axes.legend(
        handles=[
            Patch(color=_BEFORE, label="before"),
            Patch(color=_IN_BAND, label="after, within band"),
            Patch(color=_OUT_OF_BAND, label="after, outside band"),
            Line2D([], [], color=_BAND, linewidth=1.6, label="target"),
            Patch(color=_BAND, alpha=0.18, label=f"target ±{tolerance:.0%}"),
        ],
        fontsize=8,
        loc="upper center",
        ncol=5,
    )
    figure.tight_layout()
    return figure_png(figure)


def imbalance_history_png(
    history: pl.DataFrame, tolerance: float = 0.05, action_threshold: float = 0.20
) -> bytes:
    """Line chart of imbalance per refresh quarter, as PNG bytes.

    ``history`` needs ``refresh_quarter`` (date) and ``imbalance`` (fraction);
    rows are sorted by quarter, then ``alignment_id`` when present, so a
    quarter with a rebalance shows the drop.  Zones below ``tolerance``
    (green), up to ``action_threshold`` (amber) and above (red) are shaded.
    When a ``trigger`` column is present, non-null triggers are marked and
    labelled.  Null imbalance is an error.
    """
    _check_tolerance(tolerance)
    if not tolerance < action_threshold:
        raise ValueError(f"action_threshold ({action_threshold}) must exceed tolerance ({tolerance})")
    _require(history, ("refresh_quarter", "imbalance"), "history")
    if history["imbalance"].null_count() or history["refresh_quarter"].null_count():
        raise ValueError("history has null refresh_quarter or imbalance values")
    order = ["refresh_quarter"] + (["alignment_id"] if "alignment_id" in history.columns else [])
    ordered = history.sort(order)
    quarters = ordered["refresh_quarter"].to_list()
    values = ordered["imbalance"].cast(pl.Float64).to_numpy()
    positions = np.arange(len(values), dtype=float)
    labels = [f"{quarter.year} Q{(quarter.month - 1) // 3 + 1}" for quarter in quarters]

    figure = _new_figure(max(8, len(values)))
    axes = figure.add_subplot(1, 1, 1)
    top = max(float(values.max()) * 1.15, action_threshold * 1.3)
    axes.axhspan(0, tolerance, color="#54a24b", alpha=0.12, linewidth=0)
    axes.axhspan(tolerance, action_threshold, color="#f2cf5b", alpha=0.15, linewidth=0)
    axes.axhspan(action_threshold, top, color="#e45756", alpha=0.10, linewidth=0)
    axes.axhline(
        tolerance, color="#54a24b", linestyle="--", linewidth=1.2, label=f"tolerance {tolerance:.0%}"
    )
    axes.axhline(
        action_threshold,
        color="#e45756",
        linestyle="--",
        linewidth=1.2,
        label=f"action threshold {action_threshold:.0%}",
    )
    axes.plot(
        positions, values, color="#333", marker="o", markersize=5, linewidth=1.8, label="imbalance", zorder=3
    )
    if "trigger" in ordered.columns:
        for position, value, trigger in zip(positions, values, ordered["trigger"], strict=True):
            if trigger is not None and str(trigger) != "":
                axes.plot(position, value, marker="D", markersize=8, color="#4c78a8", zorder=4)
                axes.annotate(
                    str(trigger),
                    (position, value),
                    xytext=(8, -14),
                    textcoords="offset points",
                    fontsize=8,
                    color="#4c78a8",
                )
    axes.set_xticks(
        positions,
        labels,
        rotation=45 if len(labels) > 8 else 0,
        ha="right" if len(labels) > 8 else "center",
        fontsize=8,
    )
    axes.set_ylim(0, top)
    axes.yaxis.set_major_formatter(lambda value, _pos: f"{value:.0%}")
    axes.tick_params(axis="y", labelsize=8)
    axes.set_ylabel("imbalance", fontsize=9)
    axes.set_title(f"Imbalance over quarters — latest {values[-1]:.1%}", fontsize=11)
    axes.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    return figure_png(figure)


def markdown_image(png_bytes: bytes, alt: str) -> str:
    """Return ``png_bytes`` as an inline Markdown image: ``![alt](data:image/png;base64,...)``.

    Raises ``ValueError`` when the bytes are not a PNG.  Brackets and line
    breaks in ``alt`` are replaced so the Markdown stays one valid image.
    """
    if not png_bytes.startswith(PNG_SIGNATURE):
        raise ValueError("markdown_image expects PNG bytes (PNG signature missing)")
    safe_alt = " ".join(alt.replace("[", "(").replace("]", ")").split())
    return f"![{safe_alt}](data:image/png;base64,{base64.b64encode(png_bytes).decode('ascii')})"
