"""Pricing: the quotes a node announces and the charges it accepts, as pure functions.

A node quotes ``agents.economics.quote_price`` (its cost, its load, the fair-looking market) in wei
per size unit (:func:`to_wei`, capped so quote x size always fits the wire's u64); it follows a
market from which outliers are left out (:func:`fair_market`: above the price ceiling, or far from
the median), measures others against the lower median of its own cost and its neighbours' quotes
(:func:`market_reference`), raises its announced quote at most ``step_up`` per announcement
(:func:`next_announcement`), and as a payer accepts a charge up to the highest quote announced since
the hand-over, at most ``max_jump`` times the hand-over quote (:func:`max_charge`). ``NodeCore``
keeps the state (its quotes, the quotes heard per peer) and calls these.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from agents.empathy import PRICE_TOLERANCE
from runtime.node.wire import MAX_U64

__all__ = ["MAX_QUOTE_WEI", "fair_market", "market_reference", "max_charge", "next_announcement", "to_wei"]

#: Largest quote (wei per unit) a node announces: quote x size always fits the wire's u64.
MAX_QUOTE_WEI = 2**56


def to_wei(units: float, wei_per_unit: int) -> int:
    """A quote in size units as wei per unit, at least 1, at most :data:`MAX_QUOTE_WEI` (also for inf/nan)."""
    wei = units * wei_per_unit
    if not wei < MAX_QUOTE_WEI:
        return MAX_QUOTE_WEI
    return max(1, int(wei))


def market_reference(own_wei: int, peer_quotes: Iterable[int]) -> int:
    """The lower median of this node's own cost term and its neighbours' quotes (one neighbour alone
    cannot move it)."""
    quotes = sorted([own_wei, *peer_quotes])
    return quotes[(len(quotes) - 1) // 2]


def fair_market(quotes: np.ndarray, ceiling: float) -> np.ndarray:
    """The quotes a node follows: those at most ``ceiling``, then those near their median."""
    market = quotes[quotes <= ceiling] if quotes.size else quotes
    if market.size:
        median = float(np.median(market))
        market = market[np.abs(market - median) < PRICE_TOLERANCE * median]
    return market


def next_announcement(target: int, last: int, step_up: float) -> int:
    """The quote to announce: ``target``, risen at most ``step_up`` per announcement from ``last``."""
    return min(target, max(last + 1, int(last * step_up)))


def max_charge(handover_quote: int, heard: Iterable[int], size: float, max_jump: float, tolerance: float) -> int:
    """The most a payee may charge for a piece of ``size`` handed over at ``handover_quote``, given the
    quotes it announced since (``heard``): the highest of them, at most ``max_jump`` times the hand-over
    quote, times the size, with a rounding ``tolerance``."""
    top = max(heard, default=handover_quote)
    quote = max(handover_quote, min(top, int(max_jump * handover_quote)))
    return min(MAX_U64, int(quote * size * (1.0 + tolerance)) + 1)
