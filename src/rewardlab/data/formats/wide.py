"""Wide exports: one row per comparison, one column per annotator (``--format wide:MAPPING``).

Many annotation tools and published multi-rater sets (PandaLM, MT-Bench human judgments, in-house
spreadsheets) store a comparison as one row with a verdict column per annotator. A *column mapping* says
which columns are the prompt, the responses and the verdicts, and what each verdict value means; every
verdict cell becomes one canonical record (one rater's judgment), so ``raters report`` and ``raters
aggregate`` see the repeated judgments. No code per export: ``MAPPING`` is a preset name (``pandalm``) or a
YAML/JSON file::

    prompt: [instruction, input]        # a column, or columns joined by a blank line (empty cells skipped)
    responses: [response1, response2]   # 2 or more columns, in the order the raters saw them
    raters: [annotator1, annotator2, annotator3]   # verdict columns (the column name is the rater id) ...
    # raters: {annotator1: alice, annotator2: bob}  # ... or column -> rater id
    verdicts: {1: 1, 2: 2, 0: tie}      # cell value -> the winning response (1-based), "tie", or a ranks list
    missing: [null, ""]                 # cells meaning "this annotator did not judge" (default: null and "")
    id: idx                             # optional: an id column (records get "<id>-<rater>")
    meta: [cmp_key, motivation_app]     # optional: columns kept in meta

A winner index is allowed only for pairs (for K > 2 a winner alone is not a ranking: map the value to a
ranks list instead). A verdict value the mapping does not name quarantines that judgment
(``unknown_choice``); a row with no verdict at all is skipped as ``unlabeled``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rewardlab.data.formats import RowError, per_row
from rewardlab.errors import UserError

NAME = "wide"
STATEFUL = False

PRESETS: dict[str, dict[str, Any]] = {
    # WeOpenML/PandaLM data/testset-v1.json: annotator1..3 = 1 (response1 better), 2 (response2), 0 (tie)
    "pandalm": {
        "prompt": ["instruction", "input"],
        "responses": ["response1", "response2"],
        "raters": ["annotator1", "annotator2", "annotator3"],
        "verdicts": {1: 1, 2: 2, 0: "tie"},
        "id": "idx",
        "meta": ["cmp_key", "motivation_app"],
    },
}
_KEYS = {"prompt", "responses", "raters", "verdicts", "missing", "id", "meta"}


def looks_like(keys: set[str], first: dict[str, Any]) -> bool:
    return False  # needs a mapping: never auto-detected


def convert(items):  # pragma: no cover - the plain name has no mapping
    raise UserError("--format wide needs a column mapping: --format wide:MAPPING (a preset or a YAML file)")


def cell_key(value: Any) -> Any:
    """Verdict cells and mapping keys compared alike: 1, 1.0, "1" and " 1 " are the same value."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        value = value.strip()
        try:
            number = float(value)
        except ValueError:
            return value
        return str(int(number)) if number.is_integer() else str(number)
    return None if value is None else str(value)


def _fail(where: str, field: str, why: str) -> UserError:
    return UserError(f"{where}: field '{field}': {why}")


def _columns(value: Any, where: str, field: str, at_least: int = 1) -> list[str]:
    cols = [value] if isinstance(value, str) else value
    if not isinstance(cols, list) or len(cols) < at_least or not all(isinstance(c, str) and c for c in cols):
        raise _fail(where, field, f"must be a column name or a list of at least {at_least} column names")
    return cols


def load_mapping(spec: str) -> dict[str, Any]:
    """A validated mapping from a preset name or a YAML/JSON file; UserError naming the file and field."""
    if spec in PRESETS:
        raw, where = PRESETS[spec], f"wide preset '{spec}'"
    else:
        path = Path(spec)
        where = str(path)
        if not path.is_file():
            raise UserError(
                f"{path}: wide mapping not found (a YAML/JSON file, or a preset: {', '.join(PRESETS)})"
            )
        import yaml

        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            raise UserError(f"{path}{line}: not valid YAML/JSON ({getattr(exc, 'problem', exc)})") from None
        if not isinstance(raw, dict):
            raise UserError(f"{path}: a wide mapping must be a mapping of fields, got {type(raw).__name__}")
    unknown = set(raw) - _KEYS
    if unknown:
        raise _fail(where, sorted(unknown)[0], f"unknown key (known: {', '.join(sorted(_KEYS))})")
    for key in ("prompt", "responses", "raters", "verdicts"):
        if raw.get(key) is None:
            raise _fail(where, key, "required")
    prompt = _columns(raw["prompt"], where, "prompt")
    responses = _columns(raw["responses"], where, "responses", at_least=2)
    raters_raw = raw["raters"]
    if isinstance(raters_raw, dict):
        raters = {str(k): str(v) for k, v in raters_raw.items()}
    else:
        raters = {c: c for c in _columns(raters_raw, where, "raters")}
    if not isinstance(raw["verdicts"], dict) or not raw["verdicts"]:
        raise _fail(where, "verdicts", "must map cell values to a winner (1-based), 'tie' or a ranks list")
    k = len(responses)
    verdicts: dict[Any, list[int]] = {}
    for value, meaning in raw["verdicts"].items():
        verdicts[cell_key(value)] = _ranks(meaning, k, where, value)
    missing = raw.get("missing", [None, ""])
    if not isinstance(missing, list):
        raise _fail(where, "missing", "must be a list of cell values")
    meta = _columns(raw["meta"], where, "meta") if raw.get("meta") is not None else []
    id_col = raw.get("id")
    if id_col is not None and not isinstance(id_col, str):
        raise _fail(where, "id", "must be a column name")
    return {"prompt": prompt, "responses": responses, "raters": raters, "verdicts": verdicts,
            "missing": {cell_key(m) for m in missing}, "id": id_col, "meta": meta}  # fmt: skip


def _ranks(meaning: Any, k: int, where: str, value: Any) -> list[int]:
    field = f"verdicts.{value}"
    if isinstance(meaning, str) and meaning.strip().lower() == "tie":
        return [1] * k
    if isinstance(meaning, bool):
        raise _fail(where, field, "must be a response number, 'tie' or a ranks list")
    if isinstance(meaning, int):
        if k != 2:
            raise _fail(where, field, f"a winner alone does not rank {k} responses: give a ranks list")
        if meaning not in (1, 2):
            raise _fail(where, field, f"winner must be 1 or 2, got {meaning}")
        return [1, 2] if meaning == 1 else [2, 1]
    if (
        isinstance(meaning, list)
        and len(meaning) == k
        and all(isinstance(r, int) and r >= 1 for r in meaning)
    ):
        return list(meaning)
    raise _fail(where, field, f"must be a response number, 'tie' or a list of {k} ranks, got {meaning!r}")


def _text(obj: dict[str, Any], col: str) -> str:
    if col not in obj or obj[col] is None:
        raise RowError("missing_field", f"missing required field '{col}'")
    value = obj[col]
    if not isinstance(value, str):
        raise RowError("wrong_type", f"field '{col}' must be a string, got {type(value).__name__}")
    return value


def _rows(mapping: dict[str, Any], obj: dict[str, Any]) -> list[tuple[dict | None, str | None, str]]:
    parts = [_text(obj, c) if len(mapping["prompt"]) == 1 else (obj.get(c) or "") for c in mapping["prompt"]]
    if len(mapping["prompt"]) > 1 and not all(isinstance(p, str) for p in parts):
        raise RowError("wrong_type", f"prompt fields {mapping['prompt']} must be strings")
    prompt = "\n\n".join(p for p in parts if p.strip())
    responses = [_text(obj, c) for c in mapping["responses"]]
    meta = {c: obj[c] for c in mapping["meta"] if obj.get(c) is not None}
    row_id = obj.get(mapping["id"]) if mapping["id"] else None
    if row_id is not None:
        meta["row_id"] = row_id
    out: list[tuple[dict | None, str | None, str]] = []
    for col, rater in mapping["raters"].items():
        key = cell_key(obj.get(col))
        if key in mapping["missing"] or col not in obj:
            continue
        if key not in mapping["verdicts"]:
            known = ", ".join(map(str, mapping["verdicts"]))
            out.append(
                (
                    None,
                    "unknown_choice",
                    f"field '{col}': value {obj.get(col)!r} is not in verdicts ({known})",
                )
            )
            continue
        rec = {"prompt": prompt, "responses": list(responses), "ranks": list(mapping["verdicts"][key]),
               "rater": rater, "meta": dict(meta)}  # fmt: skip
        if row_id is not None:
            rec["id"] = f"{row_id}-{rater}"
        out.append((rec, None, ""))
    if not out:
        out.append((None, "unlabeled", f"no verdict in the columns {list(mapping['raters'])}"))
    return out


@functools.lru_cache(maxsize=8)
def module_for(spec: str) -> SimpleNamespace:
    """A format module for ``wide:<spec>``: NAME, STATEFUL, looks_like and convert bound to the mapping."""
    mapping = load_mapping(spec)
    return SimpleNamespace(
        NAME=f"wide:{spec}",
        STATEFUL=False,
        looks_like=looks_like,
        convert=per_row(functools.partial(_rows, mapping)),
        mapping=json.loads(
            json.dumps({**mapping, "missing": sorted(map(str, mapping["missing"]))}, default=str)
        ),
    )
