"""A columnar view of rater judgments, built once and shared by the quality report and the aggregation.

Why columnar: a campaign of a million judgments must be measured and merged in under a minute, so every
per-rater and per-pair statistic below is a numpy ``bincount`` over flat arrays instead of a Python loop
over dicts. One Python pass over the records builds those arrays.

The common case, a pair, is built with Arrow compute kernels and numpy (a million pairwise judgments in a
few seconds); K-wise judgments and gold references go through a plain Python loop.

Vocabulary:
- group: one comparison, ``schema.group_key(prompt, responses)``: the same prompt and set of responses,
  whatever order each rater saw them in. Responses get a *canonical* index: their position in sorted order.
- judgment: one non-gold record (one rater's ranking of one group).
- unit: one implied pair ``(a, b)`` of a group with canonical indices ``a < b``; ``outcome`` is +1 when the
  judgment puts ``a`` above ``b``, -1 when below, 0 for a tie.
- gold: records with ``gold: true`` are references, never votes: their ranks become ``unit_gold``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rewardlab.data.schema import group_key
from rewardlab.errors import UserError

NO_GOLD = 2  # unit_gold value when a unit has no gold reference (or the reference is a tie)


@dataclass
class Judgments:
    """Flat arrays over groups, judgments and implied pairs (see the module docstring)."""

    raters: list[str | None]
    group_keys: list[str]
    group_responses: list[list[str]]  # canonical (sorted) order
    group_k: np.ndarray
    group_first: np.ndarray  # source row of the first non-gold judgment (-1: gold only)
    unit_offset: np.ndarray  # G + 1 cumulative C(K, 2)
    item_offset: np.ndarray  # G + 1 cumulative K
    j_row: np.ndarray  # source row of each judgment
    j_group: np.ndarray
    j_rater: np.ndarray
    j_time: np.ndarray  # seconds, nan when unknown
    j_order: list[tuple[int, ...]]  # display position -> canonical index, per judgment
    p_judgment: np.ndarray
    p_unit: np.ndarray
    p_a: np.ndarray
    p_b: np.ndarray
    p_outcome: np.ndarray  # +1 a above b, -1 below, 0 tie
    p_first: np.ndarray  # 1 earlier-listed response won, 0 later won, -1 tie
    p_a_first: np.ndarray  # a was listed before b
    p_lead: np.ndarray  # the pair involves the first-listed response (display position 0)
    unit_gold: np.ndarray
    gold_rows: list[int]
    gold_groups: np.ndarray  # group index of each gold record
    gold_conflicts: int
    n_records: int
    j_scores: list[tuple[int, dict[str, list]]] = field(
        default_factory=list
    )  # (judgment, scores) when present
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_groups(self) -> int:
        return len(self.group_keys)

    @property
    def n_units(self) -> int:
        return int(self.unit_offset[-1])

    @property
    def n_items(self) -> int:
        return int(self.item_offset[-1])

    @property
    def p_rater(self) -> np.ndarray:
        return self.j_rater[self.p_judgment]

    @property
    def p_group(self) -> np.ndarray:
        return self.j_group[self.p_judgment]


def pair_index(a: int, b: int, k: int) -> int:
    """Position of canonical pair (a, b), a < b, among the C(k, 2) pairs listed row by row."""
    return a * (2 * k - a - 1) // 2 + (b - a - 1)


COLUMNS = ["prompt", "chat", "responses", "ranks", "rater", "gold", "time_s", "scores"]
SCHEMA = pa.schema(
    [
        ("prompt", pa.string()),
        ("chat", pa.bool_()),
        ("responses", pa.list_(pa.string())),
        ("ranks", pa.list_(pa.int32())),
        ("rater", pa.string()),
        ("gold", pa.bool_()),
        ("time_s", pa.float64()),
        ("scores", pa.string()),
    ]
)


def _py(arr: Any, rows: np.ndarray) -> list:
    """Python values of ``arr`` at ``rows``."""
    return arr.take(pa.array(rows, type=pa.int64())).to_pylist() if len(rows) else []


def _group_codes(table: pa.Table, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: its comparison (codes in order of first appearance) and, for pairs, whether the first shown
    response sorts first. A comparison is (chat flag, prompt, sorted responses)."""
    import pandas as pd

    n = table.num_rows
    two = np.flatnonzero(k == 2)
    rest = np.flatnonzero(k != 2)
    prompt = table["prompt"]
    chat = pc.if_else(pc.fill_null(table["chat"], False), "c", "t")
    keys = np.empty(n, dtype=object)
    less = np.zeros(n, dtype=bool)
    if len(two):
        idx = pa.array(two, type=pa.int64())
        resp = table["responses"].take(idx)
        r0, r1 = pc.list_element(resp, 0), pc.list_element(resp, 1)
        lt = pc.less_equal(r0, r1)  # UTF-8 byte order is code point order, Python's str order
        lo, hi = pc.if_else(lt, r0, r1), pc.if_else(lt, r1, r0)
        joined = pc.binary_join_element_wise(chat.take(idx), prompt.take(idx), lo, hi, "\x00")
        keys[two] = joined.to_numpy(zero_copy_only=False)
        less[two] = lt.to_numpy(zero_copy_only=False)
    if len(rest):
        values = zip(rest.tolist(), _py(chat, rest), _py(prompt, rest), _py(table["responses"], rest))
        for row, c, p, responses in values:
            keys[row] = "\x00".join([c, p, *sorted(responses)])
    codes, _ = pd.factorize(keys)
    return codes.astype(np.int64), less


def _kwise_pairs(
    cols: dict[str, list], jdx: int, order: tuple[int, ...], ranks: list[int], base: int
) -> None:
    """Append the implied pairs of one K-wise judgment (``order``: display position -> canonical index)."""
    k = len(order)
    for i in range(k):
        for jj in range(i + 1, k):
            ci, cj = order[i], order[jj]
            ri, rj = ranks[i], ranks[jj]
            first = 1 if ri < rj else (0 if ri > rj else -1)
            a_first = ci < cj
            a, b = (ci, cj) if a_first else (cj, ci)
            win = 1 if first == 1 else -1
            cols["j"].append(jdx)
            cols["unit"].append(base + pair_index(a, b, k))
            cols["a"].append(a)
            cols["b"].append(b)
            cols["outcome"].append(0 if first < 0 else (win if a_first else -win))
            cols["first"].append(first)
            cols["a_first"].append(a_first)
            cols["lead"].append(i == 0)


def _gold(
    table: pa.Table,
    rows: np.ndarray,
    codes: np.ndarray,
    group_responses: list[list[str]],
    unit_offset: np.ndarray,
) -> tuple[np.ndarray, int]:
    """Gold references -> known outcome per unit (the first reference of a comparison wins; conflicts counted)."""
    unit_gold = np.full(int(unit_offset[-1]), NO_GOLD, dtype=np.int8)
    seen = np.zeros(len(unit_gold), dtype=bool)
    conflicts = 0
    for row, resp, rnk in zip(rows.tolist(), _py(table["responses"], rows), _py(table["ranks"], rows)):
        g = int(codes[row])
        index = {text: c for c, text in enumerate(group_responses[g])}
        order = [index[text] for text in resp]
        kg = len(order)
        for i in range(kg):
            for jj in range(i + 1, kg):
                ci, cj = order[i], order[jj]
                ri, rj = (rnk[i], rnk[jj]) if ci < cj else (rnk[jj], rnk[i])
                value = NO_GOLD if ri == rj else (1 if ri < rj else -1)
                u = int(unit_offset[g]) + pair_index(min(ci, cj), max(ci, cj), kg)
                if seen[u] and unit_gold[u] != value:
                    conflicts += 1
                    continue
                seen[u] = True
                unit_gold[u] = value
    return unit_gold, conflicts


def _scores(table: pa.Table, j_row: np.ndarray) -> list[tuple[int, dict[str, list]]]:
    """(judgment, rubric scores) for the judgments that carry scores (stored as JSON text)."""
    col = table["scores"]
    if col.null_count == len(col):
        return []
    values = _py(col, j_row)
    return [
        (jdx, json.loads(v) if isinstance(v, str) else v) for jdx, v in enumerate(values) if v is not None
    ]


def _pair_rows(table: pa.Table, jt: np.ndarray, j_row: np.ndarray, j_group: np.ndarray, less: np.ndarray,
               unit_offset: np.ndarray, orders: list) -> dict[str, np.ndarray]:  # fmt: skip
    """Implied pairs of the pairwise judgments ``jt``, vectorised (one pair each)."""
    rk = table["ranks"].take(pa.array(j_row[jt], type=pa.int64()))
    r0 = pc.list_element(rk, 0).to_numpy(zero_copy_only=False)
    r1 = pc.list_element(rk, 1).to_numpy(zero_copy_only=False)
    first = np.where(r0 < r1, 1, np.where(r0 > r1, 0, -1)).astype(np.int8)
    a_first = less[j_row[jt]]
    outcome = np.where(first < 0, 0, np.where((first == 1) == a_first, 1, -1)).astype(np.int8)
    for jdx, flag in zip(jt.tolist(), a_first.tolist()):
        orders[jdx] = (0, 1) if flag else (1, 0)
    n = len(jt)
    return {"j": jt, "unit": unit_offset[j_group[jt]], "a": np.zeros(n), "b": np.ones(n), "outcome": outcome,
            "first": first, "a_first": a_first, "lead": np.ones(n, dtype=bool)}  # fmt: skip


def from_table(table: pa.Table) -> Judgments:
    """Build from an Arrow table with ``COLUMNS`` (the dataset's storage form: chat prompts as JSON text)."""
    import pandas as pd

    n = table.num_rows
    k = pc.list_value_length(table["responses"]).to_numpy(zero_copy_only=False).astype(np.int64)
    gold = pc.fill_null(table["gold"], False).to_numpy(zero_copy_only=False).astype(bool)
    codes, less = _group_codes(table, k)
    n_groups = int(codes.max()) + 1 if n else 0
    first_row = np.full(n_groups, n, dtype=np.int64)
    np.minimum.at(first_row, codes, np.arange(n))
    group_k = k[first_row]
    chats = _py(pc.fill_null(table["chat"], False), first_row)
    group_responses = [sorted(r) for r in _py(table["responses"], first_row)]
    group_keys = [
        group_key(json.loads(p) if c else p, canon)
        for p, c, canon in zip(_py(table["prompt"], first_row), chats, group_responses)
    ]
    unit_offset = np.concatenate([[0], np.cumsum(group_k * (group_k - 1) // 2)]).astype(np.int64)
    item_offset = np.concatenate([[0], np.cumsum(group_k)]).astype(np.int64)

    j_row = np.flatnonzero(~gold)
    j_group = codes[j_row]
    rater_codes, rater_names = pd.factorize(
        table["rater"].to_numpy(zero_copy_only=False)[j_row], use_na_sentinel=False
    )
    raters = [None if r is None or (isinstance(r, float) and np.isnan(r)) else str(r) for r in rater_names]
    group_first = np.full(n_groups, -1, dtype=np.int64)
    if len(j_row):
        seen, at = np.unique(j_group, return_index=True)
        group_first[seen] = j_row[at]

    orders: list[tuple[int, ...] | None] = [None] * len(j_row)
    parts = []
    jt = np.flatnonzero(k[j_row] == 2)
    if len(jt):
        parts.append(_pair_rows(table, jt, j_row, j_group, less, unit_offset, orders))
    jk = np.flatnonzero(k[j_row] != 2)
    if len(jk):
        cols: dict[str, list] = {
            name: [] for name in ("j", "unit", "a", "b", "outcome", "first", "a_first", "lead")
        }
        for jdx, resp, rnk in zip(
            jk.tolist(), _py(table["responses"], j_row[jk]), _py(table["ranks"], j_row[jk])
        ):
            g = int(j_group[jdx])
            index = {text: c for c, text in enumerate(group_responses[g])}
            orders[jdx] = tuple(index[text] for text in resp)
            _kwise_pairs(cols, jdx, orders[jdx], rnk, int(unit_offset[g]))
        parts.append({name: np.asarray(values) for name, values in cols.items()})

    def cat(name: str, dtype: Any) -> np.ndarray:
        return (
            np.concatenate([np.asarray(p[name]) for p in parts]).astype(dtype)
            if parts
            else np.zeros(0, dtype)
        )

    gold_rows = np.flatnonzero(gold)
    unit_gold, conflicts = _gold(table, gold_rows, codes, group_responses, unit_offset)
    return Judgments(
        raters=raters,
        group_keys=group_keys,
        group_responses=group_responses,
        group_k=group_k,
        group_first=group_first,
        unit_offset=unit_offset,
        item_offset=item_offset,
        j_row=j_row.astype(np.int64),
        j_group=j_group.astype(np.int32),
        j_rater=np.asarray(rater_codes, dtype=np.int32),
        j_time=table["time_s"].to_numpy(zero_copy_only=False).astype(np.float64)[j_row],
        j_order=orders,
        p_judgment=cat("j", np.int32),
        p_unit=cat("unit", np.int64),
        p_a=cat("a", np.int16),
        p_b=cat("b", np.int16),
        p_outcome=cat("outcome", np.int8),
        p_first=cat("first", np.int8),
        p_a_first=cat("a_first", bool),
        p_lead=cat("lead", bool),
        unit_gold=unit_gold,
        gold_rows=gold_rows.tolist(),
        gold_groups=codes[gold_rows].astype(np.int64),
        gold_conflicts=conflicts,
        n_records=n,
        j_scores=_scores(table, j_row),
    )


def from_records(records: Iterable[dict[str, Any]]) -> Judgments:
    """Build from normalized records (``schema.normalize`` output), e.g. in tests or the simulator sweep."""
    cols: dict[str, list] = {name: [] for name in COLUMNS}
    for rec in records:
        prompt = rec["prompt"]
        chat = not isinstance(prompt, str)
        scores = rec.get("scores")
        cols["prompt"].append(json.dumps(prompt, ensure_ascii=False) if chat else prompt)
        cols["chat"].append(chat)
        cols["responses"].append(rec["responses"])
        cols["ranks"].append(rec["ranks"])
        cols["rater"].append(rec.get("rater"))
        cols["gold"].append(bool(rec.get("gold")))
        cols["time_s"].append(rec.get("time_s"))
        cols["scores"].append(None if scores is None else json.dumps(scores))
    return from_table(pa.table(cols, schema=SCHEMA))


def from_dataset(path: str | Path) -> Judgments:
    """Build from a dataset folder, reading only the columns it needs straight from Arrow (no row decode)."""
    from rewardlab.data.dataset import is_dataset_dir, load_dataset

    if not is_dataset_dir(path):
        raise UserError(
            f"{path}: not a rewardlab dataset folder (no rewardlab.json); import it first with "
            "`rewardlab data import FILE --out DIR`"
        )
    return from_table(load_dataset(path).data.table.select(COLUMNS))
