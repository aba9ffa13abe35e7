"""Task metrics of the reference recipe: exact-match accuracy and DocVQA's ANLS.

- accuracy: `s.strip().strip(".").lower()` of prediction and gold must be equal (the
  reference's normalisation); with several gold answers any one may match.
- ANLS (official DocVQA definition): both strings normalised with
  `" ".join(s.strip().lower().split())`; `NL = levenshtein / max(len(gold), len(pred))`;
  a score `1 - NL` below 0.5 counts as 0; maximum over gold answers, mean over questions.
"""

from __future__ import annotations

from collections.abc import Sequence

ANLS_THRESHOLD = 0.5
METRICS = ("accuracy", "anls")
# Sources whose answers are free text read from a document: scored by ANLS.
_ANLS_SOURCES = frozenset({"docvqa"})


def metric_for_source(source: str) -> str:
    """The metric the reference recipe reports for a record source (`--metric auto`)."""
    return "anls" if source.lower() in _ANLS_SOURCES else "accuracy"


def normalize_for_accuracy(text: str) -> str:
    return text.strip().strip(".").lower()


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    answer = normalize_for_accuracy(prediction)
    return float(any(answer == normalize_for_accuracy(gold) for gold in golds))


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions of one character each cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


def _normalize_for_anls(text: str) -> str:
    return " ".join(text.strip().lower().split())


def anls_score(prediction: str, golds: Sequence[str]) -> float:
    """One question's ANLS: the best thresholded similarity over the gold answers."""
    answer = _normalize_for_anls(prediction)
    if not answer:
        return 0.0
    best = 0.0
    for gold in golds:
        target = _normalize_for_anls(gold)
        longest = max(len(target), len(answer))
        similarity = 1.0 - levenshtein(target, answer) / longest if longest else 1.0
        best = max(best, similarity if similarity >= ANLS_THRESHOLD else 0.0)
    return best


def score(metric: str, prediction: str, golds: Sequence[str]) -> float:
    if metric == "accuracy":
        return exact_match(prediction, golds)
    if metric == "anls":
        return anls_score(prediction, golds)
    raise ValueError(f"unknown metric {metric!r}: choose one of {', '.join(METRICS)}")
