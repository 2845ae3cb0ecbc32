"""The rule engine against a simple reference model, and the matching of rules and silences."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockping.settings import NotifyRule, SettingsError, load
from notify.rules import (
    Match,
    Params,
    State,
    Subject,
    agent_rules,
    matches,
    params,
    rules_for,
    step,
)

T0 = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)


def reference(
    outcomes: list[tuple[int, bool]],
    down_after: int | None,
    down_seconds: int | None,
    repeat: int,
    flap_changes: int,
    flap_window: int,
) -> list[tuple[str, int, int | None]]:
    """The messages, written from the definitions: (kind, time, since-or-downtime)."""
    out: list[tuple[str, int, int | None]] = []
    status, run, run_start = "unknown", 0, None
    changes: list[int] = []
    flapping = False
    reminded = 0
    down_since: int | None = None
    for t, ok in outcomes:
        if ok:
            run, run_start, new = 0, None, "up"
        else:
            run += 1
            run_start = t if run_start is None else run_start
            reached = run >= down_after if down_after else t - run_start >= (down_seconds or 0)
            new = "down" if reached else status
        if new != status:
            old, status = status, new
            if new == "down":
                down_since, reminded = run_start, t
            if old != "unknown" or new != "up":
                changes.append(t)
                recent = [c for c in changes if c > t - flap_window]
                if flapping:
                    pass
                elif len(recent) > flap_changes:
                    flapping = True
                    out.append(("flapping", t, None))
                elif new == "down":
                    out.append(("down", t, down_since))
                else:
                    assert down_since is not None
                    out.append(("recovered", t, t - down_since))
            continue
        if flapping and not [c for c in changes if c > t - flap_window]:
            flapping, reminded = False, t
            out.append(("settled", t, None))
        elif status == "down" and not flapping and repeat and t - reminded >= repeat:
            reminded = t
            out.append(("reminder", t, None))
    return out


def engine(outcomes: list[tuple[int, bool]], p: Params, splits: list[int]) -> list[Any]:
    """The engine's messages, with its state kept as JSON and read back at each split."""
    state = State()
    out: list[tuple[str, int, int | None]] = []
    for index, (t, ok) in enumerate(outcomes):
        if index in splits:  # a restart: the state goes through the store's JSON
            stored = msgspec.json.decode(msgspec.json.encode(state))
            state = msgspec.convert(stored, State, strict=False)
        for change in step(state, p, T0 + timedelta(seconds=t), 1000 if ok else -2):
            extra = None
            if change.kind == "down":
                assert change.since is not None
                extra = int((change.since - T0).total_seconds())
            elif change.kind == "recovered":
                assert change.downtime is not None
                extra = int(change.downtime.total_seconds())
            out.append((change.kind, int((change.time - T0).total_seconds()), extra))
    return out


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[tuple[int, bool]], Params, list[int]]:
    """Random probe sequences with random thresholds and restart points."""
    gaps = draw(st.lists(st.integers(1, 10), min_size=0, max_size=80))
    results = draw(st.lists(st.booleans(), min_size=len(gaps), max_size=len(gaps)))
    times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    by_count = draw(st.booleans())
    p = Params(
        down_after_failures=draw(st.integers(1, 4)) if by_count else None,
        down_after_seconds=None if by_count else float(draw(st.integers(1, 30))),
        repeat_seconds=float(draw(st.sampled_from([0, 5, 20]))),
        flap_changes=draw(st.integers(1, 5)),
        flap_window_seconds=float(draw(st.integers(5, 100))),
    )
    splits = draw(st.lists(st.integers(0, max(len(gaps) - 1, 0)), max_size=4))
    return list(zip(times, results, strict=True)), p, splits


@settings(max_examples=1000, deadline=None)
@given(scenarios())
def test_the_engine_makes_the_reference_models_messages(
    scenario: tuple[list[tuple[int, bool]], Params, list[int]],
) -> None:
    """For any probe sequence, thresholds and restarts, the engine's messages equal the model's."""
    outcomes, p, splits = scenario
    expected = reference(
        outcomes,
        p.down_after_failures,
        int(p.down_after_seconds) if p.down_after_seconds else None,
        int(p.repeat_seconds),
        p.flap_changes,
        int(p.flap_window_seconds),
    )
    assert expected == engine(outcomes, p, splits)


def test_a_single_lost_probe_wakes_nobody() -> None:
    """With the default of 3 failures, one or two failures in a row say nothing."""
    p = Params(3, None, 0, 5, 600)
    outcomes = [(1, True), (2, False), (3, True), (4, False), (5, False), (6, True)]
    assert engine(outcomes, p, []) == []


def test_down_after_a_duration_counts_time_failing() -> None:
    """A duration rule is down once the failing run is that old, whatever the probe count."""
    p = Params(None, 60.0, 0, 5, 600)
    outcomes = [(0, True), (10, False), (40, False), (69, False), (70, False), (71, False)]
    assert engine(outcomes, p, []) == [("down", 70, 10)]


def subject(**labels: str) -> Subject:
    """A web container of project shop on host-a."""
    return Subject("host-a", "shop", "shop-web-1", "nginx:1.27", labels, 7)


def test_rules_match_on_globs_of_agent_project_name_image_and_label() -> None:
    """Every non-empty glob must fit; empty ones match anything."""
    assert matches(NotifyRule(name="a", project="shop", container="shop-*"), subject())
    assert matches(NotifyRule(name="a", image="nginx:*", agent="host-?"), subject())
    assert not matches(NotifyRule(name="a", image="postgres*"), subject())
    assert matches(NotifyRule(name="a", label="tier=front*"), subject(tier="frontend"))
    assert not matches(NotifyRule(name="a", label="tier=front*"), subject(tier="db"))
    assert matches(Match(target_id=7), subject())
    assert not matches(Match(target_id=8), subject())


def test_labels_opt_out_or_route_to_one_rule() -> None:
    """dockping.notify=false applies no rule; dockping.notify=ops applies only the rule ops."""
    rules = [NotifyRule(name="all"), NotifyRule(name="ops", project="other")]
    assert [r.name for r in rules_for(rules, subject())] == ["all"]
    assert rules_for(rules, subject(**{"dockping.notify": "false"})) == []
    assert [r.name for r in rules_for(rules, subject(**{"dockping.notify": "ops"}))] == ["ops"]


def test_agent_messages_go_to_rules_that_match_on_no_more_than_the_agent() -> None:
    """A rule for one project hears nothing of agents; a rule for the agent does."""
    rules = [NotifyRule(name="shop", project="shop"), NotifyRule(name="a", agent="host-*")]
    assert [r.name for r in agent_rules(rules, "host-a")] == ["a"]
    assert agent_rules(rules, "edge-1") == []


def test_rules_load_from_settings_toml(tmp_path: Path) -> None:
    """[[notify.rules]] tables load with their globs, thresholds and URLs."""
    path = tmp_path / "settings.toml"
    path.write_text(
        '[[notify.rules]]\nname = "shop"\nproject = "shop"\ndown_after = "1m"\nrepeat = "1h"\n'
        'urls = ["ntfys://ntfy.sh/t"]\n',
        encoding="utf-8",
    )
    rule = load(path, {}).notify.rules[0]
    assert (rule.name, rule.project, rule.urls) == ("shop", "shop", ["ntfys://ntfy.sh/t"])
    assert params(rule, 4, 600.0) == Params(None, 60.0, 3600.0, 4, 600.0)


@pytest.mark.parametrize(
    ("rule", "named"),
    [
        ('name = "a"\ndown_after = 0', "notify.rules[0]: down_after: must be at least 1"),
        ('name = "a"\ndown_after = "soon"', "notify.rules[0]: down_after: invalid duration"),
        ('name = ""', "notify.rules[0]: name: must not be empty"),
        ('name = "a"\ncolour = "red"', "notify.rules[0].colour: unknown key"),
    ],
)
def test_a_bad_rule_is_refused_naming_it(tmp_path: Path, rule: str, named: str) -> None:
    """A bad rule stops the settings from loading, with a message naming the rule and key."""
    path = tmp_path / "settings.toml"
    path.write_text(f"[[notify.rules]]\n{rule}\n", encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        load(path, {})
    assert named in str(caught.value)
