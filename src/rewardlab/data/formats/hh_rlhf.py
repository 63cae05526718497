"""Anthropic HH-RLHF: ``chosen``/``rejected`` are whole transcripts of "\\n\\nHuman:" / "\\n\\nAssistant:" turns.

The prompt is the shared transcript up to the last shared "\\n\\nAssistant:" marker, turned into a chat
(user/assistant messages); each response is what follows that marker. Almost every pair shares its text up
to the last marker of both transcripts. A few do not (a response holds extra Human/Assistant turns): the
split then falls at the last marker inside the longest common prefix, and the extra turns stay in the
response text. A pair that shares no Assistant marker at all is quarantined (``no_shared_assistant_turn``).
"""

from __future__ import annotations

import re
from typing import Any

from rewardlab.data.formats import RowError, per_row, text_of

NAME = "hh-rlhf"
STATEFUL = False
MARK = "\n\nAssistant:"
_TURN = re.compile(r"\n\n(Human|Assistant):")


def looks_like(keys: set[str], first: dict[str, Any]) -> bool:
    chosen = first.get("chosen")
    return "prompt" not in keys and "rejected" in keys and isinstance(chosen, str) and "\n\nHuman:" in chosen


def to_messages(transcript: str) -> list[dict[str, str]]:
    """ "\\n\\nHuman: hi\\n\\nAssistant: hello" -> [{user: hi}, {assistant: hello}]."""
    parts = _TURN.split(transcript)
    messages = []
    if parts[0].strip():
        messages.append({"role": "user", "content": parts[0].strip()})
    for speaker, content in zip(parts[1::2], parts[2::2]):
        role = "user" if speaker == "Human" else "assistant"
        messages.append({"role": role, "content": content.strip()})
    return messages


def split(chosen: str, rejected: str) -> tuple[str, str, str]:
    """(prompt transcript, chosen response, rejected response)."""
    cut = chosen.rfind(MARK)
    if cut < 0 or rejected[: cut + len(MARK)] != chosen[: cut + len(MARK)]:
        n = 0
        limit = min(len(chosen), len(rejected))
        while n < limit and chosen[n] == rejected[n]:
            n += 1
        cut = chosen.rfind(MARK, 0, n)
        if cut < 0:
            raise RowError("no_shared_assistant_turn", "chosen and rejected share no '\\n\\nAssistant:' turn")
    end = cut + len(MARK)
    return chosen[:cut], chosen[end:].strip(), rejected[end:].strip()


def _one(obj: dict[str, Any]) -> list[tuple[dict | None, str | None, str]]:
    for key in ("chosen", "rejected"):
        if obj.get(key) is None:
            raise RowError("missing_field", f"missing required field '{key}'")
    prompt, chosen, rejected = split(text_of(obj["chosen"], "chosen"), text_of(obj["rejected"], "rejected"))
    messages = to_messages(prompt)
    if not messages:
        raise RowError("empty_prompt", "the transcript has no turn before the shared Assistant turn")
    return [({"prompt": messages, "responses": [chosen, rejected], "ranks": [1, 2]}, None, "")]


convert = per_row(_one)
