"""Template choice: deterministic per record, fixed index, custom template checks."""

from __future__ import annotations

from collections import Counter

import pytest
import typer

from converters.prompts import PromptChoice, checked_choice, choose_template, seeded_index

TEMPLATES = ("a {x}", "b {x}", "c {x}")


def test_seeded_choice_depends_only_on_seed_and_key() -> None:
    keys = [f"id-{i}" for i in range(300)]
    picks = [seeded_index(0, key, 3) for key in keys]
    assert picks == [seeded_index(0, key, 3) for key in reversed(keys)][::-1]
    assert min(Counter(picks).values()) > 70  # roughly uniform
    assert picks != [seeded_index(1, key, 3) for key in keys]
    assert seeded_index(0, "id-0", 3) == 2  # recorded value: changing the rule changes outputs


def test_precedence_custom_then_index_then_seed() -> None:
    assert choose_template(TEMPLATES, "k", PromptChoice(template="mine")) == "mine"
    assert choose_template(TEMPLATES, "k", PromptChoice(index=2)) == "c {x}"
    assert (
        choose_template(TEMPLATES, "k", PromptChoice(seed=0)) == TEMPLATES[seeded_index(0, "k", 3)]
    )


def test_cli_values_are_checked() -> None:
    assert checked_choice(0, None, "Q {x}\\nA", TEMPLATES, {"x"}).template == "Q {x}\nA"
    with pytest.raises(typer.BadParameter, match=r"0\.\.2"):
        checked_choice(0, 3, None, TEMPLATES, {"x"})
    with pytest.raises(typer.BadParameter, match="unknown field"):
        checked_choice(0, None, "{y}", TEMPLATES, {"x"})
    with pytest.raises(typer.BadParameter, match="not a valid template"):
        checked_choice(0, None, "{x", TEMPLATES, {"x"})
