"""Counts and audits of a dataset folder (`rewardlab data stats`), vectorised over the Arrow columns.

Strings are dictionary-encoded once (prompt, response text, rater), so every pair of every record becomes a
few integer arrays: a million records take seconds, not minutes. Records are grouped by K; within a group the
ranks and response ids form dense [n, K] matrices and each of the C(K,2) listed pairs (i < j) is one
vectorised step.

Definitions (all over the pairs a ranking implies, i before j in listed order):
- ``position_bias``: share of non-tie pairs whose first-listed response wins (0.5 is unbiased), over rater
  judgments (gold records excluded); ``position_bias_by_rater`` the same per rater.
- ``length_bias``: share of non-tie pairs of unequal length whose longer response wins (not 0.5 by nature:
  on harmless data shorter answers win more often).
- ``duplicates``: records whose content hash (prompt, responses, ranks, rater, strength) repeats an earlier one.
- ``contradictions``: distinct comparisons (prompt + unordered pair of texts) judged both ways, by any raters;
  ``contradictions_within_rater``: the same rater judged one comparison both ways.
- ``prompt_overlap``: prompts present in both sides of the prompt-grouped train/eval split (must be 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _table(ds: Any) -> Any:
    """The pyarrow Table behind a datasets.Dataset, honouring a selection (one Arrow take, not a row loop)."""
    indices = getattr(ds, "_indices", None)
    if indices is None:
        return ds.data.table
    return ds.data.table.take(indices.column(0))


def _column(ds: Any, name: str) -> Any:
    """One column of a datasets.Dataset as Arrow, honouring a selection."""
    indices = getattr(ds, "_indices", None)
    column = ds.data.table.column(name)
    return column if indices is None else column.take(indices.column(0))


def _codes(column: Any) -> tuple[np.ndarray, Any]:
    """Dictionary-encode a string column -> (int codes, -1 for null; the dictionary of distinct values)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    encoded = pc.dictionary_encode(arr)
    indices = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return indices, encoded.dictionary


def _group_ids(columns: list[np.ndarray]) -> np.ndarray:
    """One id per distinct row of non-negative int columns (packed into one int64 when it fits)."""
    if not columns or columns[0].size == 0:
        return np.zeros(0, dtype=np.int64)
    sizes = [int(c.max()) + 2 for c in columns]
    if float(np.prod([float(x) for x in sizes])) < 2.0**62:
        key = np.zeros(columns[0].size, dtype=np.int64)
        for col, size in zip(columns, sizes):
            key = key * size + (col + 1)
        return np.unique(key, return_inverse=True)[1].reshape(-1)
    return np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)[1].reshape(-1)


def _list_parts(column: Any) -> tuple[Any, np.ndarray, np.ndarray]:
    """A list column -> (flat values array, start offset of each row, length of each row)."""
    import pyarrow as pa

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    offsets = arr.offsets.to_numpy().astype(np.int64)
    starts = offsets[:-1] - offsets[0]
    lengths = np.diff(offsets)
    return arr.flatten(), starts, lengths


def compute_stats(ds: Any, eval_fraction: float = 0.1, seed: int = 0) -> dict[str, Any]:
    """The docs/design.md `data stats --json` object for a loaded dataset."""
    import pyarrow.compute as pc

    table = _table(ds)
    n = table.num_rows
    prompt_codes, _ = _codes(table.column("prompt"))
    rater_codes, rater_names = _codes(table.column("rater"))
    gold = table.column("gold").fill_null(False).to_numpy(zero_copy_only=False).astype(bool)

    flat_resp, starts, ks = _list_parts(table.column("responses"))
    resp_codes, _ = _codes(flat_resp)
    resp_len = pc.utf8_length(flat_resp).to_numpy(zero_copy_only=False).astype(np.int64)
    flat_ranks, rank_starts, _ = _list_parts(table.column("ranks"))
    ranks_flat = flat_ranks.to_numpy(zero_copy_only=False).astype(np.int64)

    # distinct (prompt, response) pairs
    parent = np.repeat(prompt_codes, ks)
    n_responses = int(_group_ids([parent, resp_codes]).max(initial=-1)) + 1

    pair_parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("prompt", "lo", "hi", "lo_wins", "first_wins", "tie", "longer_wins", "gold", "rater")
    }
    k_hist: dict[str, int] = {}
    for k in np.unique(ks):
        rows = np.nonzero(ks == k)[0]
        k_hist[str(int(k))] = int(rows.size)
        if k < 2:
            continue
        cols = np.arange(k)
        rank_m = ranks_flat[rank_starts[rows][:, None] + cols]
        resp_m = resp_codes[starts[rows][:, None] + cols]
        len_m = resp_len[starts[rows][:, None] + cols]
        for i in range(k):
            for j in range(i + 1, k):
                ri, rj = rank_m[:, i], rank_m[:, j]
                ci, cj = resp_m[:, i], resp_m[:, j]
                li, lj = len_m[:, i], len_m[:, j]
                first_wins = ri < rj
                lo_is_i = ci <= cj
                longer = np.where(li == lj, -1, np.where(first_wins == (li > lj), 1, 0))
                pair_parts["prompt"].append(prompt_codes[rows])
                pair_parts["lo"].append(np.where(lo_is_i, ci, cj))
                pair_parts["hi"].append(np.where(lo_is_i, cj, ci))
                pair_parts["lo_wins"].append(np.where(lo_is_i, first_wins, ri > rj))
                pair_parts["first_wins"].append(first_wins)
                pair_parts["tie"].append(ri == rj)
                pair_parts["longer_wins"].append(longer)
                pair_parts["gold"].append(gold[rows])
                pair_parts["rater"].append(rater_codes[rows])
    p = {key: (np.concatenate(v) if v else np.zeros(0, dtype=np.int64)) for key, v in pair_parts.items()}
    tie = p["tie"].astype(bool)
    judged = ~tie & ~p["gold"].astype(bool)
    first_wins = p["first_wins"].astype(bool)

    position_bias = float(first_wins[judged].mean()) if judged.any() else None
    by_rater, pairs_by_rater = {}, {}
    has_rater = judged & (p["rater"] >= 0)
    if has_rater.any():
        counts = np.bincount(p["rater"][has_rater], minlength=len(rater_names))
        wins = np.bincount(p["rater"][has_rater], weights=first_wins[has_rater], minlength=len(rater_names))
        names = rater_names.to_pylist()
        for code in sorted(np.nonzero(counts)[0], key=lambda c: str(names[c])):
            by_rater[str(names[code])] = round(float(wins[code] / counts[code]), 6)
            pairs_by_rater[str(names[code])] = int(counts[code])
    longer = p["longer_wins"][judged]
    longer = longer[longer >= 0]
    length_bias = float(longer.mean()) if longer.size else None

    contradictions, within = _contradictions(
        p["prompt"], p["lo"], p["hi"], p["lo_wins"].astype(bool), p["rater"], tie
    )
    n_raters = int(np.unique(rater_codes[rater_codes >= 0]).size)
    split = _split_audit(ds, eval_fraction, seed)
    return {
        "records": n,
        "prompts": int(np.unique(prompt_codes).size) if n else 0,
        "responses": n_responses,
        "response_slots": int(ks.sum()),
        "raters": n_raters,
        "pairs": int(tie.size),
        "ties": int(tie.sum()),
        "gold": int(gold.sum()),
        "k_histogram": k_hist,
        "position_bias": _round(position_bias),
        "position_bias_by_rater": by_rater,
        "pairs_by_rater": pairs_by_rater,
        "length_bias": _round(length_bias),
        "duplicates": n - int(pc.count_distinct(table.column("hash")).as_py()) if n else 0,
        "contradictions": contradictions,
        "contradictions_within_rater": within,
        "prompt_overlap": split["prompt_overlap"],
        "split": split,
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def _contradictions(
    prompt: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    lo_wins: np.ndarray,
    rater: np.ndarray,
    tie: np.ndarray,
) -> tuple[int, int]:
    """Comparisons judged both ways: overall, and by one rater."""
    keep = ~tie
    if not keep.any():
        return 0, 0
    wins = lo_wins[keep]
    overall = _both_ways(_group_ids([prompt[keep], lo[keep], hi[keep]]), wins)
    mine = rater[keep] >= 0
    within = _both_ways(
        _group_ids([prompt[keep][mine], lo[keep][mine], hi[keep][mine], rater[keep][mine]]), wins[mine]
    )
    return overall, within


def _both_ways(group: np.ndarray, wins: np.ndarray) -> int:
    if group.size == 0:
        return 0
    n_groups = int(group.max()) + 1
    some_win = np.bincount(group, weights=wins, minlength=n_groups) > 0
    some_loss = np.bincount(group, weights=~wins, minlength=n_groups) > 0
    return int((some_win & some_loss).sum())


def _split_audit(ds: Any, eval_fraction: float, seed: int) -> dict[str, Any]:
    """The prompt-grouped split the trainers use, checked for prompts on both sides."""
    import pyarrow.compute as pc

    from rewardlab.data.dataset import split_by_prompt

    out = {
        "eval_fraction": eval_fraction,
        "seed": seed,
        "train_records": 0,
        "eval_records": 0,
        "prompt_overlap": 0,
    }
    if len(ds) == 0:
        return out
    train, evals = split_by_prompt(ds, eval_fraction, seed)
    out.update(train_records=len(train), eval_records=len(evals))
    if len(train) and len(evals):
        train_prompts = pc.unique(_column(train, "prompt").combine_chunks())
        eval_prompts = pc.unique(_column(evals, "prompt").combine_chunks())
        out["prompt_overlap"] = int(pc.sum(pc.is_in(eval_prompts, value_set=train_prompts)).as_py() or 0)
    return out


def format_stats(s: dict[str, Any]) -> str:
    """The human-readable audit."""
    lines = [
        f"records      {s['records']}",
        f"prompts      {s['prompts']}",
        f"responses    {s['responses']} distinct ({s['response_slots']} slots)",
        f"raters       {s['raters']}",
        f"pairs        {s['pairs']} (ties {s['ties']})",
        f"gold         {s['gold']}",
        "K histogram  " + ", ".join(f"K={k}: {v}" for k, v in s["k_histogram"].items()),
        f"position bias {s['position_bias']}  (share of pairs the first-listed response wins; 0.5 is none)",
        f"length bias   {s['length_bias']}  (share of pairs the longer response wins)",
        f"duplicates   {s['duplicates']}",
        f"contradictions {s['contradictions']} (within one rater: {s['contradictions_within_rater']})",
        f"prompt overlap between train/eval split: {s['prompt_overlap']}",
    ]
    skewed = {
        r: b
        for r, b in s["position_bias_by_rater"].items()
        if s["pairs_by_rater"].get(r, 0) >= 10 and abs(b - 0.5) >= 0.25
    }
    if skewed:
        lines.append(
            "raters with strong position bias (>= 10 pairs): "
            + ", ".join(f"{r}={b:.2f}" for r, b in sorted(skewed.items()))
        )
    return "\n".join(lines)
