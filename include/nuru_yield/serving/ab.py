"""A/B serving (the seed's "A/B testing"): a fixed share of plots, chosen by a hash of
``plot_id``, is answered by the challenger's stored forecast. Off by default."""

from __future__ import annotations

import hashlib

from nuru_yield.names import CHALLENGER, CHAMPION
from nuru_yield.serving.store import Lookup


def in_challenger_share(plot_id: int, share: float) -> bool:
    """Stable across processes and releases (unlike ``hash()``): a plot keeps its arm."""
    if share <= 0:
        return False
    digest = hashlib.blake2b(plot_id.to_bytes(8, "little"), digest_size=8).digest()
    return int.from_bytes(digest, "little") < share * 2**64


def lookup_for(
    plot_id: int,
    requested: str,
    share: float,
    *,
    season: str | None = None,
    season_year: int | None = None,
) -> Lookup:
    """Which stored models may answer a request for ``requested`` (``ensemble``/``challenger``).

    The challenger answers only when asked for by name, or for plots in the A/B share; there
    it is preferred over a champion row of the same night and the champion answers if the
    challenger has no forecast for the plot.
    """
    if requested == "challenger":
        fallback = preferred = CHALLENGER
    else:
        fallback = CHAMPION
        preferred = CHALLENGER if in_challenger_share(plot_id, share) else CHAMPION
    return Lookup(plot_id, season, season_year, fallback, preferred)
