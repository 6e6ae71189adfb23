"""Worlds: the grid, Back-Scatter protocol, async scheduler, episode store, stopping rules, metrics."""
