"""Chatbot Arena battles: two models answer the same user turn, a judge picks ``winner``.

``winner``: ``model_a`` / ``model_b`` / ``tie`` / ``tie (bothbad)`` (a tie, with ``meta.tie = "bothbad"``).
``judge`` becomes the rater, the model names the response ids. The prompt is the conversation up to the
last assistant turn, which must be the same in both conversations: true for one-turn battles; in multi-turn
battles earlier assistant turns differ between the models, so the two answers do not share one prompt and
the battle is quarantined (``multi_turn_divergent``) rather than silently flattened.
"""

from __future__ import annotations

from typing import Any

from rewardlab.data.formats import RowError, per_row

NAME = "arena"
STATEFUL = False
WINNERS = {"model_a": [1, 2], "model_b": [2, 1], "tie": [1, 1], "tie (bothbad)": [1, 1]}
_META = ("question_id", "model_a", "model_b", "turn", "anony", "language", "tstamp")


def looks_like(keys: set[str], first: dict[str, Any]) -> bool:
    return {"winner", "conversation_a", "conversation_b"} <= keys


def _split(conv: Any, field: str) -> tuple[list[dict], str]:
    if not isinstance(conv, list) or not conv or not all(isinstance(m, dict) for m in conv):
        raise RowError("wrong_type", f"field '{field}' must be a non-empty list of messages")
    last = conv[-1]
    if last.get("role") != "assistant":
        raise RowError("missing_field", f"field '{field}' does not end with an assistant turn")
    return [{"role": m.get("role"), "content": m.get("content")} for m in conv[:-1]], last.get("content")


def _one(obj: dict[str, Any]) -> list[tuple[dict | None, str | None, str]]:
    winner = obj.get("winner")
    if not isinstance(winner, str) or winner not in WINNERS:
        raise RowError("unknown_choice", f"field 'winner' must be one of {sorted(WINNERS)}, got {winner!r}")
    prompt_a, answer_a = _split(obj.get("conversation_a"), "conversation_a")
    prompt_b, answer_b = _split(obj.get("conversation_b"), "conversation_b")
    if prompt_a != prompt_b:
        raise RowError(
            "multi_turn_divergent", "the conversations differ before the last answer (multi-turn battle)"
        )
    meta = {k: obj[k] for k in _META if obj.get(k) is not None}
    if winner == "tie (bothbad)":
        meta["tie"] = "bothbad"
    rec = {
        "prompt": prompt_a,
        "responses": [
            {"id": str(obj.get("model_a", "a")), "text": answer_a},
            {"id": str(obj.get("model_b", "b")), "text": answer_b},
        ],
        "ranks": WINNERS[winner],
        "rater": obj.get("judge"),
        "meta": meta,
    }
    if obj.get("question_id") is not None:
        rec["id"] = f"arena-{obj['question_id']}-{obj.get('judge')}-{obj.get('tstamp')}"
    return [(rec, None, "")]


convert = per_row(_one)
