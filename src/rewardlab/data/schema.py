"""The canonical ranking record and its rules (docs/design.md, "Canonical ranking record").

One comparison group per record: a prompt, K >= 2 responses, one rank per response (1 is best, equal
ranks are ties). ``normalize`` turns any dict in the canonical JSON shape into the normalized record every
other module reads, or raises ``RecordError`` with a short stable reason code (counted in import reports)
plus a human detail naming the field. Nothing here drops data: the caller quarantines what fails.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

# Fields of a normalized record, in storage order. Aggregation adds soft_pairs/weight/raters/agreement.
FIELDS = (
    "id",
    "prompt",
    "responses",
    "ranks",
    "rater",
    "strength",
    "scores",
    "gold",
    "time_s",
    "meta",
    "response_ids",
    "soft_pairs",
    "weight",
    "raters",
    "agreement",
    "source",
    "hash",
)
KNOWN_INPUT_KEYS = set(FIELDS) - {"hash"}


class RecordError(ValueError):
    """A record that breaks a rule. ``reason`` is a stable code; ``field`` the offending key."""

    def __init__(self, reason: str, detail: str, field: str | None = None):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.field = field


def _fail(reason: str, detail: str, field: str | None = None) -> None:
    raise RecordError(reason, detail, field)


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        _fail("wrong_type", f"field '{field}' must be a string, got {type(value).__name__}", field)
    return value


def _prompt(value: Any) -> str | list[dict[str, str]]:
    if isinstance(value, str):
        if not value.strip():
            _fail("empty_prompt", "field 'prompt' is empty", "prompt")
        return value
    if isinstance(value, list) and value:
        messages = []
        for n, msg in enumerate(value):
            if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
                _fail("wrong_type", f"field 'prompt[{n}]' must be a {{role, content}} message", "prompt")
            content = msg.get("content")
            if not isinstance(content, str):
                _fail("wrong_type", f"field 'prompt[{n}].content' must be a string", "prompt")
            messages.append({"role": msg["role"], "content": content})
        return messages
    _fail("wrong_type", "field 'prompt' must be a string or a non-empty list of messages", "prompt")
    raise AssertionError  # unreachable


def normalize(obj: Any, source: str | None = None) -> dict[str, Any]:
    """Validate one canonical-shaped dict and return the normalized record (see FIELDS)."""
    if not isinstance(obj, dict):
        _fail("wrong_type", f"a record must be a JSON object, got {type(obj).__name__}")
    for key in ("prompt", "responses", "ranks"):
        if key not in obj or obj[key] is None:
            _fail("missing_field", f"missing required field '{key}'", key)
    prompt = _prompt(obj["prompt"])

    raw_responses = obj["responses"]
    if not isinstance(raw_responses, list):
        _fail("wrong_type", "field 'responses' must be a list", "responses")
    if len(raw_responses) < 2:
        _fail(
            "too_few_responses",
            f"field 'responses' has {len(raw_responses)} response(s), needs >= 2",
            "responses",
        )
    responses: list[str] = []
    response_ids: list[str] | None = None
    for n, item in enumerate(raw_responses):
        if isinstance(item, dict):
            if response_ids is None:
                response_ids = [""] * n
            rid = item.get("id")
            response_ids.append(str(n) if rid is None else _label(rid, f"responses[{n}].id"))
            item = item.get("text")
        elif response_ids is not None:
            response_ids.append(str(n))
        text = _text(item, f"responses[{n}]")
        if not text.strip():
            _fail("empty_response", f"field 'responses[{n}]' is empty", "responses")
        responses.append(text)
    if len({r.strip() for r in responses}) < len(responses):
        _fail("duplicate_responses", "field 'responses' holds the same text twice", "responses")

    ranks = obj["ranks"]
    if not isinstance(ranks, list):
        _fail("wrong_type", "field 'ranks' must be a list of integers", "ranks")
    if len(ranks) != len(responses):
        _fail(
            "ranks_length_mismatch",
            f"field 'ranks' has {len(ranks)} entries for {len(responses)} responses",
            "ranks",
        )
    clean_ranks = []
    for n, r in enumerate(ranks):
        if (
            isinstance(r, bool)
            or not isinstance(r, (int, float))
            or (isinstance(r, float) and not r.is_integer())
        ):
            got = json.dumps(r) if isinstance(r, (int, float, str)) else type(r).__name__
            _fail("invalid_rank", f"field 'ranks[{n}]' must be an integer >= 1, got {got}", "ranks")
        if not 1 <= r <= len(responses):
            # ranks of K responses fit in 1..K whatever the ties (dense or competition ranking); a rank
            # outside is a typo or a stray column, and a huge one would not even fit the int32 store
            _fail(
                "invalid_rank",
                f"field 'ranks[{n}]' must be between 1 and {len(responses)} (the number of responses), got {r}",
                "ranks",
            )
        clean_ranks.append(int(r))

    rec: dict[str, Any] = {
        "id": None,
        "prompt": prompt,
        "responses": responses,
        "ranks": clean_ranks,
        "rater": None,
        "strength": None,
        "scores": None,
        "gold": False,
        "time_s": None,
        "meta": None,
        "response_ids": response_ids,
        "soft_pairs": None,
        "weight": 1.0,
        "raters": None,
        "agreement": None,
        "source": source,
    }
    if obj.get("rater") is not None:
        rater = obj["rater"]
        rec["rater"] = rater if type(rater) is str else _label(rater, "rater")
    if obj.get("strength") is not None:
        s = obj["strength"]
        if not isinstance(s, str) and not _finite(s):
            _fail("wrong_type", "field 'strength' must be a label or a finite number", "strength")
        rec["strength"] = normalize_strength(str(s))
    if obj.get("scores") is not None:
        rec["scores"] = _scores(obj["scores"], len(responses))
    if obj.get("gold") is not None:
        if not isinstance(obj["gold"], bool):
            _fail("wrong_type", "field 'gold' must be true or false", "gold")
        rec["gold"] = obj["gold"]
    if obj.get("time_s") is not None:
        t = obj["time_s"]
        if not _finite(t) or t < 0:
            _fail("wrong_type", "field 'time_s' must be a number >= 0", "time_s")
        rec["time_s"] = float(t)
    if obj.get("meta") is not None:
        if not isinstance(obj["meta"], dict):
            _fail("wrong_type", "field 'meta' must be an object", "meta")
        if _too_deep(obj["meta"]):
            _fail("wrong_type", f"field 'meta' is nested more than {MAX_META_DEPTH} levels deep", "meta")
        rec["meta"] = obj["meta"]
    if obj.get("soft_pairs") is not None:
        rec["soft_pairs"] = _soft_pairs(obj["soft_pairs"], len(responses))
    if obj.get("weight") is not None:
        w = obj["weight"]
        if not _finite(w) or w < 0:
            _fail("wrong_type", "field 'weight' must be a number >= 0", "weight")
        rec["weight"] = float(w)
    if obj.get("raters") is not None:
        if not isinstance(obj["raters"], list):
            _fail("wrong_type", "field 'raters' must be a list", "raters")
        rec["raters"] = [_label(r, "raters[]") for r in obj["raters"]]
    if obj.get("agreement") is not None:
        if not _finite(obj["agreement"]):
            _fail("wrong_type", "field 'agreement' must be a finite number", "agreement")
        rec["agreement"] = float(obj["agreement"])
    rec["hash"] = content_hash(rec)
    rec["id"] = _label(obj["id"], "id") if obj.get("id") is not None else "c-" + rec["hash"][:12]
    return rec


# Deeper meta is junk (a runaway export), and Python's json module cannot even write ~1000 levels.
MAX_META_DEPTH = 64


def normalize_strength(label: str) -> str:
    """One spelling for strength labels: underscores read as spaces, runs of blanks collapsed
    ("significantly_better" -> "significantly better"), so SHP imports, the simulator and the shipped
    ``loss.margin`` maps agree; datasets and configs written with the old spelling still match."""
    return " ".join(label.replace("_", " ").split())


def _finite(x: Any) -> bool:
    """A real number that fits a float (no bool, NaN, inf, or int too large for a float)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:  # an int beyond float range
        return False


def _label(value: Any, field: str) -> str:
    """An id-like field (id, rater): a string or a plain number, kept as its string."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(value)
    _fail("wrong_type", f"field '{field}' must be a string or a number, got {type(value).__name__}", field)
    raise AssertionError  # unreachable


def _too_deep(value: Any, limit: int = MAX_META_DEPTH) -> bool:
    """True when ``value`` nests lists/objects more than ``limit`` levels (iterative: no recursion)."""
    if not any(isinstance(v, (dict, list)) for v in value.values()):  # the usual flat meta: done
        return False
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _scores(value: Any, k: int) -> dict[str, list[float | None]]:
    if not isinstance(value, dict):
        _fail("wrong_type", "field 'scores' must be an object of rubric -> list", "scores")
    out = {}
    for name, vals in value.items():
        if not isinstance(vals, list) or len(vals) != k:
            _fail(
                "scores_length_mismatch", f"field 'scores.{name}' must list one score per response", "scores"
            )
        clean = []
        for v in vals:
            if v is not None and not _finite(v):
                _fail("wrong_type", f"field 'scores.{name}' must hold finite numbers or null", "scores")
            clean.append(None if v is None else float(v))
        out[str(name)] = clean
    return out


def _soft_pairs(value: Any, k: int) -> list[list[float]]:
    if not isinstance(value, list):
        _fail("wrong_type", "field 'soft_pairs' must be a list of [i, j, p] triples", "soft_pairs")
    out = []
    for item in value:
        if not isinstance(item, (list, tuple)) or len(item) != 3 or not all(_finite(x) for x in item):
            _fail("wrong_type", "field 'soft_pairs' must hold [i, j, p] number triples", "soft_pairs")
        if not (float(item[0]).is_integer() and float(item[1]).is_integer()):
            _fail("wrong_type", f"field 'soft_pairs' has a non-integer index in {list(item)}", "soft_pairs")
        i, j, p = int(item[0]), int(item[1]), float(item[2])
        if not (0 <= i < k and 0 <= j < k and i != j and 0.0 <= p <= 1.0):
            _fail("wrong_type", f"field 'soft_pairs' has an invalid triple {list(item)}", "soft_pairs")
        out.append([float(i), float(j), p])
    return out


def prompt_text(prompt: str | list[dict[str, str]]) -> str:
    """A stable string for a prompt (chat prompts as canonical JSON): used for keys and splits."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, ensure_ascii=False)


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


# Same output as json.dumps(..., ensure_ascii=False), built once: json.dumps builds a new encoder on every
# call when given options, which was a tenth of the per-record import cost.
_HASH_ENCODER = json.JSONEncoder(ensure_ascii=False)


def content_hash(rec: dict[str, Any]) -> str:
    """Hash of the judgment's content (not its id or source): equal hashes are exact duplicates."""
    blob = _HASH_ENCODER.encode(
        [prompt_text(rec["prompt"]), rec["responses"], rec["ranks"], rec.get("rater"), rec.get("strength")]
    )
    return _sha(blob)


def prompt_key(prompt: str | list[dict[str, str]]) -> str:
    return _sha(prompt_text(prompt))[:16]


def group_key(prompt: str | list[dict[str, str]], responses: list[str]) -> str:
    """Identifies a comparison (prompt + set of responses) whatever the order the raters saw it in."""
    return _sha(prompt_text(prompt) + "\x00" + "\x00".join(sorted(responses)))[:16]


def implied_pairs(ranks: list[int]) -> list[tuple[int, int, bool]]:
    """All C(K,2) pairs a ranking implies: (better, worse, False), or (i, j, True) for a tie."""
    pairs = []
    for i in range(len(ranks)):
        for j in range(i + 1, len(ranks)):
            if ranks[i] < ranks[j]:
                pairs.append((i, j, False))
            elif ranks[i] > ranks[j]:
                pairs.append((j, i, False))
            else:
                pairs.append((i, j, True))
    return pairs


def to_json(rec: dict[str, Any]) -> dict[str, Any]:
    """The canonical JSON form of a normalized record (drops empty optional fields, keeps meta)."""
    out = {}
    for key in FIELDS:
        if key in ("hash",):
            continue
        value = rec.get(key)
        if value is None or (key == "gold" and value is False) or (key == "weight" and value == 1.0):
            continue
        out[key] = value
    return out
