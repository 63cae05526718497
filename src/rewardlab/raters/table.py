"""A columnar view of rater judgments, built once and shared by the quality report and the aggregation.

Why columnar: a campaign of a million judgments must be measured and merged in under a minute, so every
per-rater and per-pair statistic below is a numpy ``bincount`` over flat arrays instead of a Python loop
over dicts. One Python pass over the records builds those arrays.

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


class _Builder:
    """Accumulates rows; ``finish`` turns the lists into arrays."""

    def __init__(self) -> None:
        self.groups: dict[tuple, int] = {}
        self.raters: dict[str | None, int] = {}
        self.group_keys: list[str] = []
        self.group_responses: list[list[str]] = []
        self.group_k: list[int] = []
        self.group_first: list[int] = []
        self.unit_base: list[int] = [0]
        self.j_row: list[int] = []
        self.j_group: list[int] = []
        self.j_rater: list[int] = []
        self.j_time: list[float] = []
        self.j_order: list[tuple[int, ...]] = []
        self.p_judgment: list[int] = []
        self.p_unit: list[int] = []
        self.p_a: list[int] = []
        self.p_b: list[int] = []
        self.p_outcome: list[int] = []
        self.p_first: list[int] = []
        self.p_a_first: list[bool] = []
        self.p_lead: list[bool] = []
        self.gold: list[tuple[int, int, tuple[int, ...], list[int]]] = []
        self.j_scores: list[tuple[int, dict[str, list]]] = []
        self.n = 0

    def add(
        self,
        row: int,
        prompt: str,
        chat: bool,
        responses: list[str],
        ranks: list[int],
        rater: str | None,
        gold: bool,
        time_s: float | None,
        scores: Any = None,
    ) -> None:
        """One record; a chat ``prompt`` arrives as its stored JSON text (decoded once per new group)."""
        k = len(responses)
        canon = sorted(responses)
        key = (chat, prompt, tuple(canon))
        g = self.groups.get(key)
        if g is None:
            g = len(self.group_keys)
            self.groups[key] = g
            self.group_keys.append(group_key(json.loads(prompt) if chat else prompt, canon))
            self.group_responses.append(canon)
            self.group_k.append(k)
            self.group_first.append(-1)
            self.unit_base.append(self.unit_base[-1] + k * (k - 1) // 2)
        if k == 2:
            order = (0, 1) if responses[0] <= responses[1] else (1, 0)
        else:
            index = {text: c for c, text in enumerate(canon)}
            order = tuple(index[text] for text in responses)
        self.n += 1
        if gold:
            self.gold.append((row, g, order, ranks))
            return
        if self.group_first[g] < 0:
            self.group_first[g] = row
        j = len(self.j_row)
        self.j_row.append(row)
        self.j_group.append(g)
        r = self.raters.get(rater)
        if r is None:
            r = self.raters[rater] = len(self.raters)
        self.j_rater.append(r)
        self.j_time.append(np.nan if time_s is None else time_s)
        self.j_order.append(order)
        if scores is not None:
            self.j_scores.append((j, json.loads(scores) if isinstance(scores, str) else scores))
        base = self.unit_base[g]
        for i in range(k):
            for jj in range(i + 1, k):
                ci, cj = order[i], order[jj]
                ri, rj = ranks[i], ranks[jj]
                first = 1 if ri < rj else (0 if ri > rj else -1)
                if ci < cj:
                    a, b, a_first = ci, cj, True
                    outcome = 1 if first == 1 else (-1 if first == 0 else 0)
                else:
                    a, b, a_first = cj, ci, False
                    outcome = -1 if first == 1 else (1 if first == 0 else 0)
                self.p_judgment.append(j)
                self.p_unit.append(base + pair_index(a, b, k))
                self.p_a.append(a)
                self.p_b.append(b)
                self.p_outcome.append(outcome)
                self.p_first.append(first)
                self.p_a_first.append(a_first)
                self.p_lead.append(i == 0)

    def finish(self) -> Judgments:
        k = np.asarray(self.group_k, dtype=np.int64)
        unit_offset = np.asarray(self.unit_base, dtype=np.int64)
        item_offset = np.concatenate([[0], np.cumsum(k)]).astype(np.int64)
        unit_gold = np.full(int(unit_offset[-1]), NO_GOLD, dtype=np.int8)
        unit_seen = np.zeros(len(unit_gold), dtype=bool)
        conflicts = 0
        for _row, g, order, ranks in self.gold:
            kg = len(order)
            base = int(unit_offset[g])
            for i in range(kg):
                for jj in range(i + 1, kg):
                    ci, cj = order[i], order[jj]
                    ri, rj = (ranks[i], ranks[jj]) if ci < cj else (ranks[jj], ranks[i])
                    a, b = min(ci, cj), max(ci, cj)
                    value = NO_GOLD if ri == rj else (1 if ri < rj else -1)
                    u = base + pair_index(a, b, kg)
                    if unit_seen[u] and unit_gold[u] != value:
                        conflicts += 1
                        continue  # the first gold record of a comparison wins; conflicts are counted
                    unit_seen[u] = True
                    unit_gold[u] = value
        i32 = np.int32
        return Judgments(
            raters=list(self.raters),
            group_keys=self.group_keys,
            group_responses=self.group_responses,
            group_k=k,
            group_first=np.asarray(self.group_first, dtype=np.int64),
            unit_offset=unit_offset,
            item_offset=item_offset,
            j_row=np.asarray(self.j_row, dtype=np.int64),
            j_group=np.asarray(self.j_group, dtype=i32),
            j_rater=np.asarray(self.j_rater, dtype=i32),
            j_time=np.asarray(self.j_time, dtype=np.float64),
            j_order=self.j_order,
            p_judgment=np.asarray(self.p_judgment, dtype=i32),
            p_unit=np.asarray(self.p_unit, dtype=np.int64),
            p_a=np.asarray(self.p_a, dtype=np.int16),
            p_b=np.asarray(self.p_b, dtype=np.int16),
            p_outcome=np.asarray(self.p_outcome, dtype=np.int8),
            p_first=np.asarray(self.p_first, dtype=np.int8),
            p_a_first=np.asarray(self.p_a_first, dtype=bool),
            p_lead=np.asarray(self.p_lead, dtype=bool),
            unit_gold=unit_gold,
            gold_rows=[row for row, *_ in self.gold],
            gold_groups=np.asarray([g for _, g, *_ in self.gold], dtype=np.int64),
            gold_conflicts=conflicts,
            n_records=self.n,
            j_scores=self.j_scores,
        )


def from_records(records: Iterable[dict[str, Any]]) -> Judgments:
    """Build from normalized records (``schema.normalize`` output), e.g. in tests or the simulator sweep."""
    b = _Builder()
    for row, rec in enumerate(records):
        prompt = rec["prompt"]
        chat = not isinstance(prompt, str)
        text = json.dumps(prompt, ensure_ascii=False) if chat else prompt
        b.add(
            row,
            text,
            chat,
            rec["responses"],
            rec["ranks"],
            rec.get("rater"),
            bool(rec.get("gold")),
            rec.get("time_s"),
            rec.get("scores"),
        )
    return b.finish()


COLUMNS = ["prompt", "chat", "responses", "ranks", "rater", "gold", "time_s", "scores"]


def from_dataset(path: str | Path, batch_size: int = 100_000) -> Judgments:
    """Build from a dataset folder, reading only the columns it needs straight from Arrow (no decode)."""
    from rewardlab.data.dataset import is_dataset_dir, load_dataset

    if not is_dataset_dir(path):
        raise UserError(
            f"{path}: not a rewardlab dataset folder (no rewardlab.json); import it first with "
            "`rewardlab data import FILE --out DIR`"
        )
    table = load_dataset(path).data.table.select(COLUMNS)
    b = _Builder()
    row = 0
    for batch in table.to_batches(max_chunksize=batch_size):
        cols = {name: batch.column(name).to_pylist() for name in COLUMNS}
        for prompt, chat, responses, ranks, rater, gold, time_s, scores in zip(*(cols[n] for n in COLUMNS)):
            b.add(row, prompt, bool(chat), responses, ranks, rater, bool(gold), time_s, scores)
            row += 1
    return b.finish()
