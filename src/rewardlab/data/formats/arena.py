"""Chatbot Arena battles and MT-Bench human judgments: two models answer a user turn, a judge picks ``winner``.

``winner``: ``model_a`` / ``model_b`` / ``tie`` / ``tie (bothbad)`` (a tie, with ``meta.tie = "bothbad"``).
``judge`` becomes the rater, the model names the response ids.

``turn`` decides what was judged (MT-Bench's export stores both turns' full two-turn conversations in every
row, so the conversation alone does not say):
- ``turn: N`` compares each model's N-th assistant answer; the prompt is the conversation before it.
  Turn 1 is the first answers to the first user message, always representable: later messages are cut.
- for N >= 2 each model answers in its own conversation (its own earlier answers). The canonical record
  has one prompt shared by all responses, so a turn-N judgment is imported only when both conversations
  are the same before the N-th answer; otherwise it is quarantined as ``multi_turn_divergent`` with the
  turn and the first message that differs. How to keep them: docs/data.md ("Multi-turn judgments").
- without ``turn`` (Arena's one-turn battles), the last assistant answer is the judged one, as before.
The user messages must agree up to the judged answer in every case (``prompt_mismatch`` otherwise): two
models answering different questions are not a comparison.

Record ids are unique per judgment: ``arena-<question>-<model_a>-<model_b>-t<turn>-<judge>`` plus
``-<tstamp>`` where the row has one (MT-Bench rows have none, and one judge judges several pairs and both
turns of one question).
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


def _messages(conv: Any, field: str) -> list[dict]:
    if not isinstance(conv, list) or not conv or not all(isinstance(m, dict) for m in conv):
        raise RowError("wrong_type", f"field '{field}' must be a non-empty list of messages")
    return [{"role": m.get("role"), "content": m.get("content")} for m in conv]


def _turn(obj: dict[str, Any]) -> int | None:
    turn = obj.get("turn")
    if turn is None:
        return None
    if isinstance(turn, bool) or not isinstance(turn, (int, float)) or turn != int(turn) or turn < 1:
        raise RowError("bad_turn", f"field 'turn' must be a whole number >= 1, got {turn!r}")
    return int(turn)


def _judged(conv: list[dict], turn: int | None, field: str) -> tuple[list[dict], Any]:
    """(messages before the judged answer, the judged answer) of one side."""
    answers = [i for i, m in enumerate(conv) if m["role"] == "assistant"]
    if turn is None:
        if conv[-1]["role"] != "assistant":
            raise RowError("missing_field", f"field '{field}' does not end with an assistant turn")
        at = len(conv) - 1
    else:
        if len(answers) < turn:
            raise RowError(
                "bad_turn", f"turn {turn} judged, but '{field}' has {len(answers)} assistant answer(s)"
            )
        at = answers[turn - 1]
    return conv[:at], conv[at]["content"]


def _one(obj: dict[str, Any]) -> list[tuple[dict | None, str | None, str]]:
    winner = obj.get("winner")
    if not isinstance(winner, str) or winner not in WINNERS:
        raise RowError("unknown_choice", f"field 'winner' must be one of {sorted(WINNERS)}, got {winner!r}")
    turn = _turn(obj)
    prompt_a, answer_a = _judged(
        _messages(obj.get("conversation_a"), "conversation_a"), turn, "conversation_a"
    )
    prompt_b, answer_b = _judged(
        _messages(obj.get("conversation_b"), "conversation_b"), turn, "conversation_b"
    )
    users_a = [m for m in prompt_a if m["role"] != "assistant"]
    users_b = [m for m in prompt_b if m["role"] != "assistant"]
    if users_a != users_b:
        raise RowError(
            "prompt_mismatch", "the two conversations' user messages differ before the judged answer"
        )
    if prompt_a != prompt_b:
        first = next(i for i, (x, y) in enumerate(zip(prompt_a, prompt_b)) if x != y)
        raise RowError(
            "multi_turn_divergent",
            f"turn {turn or 'last'} compares answers given in two different conversations (message {first + 1},"
            " an earlier assistant answer, differs between model_a and model_b); a record holds one prompt"
            " for all its responses (see docs/data.md, 'Multi-turn judgments')",
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
        rid = (
            f"arena-{obj['question_id']}-{obj.get('model_a')}-{obj.get('model_b')}"
            f"-t{turn or 'last'}-{obj.get('judge')}"
        )
        rec["id"] = rid if obj.get("tstamp") is None else f"{rid}-{obj['tstamp']}"
    return [(rec, None, "")]


convert = per_row(_one)
