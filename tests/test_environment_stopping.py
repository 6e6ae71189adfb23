"""Stopping rules: rounds, plateau of mean alignment x engagement, budget of calls / tokens / cost on the world's
usage total (the sum of its backends' meters and what earlier processes spent)."""

from __future__ import annotations

import asyncio

import pytest

from agents.backends.base import ChatBackend, Completion
from agents.backends.usage import UsageAccounting, UsageMeter, UsageTotal
from conf.errors import UserError
from conf.schema.world import Plateau, Stopping
from environment.analysis import society_score
from environment.stopping import Budget, Stopper
from tests.test_environment_episodes import make_record


def scored(round_: int, agent: int, alignment: int | None, engagement: int | None) -> dict:
    record = make_record(round_, agent)
    record["observer"]["revision"] = {"alignment": alignment, "engagement": engagement, "reasons": {}}
    return record


def feed_round(stopper: Stopper, round_: int, pairs: list[tuple[int | None, int | None]]) -> None:
    for agent, (a, e) in enumerate(pairs):
        stopper.observe(scored(round_, agent, a, e))


def test_society_score_is_the_papers_product_of_means_and_skips_invalid_scores() -> None:
    records = [scored(0, 0, 3, 4), scored(0, 1, 5, 2), scored(0, 2, None, 7)]
    assert society_score(records) == pytest.approx((3 + 5) / 2 * (4 + 2 + 7) / 3)
    assert society_score(records, "mean_of_products") == (12 + 10) / 2  # the rule before 2026-12
    assert society_score([scored(0, 0, None, None)]) is None
    assert society_score([scored(0, 0, 4, None)]) is None  # no engagement at all: no product


def test_plateau_default_is_the_product_of_means_and_the_old_rule_stays_available() -> None:
    opposite, steady = [(1, 7), (7, 1)], [(4, 4), (4, 4)]  # mean of products 7 then 16; product of means 16 twice
    paper = Stopper(n_agents=2, rounds=5, plateau=Plateau(window=1, epsilon=0.0))
    old = Stopper(n_agents=2, rounds=5, plateau=Plateau(window=1, epsilon=0.0, score="mean_of_products"))
    for stopper in (paper, old):
        feed_round(stopper, 0, opposite)
        feed_round(stopper, 1, steady)
    assert paper.scores == {0: 16.0, 1: 16.0} and paper.reason is not None and paper.reason.startswith("plateau")
    assert old.scores == {0: 7.0, 1: 16.0} and old.reason is None


def test_unknown_plateau_score_is_a_one_line_user_error() -> None:
    with pytest.raises(UserError, match="stopping.plateau.score='median' must be one of product_of_means"):
        Stopping(plateau=Plateau(score="median")).check("stopping")


def test_plateau_fires_when_the_last_window_gains_no_more_than_epsilon() -> None:
    stopper = Stopper(n_agents=2, rounds=10, plateau=Plateau(window=2, epsilon=1.0))
    feed_round(stopper, 0, [(2, 2), (2, 2)])  # 4
    feed_round(stopper, 1, [(3, 3), (3, 3)])  # 9
    feed_round(stopper, 2, [(3, 3), (3, 4)])  # 10.5: gained 6.5 over round 0
    assert stopper.reason is None
    feed_round(stopper, 3, [(3, 3), (3, 3)])  # best of rounds 2-3 (10.5) > best before (9) + 1
    assert stopper.reason is None
    feed_round(stopper, 4, [(3, 3), (3, 3)])  # best of rounds 3-4 is 9 <= 10.5 + 1
    assert stopper.reason is not None and stopper.reason.startswith("plateau")
    assert stopper.stopped_after_round == 4


def test_plateau_waits_for_complete_rounds() -> None:
    stopper = Stopper(n_agents=3, rounds=5, plateau=Plateau(window=1, epsilon=0.0))
    feed_round(stopper, 0, [(4, 4)] * 3)
    stopper.observe(scored(1, 0, 1, 1))  # round 1 incomplete: no decision on a partial round
    stopper.observe(scored(1, 1, 1, 1))
    assert stopper.reason is None and stopper.completed_rounds() == [0]
    stopper.observe(scored(1, 2, 1, 1))
    assert stopper.reason is not None and stopper.completed_rounds() == [0, 1]


def test_rounds_reason_and_budget_rules() -> None:
    stopper = Stopper(n_agents=1, rounds=2)
    feed_round(stopper, 0, [(5, 5)])
    assert stopper.finish_reason() == "incomplete"
    feed_round(stopper, 1, [(5, 5)])
    assert stopper.finish_reason().startswith("rounds")

    meter = UsageMeter(prompt_tokens=900, completion_tokens=200, cost_usd=1.3)
    for limits, expected in [
        ({"max_calls": 0}, "calls"),
        ({"max_tokens": 1000}, "tokens"),
        ({"max_cost": 1.3}, "cost"),
    ]:
        budget = Stopper(n_agents=1, rounds=2, budget=Budget(**limits))
        budget.check_budget(meter)
        assert budget.reason is not None and expected in budget.reason
    unlimited = Stopper(n_agents=1, rounds=2, budget=Budget(max_tokens=2000, max_cost=5.0))
    unlimited.check_budget(meter)
    assert unlimited.reason is None


class Fixed(ChatBackend):
    model = "m-cheap"

    async def chat(self, messages, sampling=None) -> Completion:  # noqa: ANN001
        return Completion("ok", prompt_tokens=1000, completion_tokens=500, model=self.model, calls=2, retries=1)


def test_the_world_total_sums_its_backends_meters_and_the_earlier_processes() -> None:
    cheap = UsageMeter(model="m-cheap", prices={"m-cheap": {"prompt": 2.0, "completion": 10.0}})
    free = UsageMeter(model="m-free")
    earlier = UsageMeter(prices=cheap.prices)
    earlier.add_usage({"calls": 10, "prompt_tokens": 1e6, "completion_tokens": 0, "retries": 1}, model="m-cheap")
    total = UsageTotal(earlier, cheap, free, cheap)  # a backend shared by several agents counts once
    spends: list[int] = []
    total.on_spend = lambda: spends.append(total.calls)
    for backend in (UsageAccounting(Fixed(), cheap), UsageAccounting(Fixed(), free), UsageAccounting(Fixed(), cheap)):
        asyncio.run(backend.chat([{"role": "user", "content": "hi"}]))
    assert (cheap.calls, free.calls, cheap.in_flight, free.tokens) == (4, 2, 0, 1500)
    assert (total.calls, total.retries, total.tokens, total.in_flight, spends) == (16, 4, 1_004_500, 0, [12, 14, 16])
    assert total.cost_usd == pytest.approx(2.0 + 2 * (1000 * 2.0 + 500 * 10.0) / 1e6)
    assert total.summary() == {"calls": 16, "tokens": 1_004_500, "retries": 4, "cost": 2.014}


@pytest.mark.parametrize(
    ("budget", "allowed"),
    [(Budget(max_calls=6), 3), (Budget(max_tokens=4000), 3), (Budget(max_cost=0.01), 2)],
)
def test_the_budget_is_reached_at_the_call_that_crosses_it(budget: Budget, allowed: int) -> None:
    meter = UsageMeter(model="m-cheap", prices={"m-cheap": {"prompt": 2.0, "completion": 10.0}})  # $0.007 a call
    stopper, total = Stopper(n_agents=1, rounds=1, budget=budget), UsageTotal(meter)
    total.on_spend = lambda: stopper.check_budget(total)
    backend = UsageAccounting(Fixed(), meter)
    while stopper.reason is None:
        asyncio.run(backend.chat([{"role": "user", "content": "hi"}]))
    assert meter.requests == allowed and stopper.reason.startswith("budget: ")
