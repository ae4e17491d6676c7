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


def fair_price(neighbor_quotes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A node's estimate of a fair price: the median of its neighbours' quotes.

    The median resists a minority of overpricers. ``neighbor_quotes`` and ``mask`` have shape
    ``(..., K)``; the result has shape ``(...)``. A node with no neighbours gets ``nan``.
    """
    quotes = np.where(mask, neighbor_quotes, np.nan)
    with np.errstate(all="ignore"):
        if quotes.ndim == 1:
            return np.asarray(np.nanmedian(quotes) if mask.any() else np.nan)
        out = np.full(quotes.shape[:-1], np.nan)
        has_any = mask.any(axis=-1)
        if has_any.any():
            out[has_any] = np.nanmedian(quotes[has_any], axis=-1)
        return out
