"""UltraFeedback: an instruction, K completions, each with per-aspect ratings (from GPT-4, not humans).

``completions[].annotations.<aspect>.Rating`` (strings "1"-"5", "N/A" allowed) become per-aspect
``scores``; ranks come from ``overall_score`` (higher is better, equal scores are ties), or from the mean of
the aspect ratings when ``overall_score`` is missing. Model names become response ids.
"""

from __future__ import annotations

from typing import Any

from rewardlab.data.formats import RowError, number, per_row, ranks_from_scores, text_of

NAME = "ultrafeedback"
STATEFUL = False
ASPECTS = ("instruction_following", "honesty", "truthfulness", "helpfulness")


def looks_like(keys: set[str], first: dict[str, Any]) -> bool:
    return "completions" in keys and "instruction" in keys


def _rating(value: Any, field: str) -> float | None:
    if isinstance(value, dict):
        value = value.get("Rating")
    if value is None or (isinstance(value, str) and value.strip().upper() in ("N/A", "")):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise RowError("wrong_type", f"field '{field}' rating {value[:40]!r} is not a number") from None
    return number(value, field)


def _one(obj: dict[str, Any]) -> list[tuple[dict | None, str | None, str]]:
    for key in ("instruction", "completions"):
        if obj.get(key) is None:
            raise RowError("missing_field", f"missing required field '{key}'")
    completions = obj["completions"]
    if not isinstance(completions, list) or not all(isinstance(c, dict) for c in completions):
        raise RowError("wrong_type", "field 'completions' must be a list of objects")
    responses, overall, scores = [], [], {a: [] for a in ASPECTS}
    for n, comp in enumerate(completions):
        responses.append(
            {
                "id": str(comp.get("model", n)),
                "text": text_of(comp.get("response"), f"completions[{n}].response"),
            }
        )
        notes = comp.get("annotations") or {}
        if not isinstance(notes, dict):
            raise RowError("wrong_type", f"field 'completions[{n}].annotations' must be an object")
        for aspect in ASPECTS:
            scores[aspect].append(_rating(notes.get(aspect), f"completions[{n}].annotations.{aspect}"))
        score = comp.get("overall_score")
        overall.append(None if score is None else number(score, f"completions[{n}].overall_score"))
    if any(o is None for o in overall):
        overall = []
        for n in range(len(completions)):
            vals = [scores[a][n] for a in ASPECTS if scores[a][n] is not None]
            if not vals:
                raise RowError("missing_field", f"completions[{n}] has no overall_score and no ratings")
            overall.append(sum(vals) / len(vals))
    rec = {
        "prompt": text_of(obj["instruction"], "instruction"),
        "responses": responses,
        "ranks": ranks_from_scores(overall),
        "scores": {a: v for a, v in scores.items() if any(x is not None for x in v)},
        "meta": {"source": obj.get("source"), "overall_score": overall},
    }
    return [(rec, None, "")]


convert = per_row(_one)
