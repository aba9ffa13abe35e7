"""Accuracy normalisation and ANLS against hand-computed values."""

from __future__ import annotations

import pytest

from phi3v_train.metrics import (
    anls_score,
    exact_match,
    levenshtein,
    metric_for_source,
    normalize_for_accuracy,
    score,
)


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [("", "", 0), ("abc", "", 3), ("kitten", "sitting", 3), ("flaw", "lawn", 2), ("a", "a", 0)],
)
def test_levenshtein(a: str, b: str, distance: int) -> None:
    assert levenshtein(a, b) == distance
    assert levenshtein(b, a) == distance


def test_accuracy_normalisation_is_the_references() -> None:
    assert normalize_for_accuracy("  Yes. ") == "yes"
    assert normalize_for_accuracy("..No..") == "no"
    assert exact_match("Archery.", ["archery"]) == 1.0
    assert exact_match("Yes", ["No."]) == 0.0
    assert exact_match("b", ["a", "B."]) == 1.0
    # Inner punctuation and spaces still count.
    assert exact_match("base ball", ["baseball"]) == 0.0


def test_anls_official_definition() -> None:
    assert anls_score("0.28", ["0.28"]) == 1.0
    # Case and whitespace are normalised.
    assert anls_score("  New   York ", ["new york"]) == 1.0
    # One edit in 5 characters: 1 - 1/5 = 0.8.
    assert anls_score("hello", ["hallo"]) == pytest.approx(0.8)
    # Below the 0.5 threshold scores 0: 3 edits over 4 characters -> 0.25.
    assert anls_score("abcd", ["axyz"]) == 0.0
    # Maximum over gold answers.
    assert anls_score("hello", ["zzzzz", "hallo", "hello!"]) == pytest.approx(1 - 1 / 6)
    # An empty prediction scores 0.
    assert anls_score("", ["x"]) == 0.0
    assert anls_score("  ", ["x"]) == 0.0


def test_metric_choice_by_source() -> None:
    assert metric_for_source("docvqa") == "anls"
    assert metric_for_source("ucf101") == "accuracy"
    assert metric_for_source("nlvr2") == "accuracy"
    assert score("accuracy", "Yes.", ["yes"]) == 1.0
    with pytest.raises(ValueError, match="unknown metric"):
        score("bleu", "a", ["a"])
