"""TRL preference data (``prompt``/``chosen``/``rejected``) in and out.

In: explicit or implicit prompt (no ``prompt`` key: the prompt is the longest common prefix of chosen and
rejected, as TRL's ``extract_prompt`` does), standard (strings) or conversational (lists of messages), an
optional ``margin`` (kept as the record's ``strength``, a number a margin map can use directly).

Out: one JSONL line per implied pair; a chat prompt gives conversational rows (``chosen``/``rejected`` are
one assistant message each), so TRL's RewardTrainer and DPOTrainer apply the model's chat template.
Ties cannot be a chosen/rejected pair: they are counted and reported, never written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rewardlab.data.formats import RowError, number, per_row
from rewardlab.errors import UserError

NAME = "trl"
STATEFUL = False
_KEEP = ("score_chosen", "score_rejected", "source", "id")


def looks_like(keys: set[str], first: dict[str, Any]) -> bool:
    return "chosen" in keys and "rejected" in keys


def _is_chat(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value)


def _split_text(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Longest common prefix, moved back to a space like TRL does, so a shared word start stays in both."""
    n = 0
    limit = min(len(chosen), len(rejected))
    while n < limit and chosen[n] == rejected[n]:
        n += 1
    if 0 < n < limit and chosen[n - 1] == " ":
        n -= 1
    return chosen[:n], chosen[n:], rejected[n:]


def _response_text(messages: Any, field: str) -> str:
    """A conversational completion is one assistant message; anything else has no single response text."""
    if isinstance(messages, str):
        return messages
    if not _is_chat(messages):
        raise RowError("wrong_type", f"field '{field}' must be a string or a list of messages")
    if len(messages) != 1:
        raise RowError(
            "multi_message_response",
            f"field '{field}' holds {len(messages)} messages after the prompt; a response must be one message",
        )
    content = messages[0].get("content")
    if not isinstance(content, str):
        raise RowError("wrong_type", f"field '{field}[0].content' must be a string")
    return content


def _one(obj: dict[str, Any]) -> list[tuple[dict | None, str | None, str]]:
    for key in ("chosen", "rejected"):
        if obj.get(key) is None:
            raise RowError("missing_field", f"missing required field '{key}'")
    chosen, rejected, prompt = obj["chosen"], obj["rejected"], obj.get("prompt")
    if prompt is None:
        if _is_chat(chosen) and _is_chat(rejected):
            n = 0
            while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
                n += 1
            prompt, chosen, rejected = chosen[:n], chosen[n:], rejected[n:]
        elif isinstance(chosen, str) and isinstance(rejected, str):
            prompt, chosen, rejected = _split_text(chosen, rejected)
        else:
            raise RowError(
                "wrong_type", "fields 'chosen' and 'rejected' must both be strings or both be chats"
            )
        if not prompt:
            raise RowError("no_shared_prompt", "no 'prompt' field and chosen/rejected share no prefix")
    rec: dict[str, Any] = {
        "prompt": prompt,
        "responses": [_response_text(chosen, "chosen"), _response_text(rejected, "rejected")],
        "ranks": [1, 2],
    }
    margin = obj.get("margin")
    if margin is not None:
        number(margin, "margin")
        rec["strength"] = margin
    meta = {k: obj[k] for k in _KEEP if obj.get(k) is not None}
    if meta:
        rec["meta"] = meta
    return [(rec, None, "")]


convert = per_row(_one)


def trl_rows(rec: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """The TRL pairs of one record (chosen wins) and how many of its pairs are ties (not exportable).

    Soft labels decide the direction when present: p < 0.5 swaps chosen and rejected, p == 0.5 is a tie.
    """
    from rewardlab.data.dataset import pairs

    rows, ties = [], 0
    chat = not isinstance(rec["prompt"], str)
    for pair in pairs(rec):
        if pair["tie"] or pair["p"] == 0.5:
            ties += 1
            continue
        chosen, rejected = pair["chosen"], pair["rejected"]
        if pair["p"] < 0.5:
            chosen, rejected = rejected, chosen
        if chat:
            row = {
                "prompt": rec["prompt"],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
            }
        else:
            row = {"prompt": rec["prompt"], "chosen": chosen, "rejected": rejected}
        rows.append(row)
    return rows, ties


def margin_of(rec: dict[str, Any], margins: dict[str, float]) -> float:
    """TRL's ``margin`` for a record, by the RM config's ``loss.margin`` map (the rule recipes/rm.py uses).

    No strength: 0.0 (no margin), as in the RM recipe. A number (a TRL ``margin`` read back) is kept. A label
    the map does not know is an error: a silent 0 would train quietly wrong.
    """
    strength = rec.get("strength")
    if strength is None:
        return 0.0
    if isinstance(strength, (int, float)) and not isinstance(strength, bool):
        return float(strength)
    if strength not in margins:
        raise UserError(
            f"record {rec.get('id')}: strength '{strength}' is not in the margin map (known: {', '.join(margins)})"
        )
    return float(margins[strength])


def _row_key(row: dict[str, Any], swap: bool = False) -> bytes:
    import hashlib

    a, b = (row["rejected"], row["chosen"]) if swap else (row["chosen"], row["rejected"])
    blob = json.dumps([row["prompt"], a, b], ensure_ascii=False, sort_keys=True).encode(
        "utf-8", "surrogatepass"
    )
    return hashlib.blake2b(blob, digest_size=12).digest()


def export_trl(
    records: Iterable[dict[str, Any]], path: str | Path, margins: dict[str, float] | None = None
) -> dict[str, Any]:
    """Write TRL preference JSONL (one line per implied pair). Returns counts, ties included.

    The counts say what the file holds: rows that repeat an earlier row (several raters agreeing, or a
    record imported twice) and distinct rows whose chosen and rejected also appear swapped (raters
    disagreeing). Raw multi-rater data has both; ``raters aggregate`` merges them into one label per
    comparison. With ``margins`` (an RM config's ``loss.margin``), each row gets TRL's ``margin`` column.
    Standard and conversational rows cannot share one TRL dataset, so a mixed input is an error.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_records = n_pairs = n_ties = 0
    kinds = set()
    seen: dict[bytes, bytes] = {}  # row key -> the key of the same row with chosen and rejected swapped
    raters: set[str] = set()
    duplicates = 0
    with path.open("w", encoding="utf-8") as f:
        for rec in records:
            n_records += 1
            if rec.get("rater") is not None:
                raters.add(str(rec["rater"]))
            rows, ties = trl_rows(rec)
            n_ties += ties
            if rows:
                kinds.add(isinstance(rec["prompt"], str))
                if len(kinds) > 1:
                    raise UserError(
                        f"record {rec.get('id')}: mixes plain-text and chat prompts; TRL needs one kind per dataset"
                    )
            margin = margin_of(rec, margins) if margins is not None else None
            for row in rows:
                key = _row_key(row)
                if key in seen:
                    duplicates += 1
                else:
                    seen[key] = _row_key(row, swap=True)
                if margin is not None:
                    row["margin"] = margin
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                n_pairs += 1
    # a distinct row contradicts when its swap is also in the file (both directions are counted)
    contradicting = sum(1 for swapped in seen.values() if swapped in seen)
    return {
        "records": n_records,
        "pairs": n_pairs,
        "ties_not_exported": n_ties,
        "distinct_rows": len(seen),
        "duplicate_rows": duplicates,
        "contradicting_rows": contradicting,
        "raters": len(raters),
        "margin": margins is not None,
        "out": str(path),
    }
