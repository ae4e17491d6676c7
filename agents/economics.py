"""Economic module: the price a node quotes for forwarding one unit of data.

The origin's formula, kept exactly::

    quote = max(base_cost * (1 + load / 100) * 1.2,  0.9 * mean(neighbor_prices))

``load`` is the node's current load in percent (0-100), ``1.2`` the 20 % profit target and
``0.9`` the slight undercut of the market. With no neighbour prices the first term stands alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PROFIT_MARGIN = 1.2
MARKET_UNDERCUT = 0.9


def quote_price(base_cost: float, load: float, neighbor_prices: Sequence[float] | np.ndarray) -> float:
    """Price to quote per unit forwarded, from cost, load (percent) and the neighbours' quotes."""
    cost_term = base_cost * (1.0 + load / 100.0) * PROFIT_MARGIN
    prices = np.asarray(neighbor_prices, dtype=np.float64)
    if prices.size == 0:
        return float(cost_term)
    return float(max(cost_term, MARKET_UNDERCUT * prices.mean()))


def quote_prices(
    base_cost: np.ndarray, load: np.ndarray, neighbor_price_sum: np.ndarray, neighbor_count: np.ndarray
) -> np.ndarray:
    """Vectorised :func:`quote_price` for many nodes at once (same formula, element-wise).

    :param neighbor_price_sum: sum of each node's neighbours' quotes.
    :param neighbor_count: number of neighbours; a node with none quotes the cost term alone.
    """
    cost_term = base_cost * (1.0 + load / 100.0) * PROFIT_MARGIN
    market = MARKET_UNDERCUT * neighbor_price_sum / np.maximum(neighbor_count, 1)
    return np.where(neighbor_count > 0, np.maximum(cost_term, market), cost_term)


def masked_median(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Median over the last axis of the entries where ``mask`` holds; ``nan`` where none do.

    A sort-based version of ``np.nanmedian`` that stays fast for many short rows.
    """
    mask = np.asarray(mask, dtype=bool)
    filled = np.where(mask, values, np.inf)
    ordered = np.sort(filled, axis=-1)
    count = mask.sum(axis=-1)
    lo = np.maximum((count - 1) // 2, 0)[..., None]
    hi = np.maximum(count // 2, 0)[..., None]
    with np.errstate(invalid="ignore"):
        median = 0.5 * (np.take_along_axis(ordered, lo, -1) + np.take_along_axis(ordered, hi, -1))[..., 0]
    return np.where(count > 0, median, np.nan)


def fair_price(neighbor_quotes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A node's estimate of a fair price: the median of its neighbours' quotes.

    The median resists a minority of overpricers. ``neighbor_quotes`` and ``mask`` have shape
    ``(..., K)``; the result has shape ``(...)``. A node with no neighbours gets ``nan``.
    """
    return masked_median(np.asarray(neighbor_quotes, dtype=np.float64), mask)
