"""The world's grid: one agent per cell, social circles by Euclidean distance, optional random-walk movement.

Circles are precomputed per cell (a tuple of cell indices), so a lookup is O(k). Agents move only between rounds;
positions of round r are a deterministic function of (seed, r), so any turn can ask for any round's layout.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field


@dataclass
class Grid:
    """A `size × size` grid; `torus` wraps the edges so every cell has a circle of the same size."""

    size: int
    radius: float
    torus: bool = True
    circles: tuple[tuple[int, ...], ...] = field(init=False, repr=False)
    adjacent: tuple[tuple[int, ...], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.circles = self._neighbourhoods(self.radius)
        self.adjacent = self._neighbourhoods(1.0)

    def _neighbourhoods(self, radius: float) -> tuple[tuple[int, ...], ...]:
        """Each cell's cells within `radius` (itself excluded), from the offsets within reach: O(cells · k)."""
        reach = min(int(math.floor(radius)), self.size - 1)
        offsets = [(dr, dc) for dr in range(-reach, reach + 1) for dc in range(-reach, reach + 1)
                   if (dr, dc) != (0, 0) and math.hypot(dr, dc) <= radius]  # fmt: skip
        result = []
        for cell in range(self.cells):
            row, col = self.coords(cell)
            found = set()
            for dr, dc in offsets:
                r, c = row + dr, col + dc
                if self.torus:
                    r, c = r % self.size, c % self.size
                elif not (0 <= r < self.size and 0 <= c < self.size):
                    continue
                found.add(r * self.size + c)  # never the cell itself: 0 < |offset| < size; a wrap only shortens it
            result.append(tuple(sorted(found)))
        return tuple(result)

    @property
    def cells(self) -> int:
        return self.size * self.size

    def coords(self, cell: int) -> tuple[int, int]:
        return divmod(cell, self.size)

    def distance(self, a: int, b: int) -> float:
        """Euclidean distance between two cells (the shorter way round on a torus)."""
        (ra, ca), (rb, cb) = self.coords(a), self.coords(b)
        dr, dc = abs(ra - rb), abs(ca - cb)
        if self.torus:
            dr, dc = min(dr, self.size - dr), min(dc, self.size - dc)
        return math.hypot(dr, dc)

    def smallest_circle(self) -> int:
        return min(len(c) for c in self.circles)

    def largest_circle(self) -> int:
        return max(len(c) for c in self.circles)


class Layout:
    """Where each agent sits in each round. `movement`: "none" (the reference) or "random_walk"."""

    def __init__(self, grid: Grid, movement: str = "none", seed: int = 0, move_fraction: float = 0.5) -> None:
        self.grid, self.movement, self.seed, self.move_fraction = grid, movement, seed, move_fraction
        self._positions: list[list[int]] = [list(range(grid.cells))]  # round 0: agent i at cell i
        self._occupant: dict[int, list[int]] = {}

    def positions(self, round_: int) -> list[int]:
        """agent → cell in `round_` (computed once, cached)."""
        while len(self._positions) <= round_:
            self._positions.append(self._step(self._positions[-1], len(self._positions)))
        return self._positions[round_]

    def _step(self, previous: list[int], round_: int) -> list[int]:
        """Random walk: each agent, with probability `move_fraction`, swaps cells with an adjacent neighbour."""
        if self.movement == "none":
            return previous
        rng = random.Random(f"walk:{self.seed}:{round_}")
        positions = list(previous)
        occupant = {cell: agent for agent, cell in enumerate(positions)}
        for agent in rng.sample(range(len(positions)), len(positions)):
            if rng.random() >= self.move_fraction:
                continue
            cell = positions[agent]
            adjacent = self.grid.adjacent[cell]
            if not adjacent:
                continue
            target = rng.choice(adjacent)
            other = occupant[target]
            positions[agent], positions[other] = target, cell
            occupant[target], occupant[cell] = agent, other
        return positions

    def circle(self, agent: int, round_: int) -> list[int]:
        """The agents in `agent`'s social circle in `round_`."""
        occupant = self._occupants(round_)
        return [occupant[c] for c in self.grid.circles[self.positions(round_)[agent]]]

    def _occupants(self, round_: int) -> list[int]:
        """cell → agent in `round_` (cached: a circle lookup is O(k))."""
        if round_ not in self._occupant:
            occupant = [0] * self.grid.cells
            for agent, cell in enumerate(self.positions(round_)):
                occupant[cell] = agent
            self._occupant[round_] = occupant
        return self._occupant[round_]


def pick_raters(
    layout: Layout,
    agent: int,
    round_: int,
    k: int,
    global_fraction: float,
    rng: random.Random,
    top_up: bool = False,
) -> list[int]:
    """Up to k peers: `round(k * global_fraction)` from anywhere on the grid ("social media"), the rest from the circle.

    Like the reference, an agent whose circle is smaller than its local share gets min(share, |circle|) local raters.
    `top_up` (the rule before 2026-12) instead fills the shortfall from the whole grid.
    """
    n_global = round(k * global_fraction)
    circle = layout.circle(agent, round_)
    local = rng.sample(circle, min(k - n_global, len(circle)))
    wanted = k - len(local) if top_up else n_global
    if wanted <= 0:
        return local
    taken = {agent, *local}
    others = [a for a in range(layout.grid.cells) if a not in taken]
    return local + rng.sample(others, min(wanted, len(others)))
