"""The grid's social circles (hand-computed), O(k) lookups, rater selection and random-walk movement."""

from __future__ import annotations

import random

import pytest
from omegaconf import OmegaConf

from conf.errors import UserError
from conf.schema.world import World
from environment.assemble import grid_from
from environment.grid import Grid, Layout, pick_raters

# 3x3 grid, cells numbered row by row:
#   0 1 2
#   3 4 5
#   6 7 8


def test_torus_3x3_radius_1_circles_by_hand() -> None:
    grid = Grid(3, 1.0, torus=True)
    # Only the 4 von Neumann neighbours are within distance 1 (diagonals are sqrt 2); edges wrap around.
    assert grid.circles[4] == (1, 3, 5, 7)
    assert grid.circles[0] == (1, 2, 3, 6)  # right, wrapped left (2), down, wrapped up (6)
    assert grid.circles[8] == (2, 5, 6, 7)
    assert all(len(circle) == 4 for circle in grid.circles)


def test_non_torus_3x3_radius_1_edges_have_smaller_circles() -> None:
    grid = Grid(3, 1.0, torus=False)
    assert grid.circles[0] == (1, 3)
    assert grid.circles[2] == (1, 5)
    assert grid.circles[4] == (1, 3, 5, 7)
    assert grid.circles[7] == (4, 6, 8)
    assert grid.smallest_circle() == 2


def test_non_torus_4x4_radius_1_5_includes_diagonals() -> None:
    #  0  1  2  3
    #  4  5  6  7
    #  8  9 10 11
    # 12 13 14 15
    grid = Grid(4, 1.5, torus=False)
    assert grid.circles[0] == (1, 4, 5)
    assert grid.circles[5] == (0, 1, 2, 4, 6, 8, 9, 10)
    assert grid.circles[15] == (10, 11, 14)


@pytest.mark.parametrize(
    ("size", "radius", "torus"), [(5, 2.0, True), (5, 2.5, False), (4, 3.0, True), (3, 10.0, True)]
)
def test_precomputed_circles_equal_brute_force_distance(size: int, radius: float, torus: bool) -> None:
    grid = Grid(size, radius, torus)
    brute = tuple(
        tuple(b for b in range(size * size) if b != a and grid.distance(a, b) <= radius) for a in range(size * size)
    )
    assert grid.circles == brute


def test_circle_lookup_uses_the_precomputed_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lookup never computes a distance or scans the grid: it reads k precomputed entries."""
    layout = Layout(Grid(10, 1.0, torus=True))
    layout.circle(0, 0)  # warm the per-round occupant table

    def no_distance(*_args: object) -> float:
        raise AssertionError("circle lookup computed a distance")

    monkeypatch.setattr(Grid, "distance", no_distance)
    assert layout.circle(55, 0) == [45, 54, 56, 65]
    assert all(len(layout.circle(a, 0)) == 4 for a in range(100))


def test_pick_raters_samples_k_of_a_larger_circle_and_global_raters_from_anywhere() -> None:
    layout = Layout(Grid(5, 1.5, torus=True))  # 8 peers within radius 1.5 (diagonals included), k = 4
    circle = set(layout.circle(12, 0))
    assert len(circle) == 8
    picks = [pick_raters(layout, 12, 0, 4, 0.0, random.Random(seed)) for seed in range(20)]
    assert all(len(p) == len(set(p)) == 4 and set(p) <= circle for p in picks)
    assert len({frozenset(p) for p in picks}) > 1 and set().union(*picks) == circle  # a sample, not a fixed subset
    far = set(range(25)) - circle - {12}
    mixed = [pick_raters(layout, 12, 0, 4, 0.5, random.Random(seed)) for seed in range(20)]
    assert all(len(m) == len(set(m)) == 4 and 12 not in m and set(m[:2]) <= circle for m in mixed)
    assert any(set(m[2:]) & far for m in mixed)  # the global half reaches beyond the circle


def test_a_short_circle_gives_fewer_raters_not_strangers() -> None:
    """The reference takes min(k, |circle|): a corner of a non-torus grid (2 peers) gets 2 raters, not 2 + 2 from
    far away; raters beyond the circle come only through global_fraction. top_up=True keeps the old rule."""
    layout = Layout(Grid(3, 1.0, torus=False))
    assert sorted(pick_raters(layout, 0, 0, 4, 0.0, random.Random(0))) == [1, 3]
    assert sorted(pick_raters(layout, 4, 0, 4, 0.0, random.Random(0))) == [1, 3, 5, 7]  # the centre still gets 4
    mixed = pick_raters(layout, 0, 0, 4, 0.5, random.Random(0))
    assert len(mixed) == 4 and set(mixed[:2]) == {1, 3} and 0 not in mixed  # 2 local + 2 global
    old = pick_raters(layout, 0, 0, 4, 0.0, random.Random(0), top_up=True)
    assert len(old) == 4 and set(old[:2]) == {1, 3} and set(old[2:]) <= {2, 4, 5, 6, 7, 8}


def _grid_k(**world: object) -> int:
    """k for the default world (its schema's defaults are conf/world/default.yaml's values) with `world` changed,
    checked by the schema first, as sa-simulate does."""
    node = OmegaConf.merge(OmegaConf.structured(World), world)
    OmegaConf.to_object(node).check("world")
    return grid_from(OmegaConf.create({"world": node}))[1]


def test_default_k_is_four_per_agent_not_capped_at_the_smallest_circle() -> None:
    assert _grid_k(torus=False) == 4  # non-torus 3x3: corners have 2 peers, the centre 4
    assert _grid_k(torus=False, circle_top_up=True) == 2  # the old rule capped everyone at the corners' 2
    assert _grid_k(size=2) == 3  # a 2x2 grid has only 3 other agents
    assert _grid_k(torus=False, k=4) == 4  # an explicit k up to the largest circle is accepted
    with pytest.raises(UserError, match="world.k=5 is larger than the social circle"):
        _grid_k(torus=False, k=5)
    with pytest.raises(UserError, match="world.question_order='random'"):
        _grid_k(question_order="random")


def test_random_walk_keeps_one_agent_per_cell_and_is_deterministic() -> None:
    grid = Grid(4, 1.0, torus=False)
    layout = Layout(grid, "random_walk", seed=3, move_fraction=1.0)
    previous = layout.positions(0)
    moved = 0
    for round_ in range(1, 6):
        positions = layout.positions(round_)
        assert sorted(positions) == list(range(16))
        moved += sum(a != b for a, b in zip(previous, positions, strict=True))
        previous = positions
    assert moved > 0
    again = Layout(grid, "random_walk", seed=3, move_fraction=1.0)
    assert again.positions(5) == layout.positions(5)  # deterministic per (seed, round)
    assert Layout(grid).positions(5) == list(range(16))  # movement none: agents never move
