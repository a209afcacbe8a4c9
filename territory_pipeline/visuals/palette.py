"""Deterministic territory colours.

The palette starts with the ten Tableau colours (matplotlib's ``tab10``), which
stay easy to tell apart side by side.  Beyond ten, further colours are the same
hues with a different lightness and saturation, ordered so that each differs
clearly from the five before it: 300 territories get 300 distinct colours and
neighbours in territory order never look alike.  Colours go to territories
in sorted ``territory_id`` order, so the same set of territories always gets
the same colours, on the interactive map and on the PNG map.
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterable
from functools import lru_cache

# matplotlib's tab10 ("Tableau 10"), as hex.
_BASE_COLOURS: tuple[str, ...] = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)

# Candidate colours the greedy ordering picks from (a fixed pool keeps palettes prefixes).
_POOL_SIZE = 600

# (lightness offset, saturation factor) for each round of ten after the first.
# Offsets alternate darker/lighter and grow, so consecutive rounds contrast.
_VARIANTS: tuple[tuple[float, float], ...] = tuple(
    (sign * step, saturation)
    for step in (0.0, 0.12, 0.22, 0.30)
    for sign in ((1,) if step == 0.0 else (-1, 1))
    for saturation in (1.0, 0.55, 0.8, 0.4)
)


def _variant(hex_colour: str, lightness_offset: float, saturation_factor: float) -> str:
    red, green, blue = (int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    hue, lightness, saturation = colorsys.rgb_to_hls(red, green, blue)
    lightness = min(0.85, max(0.18, lightness + lightness_offset))
    saturation = min(1.0, max(0.0, saturation * saturation_factor))
    red, green, blue = colorsys.hls_to_rgb(hue, lightness, saturation)
    return "#{:02x}{:02x}{:02x}".format(*(round(channel * 255) for channel in (red, green, blue)))


def _candidates(count: int) -> list[str]:
    """Distinct tab10 variants, round by round, at least ``count`` of them."""
    colours: list[str] = []
    seen: set[str] = set()
    index = 0
    while len(colours) < count:
        round_number, hue_index = divmod(index, len(_BASE_COLOURS))
        offset, saturation = _VARIANTS[round_number % len(_VARIANTS)]
        extra = 0.03 * (round_number // len(_VARIANTS))
        colour = _variant(_BASE_COLOURS[hue_index], offset + extra, saturation)
        if colour not in seen:
            seen.add(colour)
            colours.append(colour)
        index += 1
    return colours


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def palette(count: int) -> list[str]:
    """Return ``count`` distinct hex colours (``#rrggbb``), the same list every call.

    The first ten are tab10 in its usual order.  The rest are tab10 variants
    (see the module docstring), ordered greedily so that each colour is as far
    as possible (summed RGB difference) from the five before it; territories
    next to each other in id order therefore never look alike.  Up to
    ``_POOL_SIZE // 2`` colours, ``palette(n)`` is a prefix of ``palette(m)``
    for ``n < m``, so adding a territory does not recolour the others.
    """
    if count < 0:
        raise ValueError(f"palette size must be >= 0, got {count}")
    return list(_ordered_palette(count))


@lru_cache(maxsize=16)
def _ordered_palette(count: int) -> tuple[str, ...]:
    candidates = _candidates(max(_POOL_SIZE, 2 * count))
    ordered = candidates[: min(count, len(_BASE_COLOURS))]
    remaining = candidates[len(ordered) :]
    while len(ordered) < count:
        recent = [_rgb(colour) for colour in ordered[-5:]]

        def separation(colour: str, recent: list[tuple[int, int, int]] = recent) -> int:
            rgb = _rgb(colour)
            return min(sum(abs(a - b) for a, b in zip(rgb, other, strict=True)) for other in recent)

        best = max(remaining, key=separation)  # first of equals: candidate order breaks ties
        ordered.append(best)
        remaining.remove(best)
    return tuple(ordered)


def territory_colours(territory_ids: Iterable[str]) -> dict[str, str]:
    """Map each distinct territory id to its colour, assigned in sorted id order."""
    ordered = sorted(set(territory_ids))
    return dict(zip(ordered, palette(len(ordered)), strict=True))
