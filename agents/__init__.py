"""The node's mind, numpy only: memory, empathy, economics, propagation, features, baselines.

Nothing in this package imports torch: the live node loads it in well under a second on a
machine without torch. ``agents.inference`` runs an exported learned policy with numpy.
"""
