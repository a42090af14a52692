"""The quality gate's rules, without MLflow."""

from training.gate import decide


def test_first_candidate_needs_only_to_beat_the_best_baseline_by_the_margin():
    assert decide(8.9, ("linear", 10.0), 0.10, champion=None).promote
    refused = decide(9.1, ("linear", 10.0), 0.10, champion=None)
    assert not refused.promote
    assert "linear" in refused.reasons[0] and "> 9.0000" in refused.reasons[0]


def test_a_candidate_worse_than_the_champion_stays_out():
    decision = decide(5.2, ("linear", 10.0), 0.10, champion=("3", 5.0))
    assert not decision.promote
    assert "version 3" in decision.reasons[1]


def test_a_candidate_as_good_as_the_champion_or_better_is_promoted():
    assert decide(5.0, ("linear", 10.0), 0.10, champion=("3", 5.0)).promote
    assert decide(4.0, ("linear", 10.0), 0.10, champion=("3", 5.0)).promote


def test_beating_the_champion_is_not_enough_without_beating_the_baselines():
    assert not decide(9.5, ("linear", 10.0), 0.10, champion=("3", 12.0)).promote


def test_a_champion_that_cannot_be_scored_stays_and_the_reason_says_why():
    decision = decide(4.0, ("linear", 10.0), 0.10, champion=("3", float("nan")), champion_unscored="reads v0")
    assert not decision.promote
    assert "version 3" in decision.reasons[1] and "reads v0" in decision.reasons[1] and "inf" not in decision.reasons[1]
