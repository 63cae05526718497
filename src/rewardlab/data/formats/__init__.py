"""One module per input format: each turns rows of a tool's export into canonical-shaped dicts.

Every format module exposes:

- ``NAME``: the ``--format`` name;
- ``looks_like(keys, first) -> bool``: detection from the first record's keys (``first`` is the record);
- ``convert(items) -> Iterator[Item]``: rows in, canonical-shaped dicts out. A row the format cannot read
  becomes an ``Item`` with a ``reason`` (it is quarantined, never dropped);
- ``STATEFUL``: True when a record needs several rows (HelpSteer2 groups rows by prompt, Toloka
  deduplicates gold answers), so the file cannot be cut into chunks for parallel workers.

Exporters live in the module of their tool: ``trl.export_trl``, ``label_studio.export_label_studio``,
``argilla.export_argilla``, ``canonical.export_canonical``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any, NamedTuple

# --format names, in detection order (the first whose looks_like() matches wins).
FORMATS = (
    "canonical",
    "label-studio",
    "argilla",
    "toloka",
    "arena",
    "ultrafeedback",
    "shp",
    "helpsteer2",
    "hh-rlhf",
    "trl",
)
_MODULES = {name: name.replace("-", "_") for name in FORMATS}

# A converter that meets a value of a shape it does not expect (an object where a list belongs, a list
# used as a key) raises one of these; the row is quarantined as ``unreadable_row`` and the import goes on.
# Known shapes get a precise reason where they are read; this is the net under the rest.
ROW_ERRORS = (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError, RecursionError)

# Reasons for rows that are read but skipped by design (a cancelled annotation, a rejected assignment):
# counted and written to the quarantine file like any rejected row, but they do not make `validate` fail.
SKIP_REASONS = frozenset({"cancelled", "rejected_assignment", "not_submitted", "unlabeled"})


class Item(NamedTuple):
    """One thing read from a file: a canonical-shaped dict, or the reason it could not become one.

    ``line`` is the 1-based line in line-based files (JSONL, CSV, TSV: the line a row starts on) and the
    1-based position of the element in a JSON array or a Parquet file. ``raw`` keeps the original text or
    object for the quarantine file.
    """

    source: str
    line: int
    record: dict[str, Any] | None
    reason: str | None = None
    detail: str = ""
    raw: Any = None


def module(name: str) -> ModuleType:
    """The module of a format name (``hh-rlhf`` -> ``rewardlab.data.formats.hh_rlhf``); ``wide:MAPPING``
    gives the wide-export reader bound to that column mapping (formats/wide.py)."""
    if name.startswith("wide:"):
        return importlib.import_module("rewardlab.data.formats.wide").module_for(name[5:])
    if name not in _MODULES:
        raise KeyError(name)
    return importlib.import_module(f"rewardlab.data.formats.{_MODULES[name]}")


def known(name: str) -> bool:
    """A ``--format`` value: a name in FORMATS, or ``wide:MAPPING`` (a preset or a mapping file)."""
    return name in _MODULES or (name.startswith("wide:") and len(name) > 5)


def detect(first: dict[str, Any]) -> str | None:
    """The format whose shape the first record has, or None."""
    keys = set(first)
    for name in FORMATS:
        if module(name).looks_like(keys, first):
            return name
    return None


def per_row(fn: Callable[[dict[str, Any]], Iterable[tuple[dict | None, str | None, str]]]):
    """Build a stateless ``convert`` from a function of one row -> [(record, reason, detail), ...]."""

    def convert(items: Iterable[Item]) -> Iterator[Item]:
        for item in items:
            if item.reason is not None:
                yield item
                continue
            obj = item.record
            if not isinstance(obj, dict):
                yield item._replace(
                    record=None, reason="not_an_object", detail="a row must be a JSON object", raw=obj
                )
                continue
            try:
                outs = fn(obj)
            except RowError as exc:
                yield item._replace(record=None, reason=exc.reason, detail=exc.detail, raw=obj)
                continue
            except ROW_ERRORS as exc:
                yield item._replace(record=None, reason="unreadable_row", detail=unreadable(exc), raw=obj)
                continue
            for rec, reason, detail in outs:
                if reason is None:
                    yield item._replace(record=rec)
                else:
                    yield item._replace(record=None, reason=reason, detail=detail, raw=obj)

    return convert


class RowError(ValueError):
    """A row a format cannot read (raised inside a converter; becomes a quarantined Item)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def unreadable(exc: BaseException) -> str:
    """The detail of an ``unreadable_row``: what the converter tripped on, in one line."""
    return f"a value has a shape this format does not allow ({type(exc).__name__}: {str(exc)[:200]})"


def number(value: Any, field: str) -> float:
    """A finite number (int or float, not bool, NaN, inf, nor an int too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RowError("wrong_type", f"field '{field}' must be a number, got {type(value).__name__}")
    try:
        out = float(value)
    except OverflowError:
        out = float("inf")
    if out != out or out in (float("inf"), float("-inf")):
        raise RowError("wrong_type", f"field '{field}' must be a finite number, got {value!r}"[:200])
    return out


def require(obj: dict[str, Any], *keys: str) -> None:
    for key in keys:
        if obj.get(key) is None:
            raise RowError("missing_field", f"missing required field '{key}'")


def text_of(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise RowError("wrong_type", f"field '{field}' must be a string, got {type(value).__name__}")
    return value


def ranks_from_scores(scores: list[float], higher_is_better: bool = True) -> list[int]:
    """Competition ranks (1 is best; equal scores share a rank, so ties are kept): [3, 5, 5] -> [3, 1, 1]."""
    sign = -1 if higher_is_better else 1
    keyed = [sign * s for s in scores]
    return [1 + sum(1 for other in keyed if other < mine) for mine in keyed]


def render_chat(messages: list[dict[str, str]]) -> str:
    """A chat as plain text for tools that show one text box (``User: ...`` blocks)."""
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)
