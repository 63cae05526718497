"""Strategies and checks shared by the property tests: valid rows of every format, junk, file writers.

Every format has a strategy that draws one valid row in its tool's export shape together with the
canonical records the importer must make of it (``Case``). Mutations work on the JSON tree of a row
(drop a key, swap a value for junk, duplicate a list item) and on the bytes of the written file (BOM,
CRLF, truncation, random or invalid UTF-8 bytes, garbled and very long lines). ``check_import`` runs the
importer and asserts the guarantee: no exception but a one-line ``UserError`` for a whole-file problem,
``accepted + quarantined == read``, one quarantine line per quarantined item, and every row of the file
accounted for (accepted or quarantined with its line).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from rewardlab.data import importing
from rewardlab.data.dataset import iter_records, load_dataset
from rewardlab.errors import UserError

# ---------------------------------------------------------------- hypothesis profiles (loaded on import)
# Here, not in a conftest.py: a second `conftest` module shadows tests/conftest.py for the tests that do
# `from conftest import run_cli` when the whole tests/ folder is collected.
#
# ``ci`` (the default): derandomized, so CI runs the same examples every time and a failure reproduces
# locally with the same command; sized so this folder stays near a minute on a loaded 2-core box.
# ``deep``: many more examples and a fresh random seed per run, for hunting new bugs locally:
#
#     HYPOTHESIS_PROFILE=deep pytest -q tests/property
#
# ``triage``: the ci examples without shrinking, to see a failure quickly while fixing it.
#
# Tests size their example counts with ``_fuzz.examples(n)`` (n in the ci profile, DEEP_FACTOR * n deep).
_COMMON = {
    "deadline": None,  # an import touches disk and Arrow: wall time varies with the box's load
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    "database": None,  # nothing written into the tree; a failure prints its example (and a reproduce blob)
    "print_blob": True,
}
settings.register_profile("ci", derandomize=True, max_examples=20, **_COMMON)
settings.register_profile("deep", derandomize=False, max_examples=20 * 25, **_COMMON)
# ci's examples without shrinking: a failure shows its first (unshrunk) example in seconds, not minutes
settings.register_profile(
    "triage", derandomize=True, max_examples=20, phases=[Phase.explicit, Phase.generate], **_COMMON
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


DEEP_FACTOR = 25


def examples(n: int) -> int:
    """``n`` examples in the ci profile, DEEP_FACTOR times more with HYPOTHESIS_PROFILE=deep (or the
    factor in FUZZ_FACTOR, e.g. to triage a deep run's failures without shrinking)."""
    if os.environ.get("FUZZ_FACTOR"):
        return n * int(os.environ["FUZZ_FACTOR"])
    return n * DEEP_FACTOR if os.environ.get("HYPOTHESIS_PROFILE") == "deep" else n


# ------------------------------------------------------------------------------------------------ text

# Valid text: any code point but surrogates (which are not text); control characters, CR, LF, tabs,
# quotes, RTL and astral characters included. Non-blank, since blank prompts/responses are rejected.
CHARS = st.characters(exclude_categories=("Cs",))
TEXT = st.text(CHARS, min_size=1, max_size=16).filter(lambda s: bool(s.strip()))
LABEL = st.text(st.characters(exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=8)


def distinct(n_min: int, n_max: int, text: Any = TEXT) -> Any:
    return st.lists(text, min_size=n_min, max_size=n_max, unique_by=lambda s: s.strip())


CHAT = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]), "content": TEXT}),
    min_size=1,
    max_size=3,
)

# ------------------------------------------------------------------------------------------------ junk


def nested(depth: int) -> Any:
    value: Any = 1
    for n in range(depth):
        value = [value] if n % 2 else {"a": value}
    return value


SURROGATES = st.integers(0xD800, 0xDFFF).map(lambda c: "x" + chr(c) + "y")
JUNK = st.one_of(
    st.none(),
    st.sampled_from(["", " ", "\t\n", "NaN", "1e999", "-1", "[", "{}", "null", "\x00", "\ufeff"]),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, -1, 2**31, 2**63, -(2**63), 10**30, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(), max_size=12),  # control characters, astral planes
    SURROGATES,
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from([5, 60, 900, 1000, 1023, 1030, 1500]).map(nested),  # around the parsers' depth limits
    st.integers(200, 6000).map(lambda n: "y" * n),
    st.lists(st.dictionaries(st.sampled_from(["id", "text", "role", "content", "value"]), TEXT), max_size=2),
)


@st.composite
def mutate_tree(draw: Any, value: Any, depth: int = 0) -> Any:
    """One structural change somewhere in a JSON tree: drop a key or item, swap in junk, duplicate an item,
    add a junk key. Descends into children at random, so deep fields are hit as often as top ones."""
    if isinstance(value, dict) and value and depth < 6 and draw(st.integers(0, 2)):
        key = draw(st.sampled_from(sorted(value, key=str)))
        return {**value, key: draw(mutate_tree(value[key], depth + 1))}
    if isinstance(value, list) and value and depth < 6 and draw(st.integers(0, 2)):
        i = draw(st.integers(0, len(value) - 1))
        return [*value[:i], draw(mutate_tree(value[i], depth + 1)), *value[i + 1 :]]
    op = draw(st.sampled_from(["junk", "drop", "dup", "add", "empty"]))
    if op == "drop" and isinstance(value, dict) and value:
        key = draw(st.sampled_from(sorted(value, key=str)))
        return {k: v for k, v in value.items() if k != key}
    if op == "drop" and isinstance(value, list) and value:
        i = draw(st.integers(0, len(value) - 1))
        return value[:i] + value[i + 1 :]
    if op == "dup" and isinstance(value, list) and value:
        i = draw(st.integers(0, len(value) - 1))
        return [*value, value[i]]
    if op == "add" and isinstance(value, dict):
        return {**value, draw(st.text(max_size=6)): draw(JUNK)}
    if op == "empty":
        return type(value)() if isinstance(value, (dict, list, str)) else None
    return draw(JUNK)


# ------------------------------------------------------------------------------------------------ writers


def to_json(value: Any, ensure_ascii: bool = True) -> str:
    """JSON with NaN/Infinity, lone surrogates as escapes, and nesting deeper than Python's default limit."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))
    try:
        text = json.dumps(value, ensure_ascii=ensure_ascii, allow_nan=True, default=str)
    finally:
        sys.setrecursionlimit(limit)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: only the escaped form can be written
        text = to_json(value, ensure_ascii=True)
    return text


def jsonl_bytes(rows: list[Any], ensure_ascii: bool = True) -> bytes:
    return "".join(to_json(r, ensure_ascii) + "\n" for r in rows).encode("utf-8")


def json_bytes(rows: Any, ensure_ascii: bool = True) -> bytes:
    return to_json(rows, ensure_ascii).encode("utf-8")


def cell(value: Any) -> str:
    """A CSV cell as spreadsheets and rewardlab's exporter write it: lists and objects as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return to_json(value, ensure_ascii=False)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def csv_bytes(rows: list[dict[str, Any]], delimiter: str = ",") -> tuple[bytes, list[int]]:
    """CSV text and the line each row starts on (rows whose cells are all blank are not rows)."""
    header: list[str] = []
    for row in rows:
        header += [str(k) for k in row if str(k) not in header]
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, delimiter=delimiter)
    writer.writerow(header)
    starts = []
    for row in rows:
        values = {str(k): v for k, v in row.items()}
        cells = [cell(values.get(h)) for h in header]
        line = 1 + _line_breaks(buf.getvalue())
        writer.writerow(cells)
        if any(c.strip() for c in cells):
            starts.append(line)
    # a lone surrogate in a cell is written as its (invalid) UTF-8 bytes, as a broken exporter would
    return buf.getvalue().encode("utf-8", "surrogatepass"), starts


def _line_breaks(text: str) -> int:
    """Line ends as the CSV reader counts them (universal newlines: \\r\\n, \\r, \\n)."""
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    """Parquet of the rows; a column pyarrow cannot type (mixed junk) is stored as JSON text, as a
    dataframe of objects often is."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names: list[str] = []
    for row in rows:
        names += [str(k) for k in row if str(k) not in names]
    columns = {}
    for name in names:
        values = [{str(k): v for k, v in row.items()}.get(name) for row in rows]
        try:
            if any(_depth(v) > 32 for v in values):  # pyarrow builds one nested type per level: slow, huge
                raise ValueError("too deep for a typed column")
            array = pa.array(values)
            if pa.types.is_null(array.type) and values:
                array = pa.array(values, type=pa.string())
        except (pa.ArrowException, OverflowError, UnicodeEncodeError, RecursionError, TypeError, ValueError):
            array = pa.array([None if v is None else to_json(v) for v in values], type=pa.string())
        columns[name or "_"] = array
    buf = io.BytesIO()
    try:
        pq.write_table(pa.table(columns), buf)
    except pa.ArrowException:  # e.g. a struct with no fields (an empty object) has no Parquet type
        nested = [n for n, a in columns.items() if pa.types.is_nested(a.type)]
        for name in nested:
            values = [{str(k): v for k, v in row.items()}.get(name if name != "_" else "") for row in rows]
            columns[name] = pa.array([None if v is None else to_json(v) for v in values], type=pa.string())
        buf = io.BytesIO()
        pq.write_table(pa.table(columns), buf)
    return buf.getvalue()


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, d)
            stack += [(c, d + 1) for c in (node.values() if isinstance(node, dict) else node)]
    return deepest


# ------------------------------------------------------------------------------------------------ bytes


@st.composite
def mutate_bytes(draw: Any, data: bytes) -> bytes:
    """One or two byte-level accidents of real files."""
    for _ in range(draw(st.integers(1, 2))):
        op = draw(
            st.sampled_from(
                ["bom", "crlf", "truncate", "insert", "garble", "long", "blank", "dup", "bad_utf8", "nul"]
            )
        )
        lines = data.split(b"\n")
        at = draw(st.integers(0, max(0, len(data))))
        if op == "bom":
            data = b"\xef\xbb\xbf" + data
        elif op == "crlf":
            data = data.replace(b"\n", b"\r\n")
        elif op == "truncate":
            data = data[:at]
        elif op == "insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=12)) + data[at:]
        elif op == "garble" and lines:
            i = draw(st.integers(0, len(lines) - 1))
            lines[i] = draw(st.binary(max_size=40))
            data = b"\n".join(lines)
        elif op == "long":
            i = draw(st.integers(0, len(lines)))
            lines.insert(i, b'{"prompt": "' + b"z" * draw(st.integers(MAX_LINE, 3 * MAX_LINE)) + b'"}')
            data = b"\n".join(lines)
        elif op == "blank":
            data = data[:at] + draw(st.sampled_from([b"\n", b"\n\n", b" \t\n", b"\r\n"])) + data[at:]
        elif op == "dup" and lines:
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            data = b"\n".join(lines)
        elif op == "bad_utf8":
            bad = draw(
                st.sampled_from([b"\xff", b"\xc3", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90"])
            )
            data = data[:at] + bad + data[at:]
        elif op == "nul":
            data = data[:at] + b"\x00" + data[at:]
    return data


# ------------------------------------------------------------------------------------------------ checks

# A small max_line_bytes so "extremely long lines" stay cheap to make, yet above the ~6 KB of JSON that
# nests 1000 levels (past the JSON parsers' depth limits), so deep rows reach the importers.
MAX_LINE = 16_384


@dataclass
class Result:
    report: Any = None  # None when the file was refused with a UserError
    error: str | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)


def jsonl_lines(data: bytes) -> set[int]:
    """Line numbers of the non-blank lines of a JSONL file (what read_jsonl reads; a BOM is not content)."""
    out = set()
    for n, line in enumerate(data.split(b"\n"), start=1):
        if n == 1:
            line = line.removeprefix(b"\xef\xbb\xbf")
        if line.strip():
            out.add(n)
    return out


def check_import(
    path: Path, fmt: str = "auto", rows_at: set[int] | None = None, max_line_bytes: int = MAX_LINE
) -> Result:
    """Import ``path`` and assert the guarantee. ``rows_at``: the lines (or element positions) that hold a
    row: each must show up as an accepted record's source or a quarantine entry's line."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        out, qpath = Path(tmp) / "ds", Path(tmp) / "q.jsonl"
        try:
            report = importing.run([path], fmt=fmt, out=out, quarantine=qpath, max_line_bytes=max_line_bytes)
        except UserError as exc:
            msg = str(exc)
            assert msg and "\n" not in msg, f"a UserError must be one line: {msg!r}"
            assert not out.exists(), "a refused file must leave no dataset behind"
            return Result(error=msg)
        assert report.accepted + report.quarantined == report.read, report.to_json()
        assert sum(report.by_reason.values()) == report.quarantined, report.to_json()
        assert report.skipped <= report.quarantined
        # split on "\n" only: JSON Lines allows U+0085 and U+2028 inside a line, str.splitlines() does not
        lines = qpath.read_text(encoding="utf-8").split("\n")[:-1]
        assert len(lines) == report.quarantined, (len(lines), report.to_json())
        rejects = [json.loads(line) for line in lines]
        for entry in rejects:
            assert {"source", "line", "reason", "detail"} <= set(entry), entry
            assert isinstance(entry["line"], int) and entry["line"] >= 1, entry
            assert entry["reason"] in report.by_reason, entry
            assert "\n" not in entry["detail"], entry
        records = list(iter_records(load_dataset(out)))
        assert len(records) == report.accepted
        json.dumps(report.to_json())  # the --json report always serializes
        if rows_at is not None:
            seen = {int(r["source"].rsplit(":", 1)[1]) for r in records}
            for r in records:
                seen.update((r.get("meta") or {}).get("rows") or [])  # HelpSteer2: one record of many rows
            for e in rejects:
                seen.add(e["line"])
                if isinstance(e.get("raw"), dict) and isinstance(e["raw"].get("lines"), list):
                    seen.update(e["raw"]["lines"])
            missing = sorted(rows_at - seen)
            assert not missing, f"rows at {missing[:10]} were neither accepted nor quarantined"
        return Result(report, None, records, rejects)


def write(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path
