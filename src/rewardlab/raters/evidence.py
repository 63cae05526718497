"""``raters report --evidence DIR``: the judgments behind every flag, so a project lead or the rater can
check it.

Why a file per flagged rater rather than a count in the report: a flag takes a person off a project, and
"agreement 0.41 on 80 pairs" can only be checked by looking at the 80 pairs. Each line is one implied pair
of one of the rater's judgments: the comparison (its key, source row and the two responses), the order the
rater saw them in, the rater's verdict, the leave-one-out consensus of the *other* judgments (no other
rater is named) and the gold answer where there is one, plus which flagged rules the pair counts toward.
Rater ids are whatever the report measured: pseudonyms when ``pseudonymize`` is on (the report then runs on
a pseudonymized copy), so no raw id reaches these files either.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.raters.quality import agreement_consensus
from rewardlab.raters.table import NO_GOLD, Judgments

_VERDICT = {1: "a above b", 0: "tie", -1: "b above a", 2: None}
MAX_TEXT = 2000  # characters of each response written (the full text stays in the dataset)


def _file_name(rater: str) -> str:
    """A safe file name that still reads as the rater id (plus a hash when the id had to be changed)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", rater)[:80]
    if safe != rater:
        safe += "-" + hashlib.sha256(rater.encode()).hexdigest()[:8]
    return safe + ".jsonl"


def write_evidence(j: Judgments, report: dict[str, Any], out: str | Path) -> dict[str, Any]:
    """Write ``<out>/<rater>.jsonl`` for every flagged rater and ``<out>/index.json``; return the index."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _, _, cons = agreement_consensus(j)  # the consensus the agreement rule measured against
    index_of = {name: i for i, name in enumerate(j.raters)}
    prater = j.p_rater
    gold = j.unit_gold[j.p_unit]
    index: dict[str, Any] = {"raters": []}
    for r in report["raters"]:
        if not r.get("flagged"):
            continue
        ridx = index_of[r["rater"]]
        codes = [e["code"] for e in r.get("evidence", [])]
        rows = np.flatnonzero(prater == ridx)
        path = out / _file_name(str(r["rater"]))
        with path.open("w", encoding="utf-8") as fh:
            for p in rows:
                jdx = int(j.p_judgment[p])
                g = int(j.p_group[p])
                a, b = int(j.p_a[p]), int(j.p_b[p])
                has_gold = gold[p] != NO_GOLD
                counts = []
                if "low_agreement" in codes and cons[p] != 2:
                    counts.append("low_agreement")
                if "low_gold_accuracy" in codes and has_gold:
                    counts.append("low_gold_accuracy")
                if "position_bias" in codes and j.p_lead[p] and j.p_first[p] >= 0:
                    counts.append("position_bias")
                if "low_reliability" in codes:
                    counts.append("low_reliability")
                if "too_fast" in codes and not np.isnan(j.j_time[jdx]):
                    counts.append("too_fast")
                verdict = int(j.p_outcome[p])
                line = {
                    "rater": r["rater"],
                    "comparison": j.group_keys[g],
                    "source_row": int(j.j_row[jdx]),
                    "response_a": j.group_responses[g][a][:MAX_TEXT],
                    "response_b": j.group_responses[g][b][:MAX_TEXT],
                    "shown_first": "a" if bool(j.p_a_first[p]) else "b",
                    "verdict": _VERDICT[verdict],
                    "consensus": _VERDICT[int(cons[p])],
                    "agrees": None if cons[p] == 2 else bool(verdict == cons[p]),
                    "gold": _VERDICT[int(gold[p])] if has_gold else None,
                    "time_s": None if np.isnan(j.j_time[jdx]) else float(j.j_time[jdx]),
                    "counts_toward": counts,
                }
                fh.write(json.dumps(line, ensure_ascii=False) + "\n")
        index["raters"].append(
            {"rater": r["rater"], "file": path.name, "pairs": int(len(rows)), "flags": r.get("evidence", [])}
        )
    (out / "index.json").write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return index
