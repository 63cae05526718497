"""Stanford SHP: a Reddit post (``history``) and two top-level comments ranked by their upvotes.

``labels`` is 1 when comment A is preferred. The ratio of the two comment scores becomes a strength label
(SHP's authors train on ratios >= 2): ``significantly better`` (>= 4), ``better`` (>= 2),
``slightly better`` (>= 1.25), ``negligibly better`` (below): spelled with spaces like the simulator's
labels and the shipped margin maps (``loss.margin``). There is no rater id in SHP.
"""

from __future__ import annotations

from typing import Any

from rewardlab.data.formats import RowError, number, per_row, text_of

NAME = "shp"
STATEFUL = False
STRENGTH_BUCKETS = (
    (4.0, "significantly better"),
    (2.0, "better"),
    (1.25, "slightly better"),
    (0.0, "negligibly better"),
)
_META = ("post_id", "domain", "upvote_ratio", "score_A", "score_B", "seconds_difference", "score_ratio")


def looks_like(keys: set[str], first: dict[str, Any]) -> bool:
    return {"human_ref_A", "human_ref_B"} <= keys or {"score_A", "score_B", "history"} <= keys


def strength(ratio: float) -> str:
    for threshold, label in STRENGTH_BUCKETS:
        if ratio >= threshold:
            return label
    return STRENGTH_BUCKETS[-1][1]


def _one(obj: dict[str, Any]) -> list[tuple[dict | None, str | None, str]]:
    for key in ("history", "human_ref_A", "human_ref_B", "labels"):
        if obj.get(key) is None:
            raise RowError("missing_field", f"missing required field '{key}'")
    label = obj["labels"]
    if isinstance(label, bool) or not isinstance(label, (int, float)) or label not in (0, 1):
        raise RowError("unknown_choice", f"field 'labels' must be 0 or 1, got {label!r}")
    ratio = obj.get("score_ratio")
    if ratio is None:
        a, b = number(obj.get("score_A"), "score_A"), number(obj.get("score_B"), "score_B")
        ratio = max(a, b) / min(a, b) if min(a, b) > 0 else float("inf")
    else:
        ratio = number(ratio, "score_ratio")
    rec = {
        "id": f"shp-{obj['post_id']}-{obj.get('c_root_id_A')}-{obj.get('c_root_id_B')}"
        if obj.get("post_id")
        else None,
        "prompt": text_of(obj["history"], "history"),
        "responses": [
            {"id": str(obj.get("c_root_id_A", "A")), "text": text_of(obj["human_ref_A"], "human_ref_A")},
            {"id": str(obj.get("c_root_id_B", "B")), "text": text_of(obj["human_ref_B"], "human_ref_B")},
        ],
        "ranks": [1, 2] if int(label) == 1 else [2, 1],
        "strength": strength(float(ratio)),
        "meta": {k: obj[k] for k in _META if obj.get(k) is not None},
    }
    return [(rec, None, "")]


convert = per_row(_one)
