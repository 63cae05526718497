"""Rater aggregation against the simulator's truth and on real multi-rater data: ours (ds3) vs crowd-kit.

    .venv/bin/python scripts/bench_aggregate.py                      # 6 campaigns x 5 seeds + PandaLM
    .venv/bin/python scripts/bench_aggregate.py --seeds 1,2 --campaigns issue,position
    .venv/bin/python scripts/bench_aggregate.py --tune               # the grid on the tuning seeds only
    .venv/bin/python scripts/bench_aggregate.py --pandalm PATH       # your copy of pandalm-testset-v1.json.gz
    .venv/bin/python scripts/bench_aggregate.py --sparse sparse,sparse-bad,pandalm-sparse,issue --seeds 1,2,3 \
        --json sparse3.json                                          # flags by workload, predictive measure
    .venv/bin/python scripts/bench_aggregate.py --from-json sparse3.json   # reprint those tables

Simulated campaigns (``rewardlab simulate``'s rater pool: careful, noisy, random, position-biased,
adversarial and too-fast raters, responses shown in a shuffled order) differ in rater mix, overlap (3, 5)
and gold share (0, 5%). Reported seeds are 1..5; ``--tune`` searches ds3's flagged-rater threshold, prior strength and temperature
on seeds 101..105 of the same campaigns, which the report never uses (never tune on what you report).

Methods, all on the same judgments of each campaign: ``ours`` is ``rewardlab raters aggregate``'s default
path (rater report, exclusion of flagged raters, ds3); ``ours-vote`` the same with ``ds3.soft_label: vote``
(same calls, the new-rater vote distribution as soft label); ``ours-all`` is ds3 on every judgment;
``rl-noisy-bt`` is our Bradley-Terry with rater skill and position bias (the BT-family candidate);
crowd-kit 1.4.2's DawidSkene, GLAD, MACE and MajorityVote with each implied pair as a task and
{a above, tie, b above} as labels, and its NoisyBradleyTerry on the decided pairs (it drops ties).
``ck-NoisyBT`` is crowd-kit's own ``fit``, whose rater gradient is wrong in 1.4.2 (rewardlab.raters.noisy_bt):
it is kept as the peer a user of crowd-kit would get, not as the NoisyBT model at its best; that is
``rl-noisy-bt`` (the same likelihood, a correct gradient, ties as half wins).

Metrics per implied pair, against the true utilities (ties: |true gap| <= the simulator's tie epsilon):
- ``order``: accuracy on pairs with a clear true order (gap > epsilon); a tie call scores 1/2;
- ``order_all``: the same on every pair (near-ties too: each has a true order by a hair of utility);
- ``tie``: accuracy of the tie / not-tie call on every pair (are ties told apart from disagreement?);
- ``brier`` and ``ece`` of p = P(a above) + P(tie)/2 against "a truly better" (10 equal-width bins of
  max(p, 1 - p), the top-label ECE);
- ``coverage``: share of judged pairs the method gives an estimate for. Every metric is over all judged
  pairs; a pair without an estimate (all its raters excluded) scores as a coin flip, p = 1/2.
PandaLM (999 pairs, 3 annotators each, no truth): agreement, Krippendorff's alpha and leave-one-annotator-
out accuracy: aggregate two annotators, predict the third's verdict (3-way, and on its decided pairs).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# ../shared/realdata beside the repo (a git worktree sits one level deeper).
PANDALM = next(
    (
        d / "pandalm-testset-v1.json.gz"
        for d in (ROOT / ".." / "shared" / "realdata", ROOT / ".." / ".." / "shared" / "realdata")
        if (d / "pandalm-testset-v1.json.gz").is_file()
    ),
    ROOT / ".." / "shared" / "realdata" / "pandalm-testset-v1.json.gz",
)
REPORT_SEEDS = [1, 2, 3, 4, 5]
TUNE_SEEDS = [101, 102, 103, 104, 105]

# name -> simulate config overrides (300 prompts each; 25 raters unless said).
CAMPAIGNS: dict[str, dict[str, Any]] = {
    # the setting: 15 careful, 5 random clickers, 3 position-biased, 2 adversarial; a few gold
    "issue": {"raters": 25, "overlap": 3, "gold_rate": 0.05,
              "mix": {"careful": 15, "noisy": 0, "random": 5, "position_biased": 3, "adversarial": 2, "too_fast": 0}},
    "careful": {"raters": 25, "overlap": 3, "gold_rate": 0.0,
                "mix": {"careful": 0.6, "noisy": 0.3, "random": 0.1, "position_biased": 0, "adversarial": 0, "too_fast": 0}},
    "position": {"raters": 25, "overlap": 3, "gold_rate": 0.0,
                 "mix": {"careful": 0.4, "noisy": 0.2, "random": 0, "position_biased": 0.4, "adversarial": 0, "too_fast": 0}},
    "random5": {"raters": 25, "overlap": 5, "gold_rate": 0.0,
                "mix": {"careful": 0.4, "noisy": 0.2, "random": 0.4, "position_biased": 0, "adversarial": 0, "too_fast": 0}},
    "adversarial5": {"raters": 25, "overlap": 5, "gold_rate": 0.05,
                     "mix": {"careful": 0.5, "noisy": 0.1, "random": 0.1, "position_biased": 0.1, "adversarial": 0.2, "too_fast": 0}},
    "kwise": {"raters": 25, "overlap": 3, "gold_rate": 0.05, "k_mix": {2: 0.5, 3: 0.3, 4: 0.2},
              "mix": {"careful": 0.5, "noisy": 0.1, "random": 0.2, "position_biased": 0.1, "adversarial": 0.0, "too_fast": 0.1}},
}  # fmt: skip
CROWDKIT = ["ck-DawidSkene", "ck-GLAD", "ck-MACE", "ck-NoisyBT", "ck-MajorityVote"]
# crowd-kit's DawidSkene on the judgments `ours` keeps (flagged raters excluded): what ds3 adds beyond the
# exclusion step. Not counted as a crowd-kit baseline (the exclusion is ours).
EXTRA = ["ck-DawidSkene+excl"]
OURS = ["ours", "ours-all", "rl-noisy-bt"]


# ---------------------------------------------------------------- data


def campaign(name: str, seed: int, prompts: int) -> tuple[Any, np.ndarray, float]:
    """(Judgments, true gap per unit (u_a - u_b), tie epsilon) of one simulated campaign."""
    from rewardlab.config import SimulateConfig
    from rewardlab.data.simulate import simulate_campaign
    from rewardlab.raters.table import from_records

    cfg = SimulateConfig(**{"seed": seed, "prompts": prompts, **CAMPAIGNS[name]})
    records, truth = simulate_campaign(cfg)
    j = from_records(records)
    return j, true_gap(j, truth), float(truth["tie_epsilon"])


def true_gap(j, truth: dict) -> np.ndarray:
    """[units] the simulator's true utility gap u_a - u_b of every implied pair."""
    from rewardlab.raters import aggregate

    group, a, b = aggregate.unit_layout(j)
    gap = np.zeros(j.n_units)
    for u, (g, ia, ib) in enumerate(zip(group.tolist(), a.tolist(), b.tolist())):
        util = truth["utilities"][j.group_keys[g]]
        resp = j.group_responses[g]
        gap[u] = util[resp[ia]] - util[resp[ib]]
    return gap


# ---------------------------------------------------------------- methods


def _df(j, keep):
    import pandas as pd

    return pd.DataFrame(
        {"task": j.p_unit[keep], "worker": j.p_rater[keep], "label": j.p_outcome[keep].astype(int)}
    )


def _from_probas(j, probas) -> np.ndarray:
    """[units, 3] (a above, tie, b above) from a crowd-kit probas_ frame (labels 1, 0, -1); nan unjudged."""
    post = np.full((j.n_units, 3), np.nan)
    idx = probas.index.to_numpy().astype(np.int64)
    post[idx] = 0.0
    for col, label in enumerate((1, 0, -1)):
        if label in probas.columns:
            post[idx, col] = probas[label].to_numpy(dtype=float)
    return post


def flagged_keep(j, cfg) -> np.ndarray:
    """Per judgment: not by a rater `raters aggregate` excludes by default (flagged, unless ds3 keeps it)."""
    from rewardlab.raters import aggregate, quality

    report = quality.build_report(j, cfg)
    excluded = aggregate.excluded_raters(j, report, cfg, "ds3")
    return ~np.isin(j.j_rater, [i for i, r in enumerate(j.raters) if r in excluded])


def run_method(name: str, j, keep_j: np.ndarray, cfg, unflagged=None) -> tuple[np.ndarray, np.ndarray]:
    """(p per unit = P(a above) + P(tie)/2, called outcome per unit: +1/0/-1) of one method.
    ``unflagged``: a precomputed ``flagged_keep`` for ``ours``."""
    from rewardlab.raters import aggregate, quality

    keep = keep_j[j.p_judgment]
    if name == "ours-vote":  # the default path with ds3.soft_label: vote (same calls, other soft labels)
        name, cfg = "ours", cfg.model_copy(update={"ds3": cfg.ds3.model_copy(update={"soft_label": "vote"})})
    if name in ("ours", "ours-all", "rl-noisy-bt"):
        if name == "ours":
            keep_j = keep_j & (flagged_keep(j, cfg) if unflagged is None else unflagged)
        method = "noisy-bt" if name == "rl-noisy-bt" else "ds3"
        cons = aggregate.consensus(j, method, keep_j, cfg)
        return cons.unit_p, aggregate.unit_calls(j, cons).astype(np.int64)
    import crowdkit.aggregation as ck

    if name.endswith("+excl"):
        name = name[: -len("+excl")]
        keep = keep & (flagged_keep(j, cfg) if unflagged is None else unflagged)[j.p_judgment]
    df = _df(j, keep)
    with quality.quiet_crowdkit(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "ck-NoisyBT":
            return _ck_noisy_bt(j, keep)
        model = {
            "ck-DawidSkene": lambda: ck.DawidSkene(n_iter=100),
            "ck-GLAD": lambda: ck.GLAD(n_iter=50),
            "ck-MACE": lambda: ck.MACE(n_restarts=3, n_iter=50),
            "ck-MajorityVote": lambda: ck.MajorityVote(),
        }[name]()
        model.fit(df) if name != "ck-MajorityVote" else model.fit_predict_proba(df)
        probas = model.probas_
    post = _from_probas(j, probas)
    p = post[:, 0] + 0.5 * post[:, 1]
    called = np.array([1, 0, -1])[np.argmax(np.nan_to_num(post, nan=0.0), axis=1)]
    return p, called


def _ck_noisy_bt(j, keep) -> tuple[np.ndarray, np.ndarray]:
    """crowd-kit NoisyBradleyTerry on the decided pair rows (it has no ties), items (group, index).

    Its ``fit`` is crowd-kit 1.4.2's, with the wrong rater gradient noisy_bt.py describes: this row measures
    crowd-kit as shipped, not the model (``rl-noisy-bt`` fits the same likelihood correctly)."""
    import pandas as pd
    from crowdkit.aggregation import NoisyBradleyTerry
    from scipy.special import expit

    decided = keep & (j.p_outcome != 0)
    g = j.p_group[decided]
    a, b = j.p_a[decided].astype(int), j.p_b[decided].astype(int)
    left = [(int(x), int(y)) for x, y in zip(g, a)]
    right = [(int(x), int(y)) for x, y in zip(g, b)]
    win = np.where(j.p_outcome[decided] == 1, 0, 1)
    label = [left[n] if w == 0 else right[n] for n, w in enumerate(win)]
    df = pd.DataFrame({"worker": j.p_rater[decided], "left": left, "right": right, "label": label})
    scores = NoisyBradleyTerry(n_iter=100).fit(df).scores_
    from rewardlab.raters.aggregate import unit_layout

    group, ua, ub = unit_layout(j)
    s_a = np.array([scores.get((int(x), int(y)), 0.0) for x, y in zip(group, ua)])
    s_b = np.array([scores.get((int(x), int(y)), 0.0) for x, y in zip(group, ub)])
    p = expit(s_a - s_b)
    voted = np.bincount(j.p_unit[keep], minlength=j.n_units) > 0
    p[~voted] = np.nan
    return p, np.where(p >= 0.5, 1, -1)


# ---------------------------------------------------------------- metrics


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Top-label expected calibration error of binary probabilities ``p`` for outcomes ``y`` (0/1)."""
    conf = np.maximum(p, 1 - p)
    right = np.where(p == 0.5, 0.5, ((p > 0.5) == (y == 1)).astype(float))
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            total += m.sum() * abs(conf[m].mean() - right[m].mean())
    return float(total / len(p))


def metrics(
    p: np.ndarray, called: np.ndarray, gap: np.ndarray, eps: float, judged: np.ndarray | None = None
) -> dict[str, float]:
    """Scores over ``judged`` (units with at least one judgment, whoever made it); default: where p is known.

    Every method is scored on the same units: one that gives no estimate for a judged unit (``ours`` drops
    a comparison whose raters were all excluded) is scored there as a coin flip (p = 1/2, a tie call), not
    left out. Leaving it out scored ``ours`` on fewer, easier units than crowd-kit (units judged only by
    excluded raters are the hard ones): measured on the tuning seeds, that inflated ours by 1.1 points on
    average (issue +2.5, position +2.5, kwise +1.4).
    """
    judged = ~np.isnan(p) if judged is None else judged
    p, called, gap = p[judged], called[judged].copy(), gap[judged]
    missing = np.isnan(p)
    coverage = 1.0 - float(missing.mean()) if len(p) else float("nan")
    p = np.where(missing, 0.5, p)
    called[missing] = 0
    clear = np.abs(gap) > eps
    order = np.where(called[clear] == 0, 0.5, (called[clear] == np.sign(gap[clear])).astype(float))
    true_tie = ~clear
    y = (gap > 0).astype(float)
    every = np.where(called == 0, 0.5, (called == np.sign(gap)).astype(float))
    return {
        "order": float(order.mean()),
        "order_all": float(every.mean()),
        "tie": float(((called == 0) == true_tie).mean()),
        "brier": float(np.mean((p - y) ** 2)),
        "ece": ece(p, y),
        "coverage": coverage,
    }


# ---------------------------------------------------------------- runs


def run_campaigns(names, seeds, methods, prompts, cfg, log) -> dict:
    """{campaign: {method: [metrics per seed]}}."""
    out: dict[str, dict[str, list]] = {}
    for name in names:
        out[name] = {m: [] for m in methods}
        for seed in seeds:
            start = time.perf_counter()
            j, gap, eps = campaign(name, seed, prompts)
            everyone = np.ones(len(j.j_row), dtype=bool)
            judged = np.bincount(j.p_unit, minlength=j.n_units) > 0
            unflagged = (
                flagged_keep(j, cfg) if any(m == "ours" or m.endswith("+excl") for m in methods) else None
            )
            for m in methods:
                p, called = run_method(m, j, everyone, cfg, unflagged)
                out[name][m].append(metrics(p, called, gap, eps, judged))
            log(f"{name} seed {seed}: {len(j.j_row)} judgments, {time.perf_counter() - start:.1f} s")
    return out


def mean_se(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return float(v.mean()), se


def print_campaigns(res: dict, methods: list[str]) -> dict:
    """The table (mean +- SE over seeds) and, per campaign, ours minus crowd-kit's best (paired)."""
    summary = {}
    keys = ("order", "order_all", "tie", "brier", "ece", "coverage")
    head = ["order acc", "order acc all", "tie acc", "Brier", "ECE", "coverage"]
    print(f"\n{'campaign':<13} {'method':<16} " + " ".join(f"{h:>14}" for h in head))
    print("-" * 120)
    for name, by_method in res.items():
        for m in methods:
            cells = []
            for key in keys:
                mu, se = mean_se([r[key] for r in by_method[m]])
                cells.append(f"{mu:.3f} +- {se:.3f}")
            print(f"{name:<13} {m:<16} " + " ".join(f"{c:>14}" for c in cells))
        ck = [m for m in methods if m.startswith("ck-") and not m.endswith("+excl")]
        if "ours" in by_method and ck:
            best = max(ck, key=lambda m: np.mean([r["order"] for r in by_method[m]]))
            diff = [o["order"] - b["order"] for o, b in zip(by_method["ours"], by_method[best])]
            mu, se = mean_se(diff)
            summary[name] = {"best_crowdkit": best, "diff": mu, "se": se}
            print(f"{name:<13} {'ours - ' + best:<30} {mu:+.3f} +- {se:.3f} (paired over seeds)")
        print()
    if summary:
        avg = np.mean([s["diff"] for s in summary.values()])
        worst = min(summary.values(), key=lambda s: s["diff"])
        print(
            f"ours - crowd-kit's best, mean over campaigns: {avg:+.3f}; worst campaign: {worst['diff']:+.3f}"
        )
    return summary


def tune(names, prompts, log) -> None:
    """Grid over ds3's flagged-rater threshold (keep_flagged_min_bits), prior strength, temperature and
    tie_min on the tuning seeds (mean over campaigns; every judged pair scored, as in the report)."""
    from rewardlab.config import RatersConfig
    from rewardlab.raters import aggregate, quality

    data = {}
    for n in names:
        for s in TUNE_SEEDS:
            j, gap, eps = campaign(n, s, prompts)
            data[(n, s)] = (j, gap, eps, quality.build_report(j, RatersConfig()))
    log(f"tuning on {len(data)} campaigns (seeds {TUNE_SEEDS})")
    print(
        f"{'min_bits':>8} {'strength':>8} {'temp':>5} {'tie_min':>7} | {'order':>6} {'all':>6} {'tie':>6} {'brier':>6} {'ece':>6} {'max ece':>7}"
    )
    for bits in (None, 0.05, 0.12, 0.2):
        for strength in (2.0, 4.0, 8.0):
            for temp in (0.6, 0.7, 0.85):
                for tie_min in (0.35, 0.5):
                    ds3 = {"prior_strength": strength, "temperature": temp, "tie_min": tie_min,
                           "keep_flagged_min_bits": bits}  # fmt: skip
                    cfg = RatersConfig(ds3=ds3)
                    rows = []
                    for j, gap, eps, report in data.values():
                        excluded = aggregate.excluded_raters(j, report, cfg, "ds3")
                        keep = ~np.isin(j.j_rater, [i for i, r in enumerate(j.raters) if r in excluded])
                        everyone = np.ones(len(j.j_row), dtype=bool)
                        p, called = run_method("ours", j, everyone, cfg, keep)
                        judged = np.bincount(j.p_unit, minlength=j.n_units) > 0
                        rows.append(metrics(p, called, gap, eps, judged))
                    m = {k: np.mean([r[k] for r in rows]) for k in rows[0]}
                    worst = max(r["ece"] for r in rows)
                    print(f"{bits!s:>8} {strength:>8} {temp:>5} {tie_min:>7} | {m['order']:.4f} {m['order_all']:.4f} "
                          f"{m['tie']:.4f} {m['brier']:.4f} {m['ece']:.4f} {worst:.4f}", flush=True)  # fmt: skip


# ---------------------------------------------------------------- PandaLM


def pandalm_judgments(path: Path):
    """Import the PandaLM test set through the wide-export importer (preset ``wide:pandalm``)."""
    from rewardlab.data import importing
    from rewardlab.data.dataset import load_dataset
    from rewardlab.raters.table import from_dataset

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "pandalm.json"
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            raw.write_text(fh.read(), encoding="utf-8")
        report = importing.import_paths([raw], Path(tmp) / "ds", fmt="wide:pandalm")
        j = from_dataset(Path(tmp) / "ds")
        n = len(load_dataset(Path(tmp) / "ds"))
    return j, report, n


def run_pandalm(path: Path, methods: list[str], cfg, log) -> None:
    from rewardlab.raters import quality

    j, report, n = pandalm_judgments(path)
    counts = quality.unit_counts(j)
    agreement, _ = quality.percent_agreement(counts)
    alpha = quality.krippendorff_alpha(counts, "nominal")
    alpha_o = quality.krippendorff_alpha(counts, "ordinal")
    log(f"PandaLM: {n} records imported ({report.to_json()['quarantined']} quarantined), {j.n_groups} pairs")
    print(
        f"\nPandaLM ({j.n_groups} pairs x {len(j.raters)} annotators): agreement {agreement:.3f}, "
        f"Krippendorff alpha nominal {alpha:.3f}, ordinal {alpha_o:.3f}"
    )
    print(f"{'method':<16} {'LOO 3-way acc':>16} {'LOO acc decided':>16} {'called ties':>12}")
    for m in [m for m in methods if m != "ours-all" and not m.endswith("+excl")]:
        acc3, acc2, ties = [], [], []
        for held in range(len(j.raters)):
            keep_j = j.j_rater != held
            p, called = run_method(m if m != "ours" else "ours-all", j, keep_j, cfg)
            rows = j.p_rater == held
            truth = j.p_outcome[rows].astype(int)
            pred = called[j.p_unit[rows]]
            acc3.append(float((pred == truth).mean()))
            dec = truth != 0
            acc2.append(float(np.where(pred[dec] == 0, 0.5, pred[dec] == truth[dec]).mean()))
            ties.append(float((called == 0).mean()))
        print(
            f"{m:<16} {np.mean(acc3):>8.3f} +- {np.std(acc3, ddof=1) / math.sqrt(3):.3f} "
            f"{np.mean(acc2):>8.3f} +- {np.std(acc2, ddof=1) / math.sqrt(3):.3f} {np.mean(ties):>12.3f}"
        )
    print("(+- over the 3 held-out annotators; 'ours' runs ds3 on the two kept annotators, no exclusion)")


# ---------------------------------------------------------------- sparse data: predictive measure, flags

# ds3 = ds3 with the posterior as soft label (soft_label: posterior); ds3-vote = the same fit with the
# new-rater vote distribution as soft label (soft_label: vote); ds3-eb = ds3 with fit_prior_strength
PRED_METHODS = ["ds3", "ds3-vote", "ds3-eb", "majority+half", "ck-DawidSkene", "ck-GLAD", "ck-MajorityVote"]
_FITS: dict[tuple, Any] = {}  # the last ds3 fit, shared by ds3 and ds3-vote (same judgments, same options)
FLOOR = 1e-6  # probabilities are floored here (and renormalised) before the log loss: crowd-kit gives exact 0
WORKLOAD_BUCKETS = [(1, 9), (10, 29), (30, 99), (100, 299), (300, 10**9)]


def _floor(q: np.ndarray) -> np.ndarray:
    q = np.maximum(np.nan_to_num(q, nan=1 / 3), FLOOR)
    return q / q.sum(axis=1, keepdims=True)


def _fit_predict(name: str, j, keep_j: np.ndarray, held: np.ndarray, cfg) -> tuple[np.ndarray, np.ndarray]:
    """(form a, form b) predictions [held rows, 3] (canonical a above / tie / b above) of the held pair rows.

    Form a: the method's soft label of the unit, as the prediction of any rater's vote. Form b: the method
    predicting through its own model of the held-out rater (ds3: tempered posterior times that rater's
    display-side confusion; crowd-kit DawidSkene: posterior times its errors_ row); methods without a rater
    model (majority, GLAD's probas, MajorityVote) predict the same in both forms."""
    from rewardlab.raters import ds3 as ds3lib
    from rewardlab.raters import quality

    keep = keep_j[j.p_judgment]
    unit = j.p_unit[held]
    if name in ("ds3", "ds3-eb", "ds3-vote"):
        opts = cfg.ds3
        key = (id(j), hash(keep.tobytes()), name == "ds3-eb")
        if key not in _FITS:  # ds3 and ds3-vote share one fit: the same model, two soft labels
            _FITS.clear()
            _FITS[key] = ds3lib.fit(j, keep, prior_strength=opts.prior_strength,
                                    position_strength=opts.position_strength, temperature=opts.temperature,
                                    use_gold=opts.use_gold, max_iter=opts.max_iter,
                                    fit_strength=name == "ds3-eb")  # fmt: skip
        fit = _FITS[key]
        post = fit.posterior[unit]
        # form a: ds3-vote's soft label is the new-rater vote distribution (ds3.soft_label: vote)
        a = _floor(fit.vote_label()[unit] if name == "ds3-vote" else post)
        a_first = j.p_a_first[held]
        disp = np.where(a_first[:, None], post, post[:, ::-1])
        conf = fit.confusion[j.p_rater[held]]  # [rows, true display, observed display]
        q_disp = np.einsum("nc,nco->no", np.nan_to_num(disp, nan=1 / 3), conf)
        b = np.where(a_first[:, None], q_disp, q_disp[:, ::-1])
        return a, _floor(b)
    if name == "majority+half":
        counts = quality.unit_counts(j, keep).astype(float) + 0.5
        q = counts[unit] / counts[unit].sum(axis=1, keepdims=True)
        return _floor(q), _floor(q)
    import crowdkit.aggregation as ck

    df = _df(j, keep)
    with quality.quiet_crowdkit(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = {"ck-DawidSkene": lambda: ck.DawidSkene(n_iter=100), "ck-GLAD": lambda: ck.GLAD(n_iter=100),
                 "ck-MajorityVote": lambda: ck.MajorityVote()}[name]()  # fmt: skip
        model.fit(df) if name != "ck-MajorityVote" else model.fit_predict_proba(df)
    post = _from_probas(j, model.probas_)[unit]
    a = _floor(post)
    if name != "ck-DawidSkene":
        return a, a
    errors = model.errors_  # index (worker, observed label), columns true label: P(observed | true)
    labels = (1, 0, -1)
    b = a.copy()
    rater = j.p_rater[held]
    known = set(errors.index.get_level_values(0).tolist())
    for n in range(len(unit)):
        w = int(rater[n])
        if w not in known:
            continue
        q = np.zeros(3)
        for o, obs in enumerate(labels):
            if (w, obs) not in errors.index:
                continue
            row = errors.loc[(w, obs)]
            q[o] = sum(np.nan_to_num(post[n, t]) * float(row.get(lab, 0.0)) for t, lab in enumerate(labels))
        if q.sum() > 0:
            b[n] = q / q.sum()
    return a, _floor(b)


def predictive(j, methods: list[str], cfg, seed: int, folds: int = 5) -> dict[str, dict[str, np.ndarray]]:
    """Leave-votes-out: the judgments of pair comparisons judged more than once go to ``folds`` folds; each
    fold is held out in turn, the rest aggregated, and every held-out vote predicted. Returns per method and
    form ('a', 'b') the per-vote log loss and, on decided votes, per-vote accuracy (a tie call scores 1/2)."""
    k2 = j.group_k[j.j_group] == 2
    per_group = np.bincount(j.j_group, minlength=j.n_groups)
    cand = np.flatnonzero(k2 & (per_group[j.j_group] >= 2))
    rng = np.random.default_rng([seed, 28])
    fold = np.empty(len(j.j_row), dtype=np.int64)
    fold[:] = -1
    fold[cand] = rng.permutation(len(cand)) % folds
    row_fold = fold[j.p_judgment]
    y = (1 - j.p_outcome).astype(np.int64)
    out: dict[str, dict[str, list]] = {m: {"ll_a": [], "ll_b": [], "acc_a": [], "acc_b": []} for m in methods}
    for f in range(folds):
        held = np.flatnonzero(row_fold == f)
        keep_j = fold != f
        for m in methods:
            a, b = _fit_predict(m, j, keep_j, held, cfg)
            for form, q in (("a", a), ("b", b)):
                yy = y[held]
                out[m][f"ll_{form}"].append(-np.log(q[np.arange(len(held)), yy]))
                dec = yy != 1
                pa, pb = q[dec, 0], q[dec, 2]
                call = np.where(pa > pb, 0, np.where(pb > pa, 2, 1))
                out[m][f"acc_{form}"].append(np.where(call == 1, 0.5, call == yy[dec]).astype(float))
    return {m: {k: np.concatenate(v) for k, v in d.items()} for m, d in out.items()}


def truth_order(j, gap: np.ndarray, eps: float, methods: list[str], cfg) -> dict[str, float]:
    """Per method, fitted on every judgment: accuracy of its order call (P(a above) vs P(b above) of its soft
    label) against the simulator's true utilities, on the judged pairs with a clear true order (a tie call
    scores 1/2). Why beside the held-out-vote measure: form (a) scores a label against raters' votes, so on
    a campaign where most votes come from adversaries it rewards a model that has read the adversaries as
    right (measured: crowd-kit's DawidSkene on `sparse-bad` seed 3)."""
    first = np.unique(j.p_unit, return_index=True)[1]  # one pair row per judged unit
    units = j.p_unit[first]
    clear = np.abs(gap[units]) > eps
    truth = np.sign(gap[units])
    out = {}
    for m in methods:
        a, _ = _fit_predict(m, j, np.ones(len(j.j_row), dtype=bool), first, cfg)
        call = np.sign(a[:, 0] - a[:, 2])
        out[m] = float(np.where(call == 0, 0.5, call == truth)[clear].mean())
    return out


def flag_rates(j, profiles: dict[str, str], cfg) -> list[dict[str, Any]]:
    """One row per rater: profile, workload (judgments), flagged (with the evidence rule)."""
    from rewardlab.raters import quality

    rep = quality.build_report(j, cfg)
    return [
        {"profile": profiles.get(r["rater"], "none"), "items": r["items"], "flagged": r["flagged"]}
        for r in rep["raters"]
        if r["rater"] is not None
    ]


# sparse-bad: the sparse campaign with twice the prompts (so twice each rater's workload) and 40% bad raters
# (20% random clickers, 20% adversaries): enough bad raters per workload bucket to measure their recall.
SPARSE_BAD = ["prompts=3000", "mix.careful=0.6", "mix.random=0.2", "mix.adversarial=0.2"]


def sparse_sim(seed: int, prompts: int, overrides: list[str] | None = None):
    """(Judgments, rater -> profile, (true gap per unit, tie epsilon)) of a sparse simulated campaign
    (configs/simulate/sparse.yaml)."""
    from rewardlab import config as cfglib
    from rewardlab.data.simulate import simulate_campaign
    from rewardlab.raters.table import from_records

    cfg = cfglib.load(str(ROOT / "configs/simulate/sparse.yaml"),
                      [f"seed={seed}", f"prompts={prompts}", *(overrides or [])], stage="simulate")  # fmt: skip
    records, truth = simulate_campaign(cfg)
    j = from_records(records)
    return (
        j,
        {r: p["profile"] for r, p in truth["raters"].items()},
        (true_gap(j, truth), truth["tie_epsilon"]),
    )


def dense_sim(name: str, seed: int, prompts: int):
    """Today's simulated campaign ``name`` of CAMPAIGNS (overlap 3-5): (Judgments, rater -> profile, (true
    gap per unit, tie epsilon))."""
    from rewardlab.config import SimulateConfig
    from rewardlab.data.simulate import simulate_campaign
    from rewardlab.raters.table import from_records

    cfg = SimulateConfig(**{"seed": seed, "prompts": prompts, **CAMPAIGNS[name]})
    records, truth = simulate_campaign(cfg)
    j = from_records(records)
    return (
        j,
        {r: p["profile"] for r, p in truth["raters"].items()},
        (true_gap(j, truth), truth["tie_epsilon"]),
    )


def pandalm_sparse(path: Path, seed: int, pseudo: int = 20, bad_share: float = 0.1, overlap: float = 0.1):
    """PandaLM subsampled to sparse overlap: each comparison keeps all 3 annotators' verdicts with chance
    ``overlap``, else one at random; each annotator's kept verdicts are dealt to ``pseudo`` pseudo-raters with
    lognormal (sigma 1.3) workloads, so the pool looks like a platform's (a few heavy raters, many light).
    A ``bad_share`` of the pseudo-raters is then corrupted, half into random clickers (a fair coin between
    the two answers) and half into adversaries (every verdict inverted); the rest are the real experts
    ('careful'). Returns (Judgments, pseudo-rater -> profile)."""
    from rewardlab.raters.table import from_records

    records, profiles = sparse_records(pandalm_records(path), seed, pseudo, bad_share, overlap)
    return from_records(records), profiles


def pandalm_records(path: Path) -> list[dict]:
    """The PandaLM test set's judgment records (3 annotators per comparison), imported with ``wide:pandalm``."""
    from rewardlab.data import importing
    from rewardlab.data.dataset import iter_records, load_dataset

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "pandalm.json"
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            raw.write_text(fh.read(), encoding="utf-8")
        importing.import_paths([raw], Path(tmp) / "ds", fmt="wide:pandalm")
        return list(iter_records(load_dataset(Path(tmp) / "ds")))


def sparse_records(
    records: list[dict], seed: int, pseudo: int = 20, bad_share: float = 0.1, overlap: float = 0.1
) -> tuple[list[dict], dict[str, str]]:
    """(records, pseudo-rater -> profile): ``pandalm_sparse``'s subsampling of any 3-annotator records."""
    from rewardlab.data.schema import group_key

    rng = np.random.default_rng([seed, 2828])
    by_group: dict[str, list[dict]] = {}
    for r in records:
        if not r.get("gold"):
            by_group.setdefault(group_key(r["prompt"], r["responses"]), []).append(r)
    kept = []
    for recs in by_group.values():
        kept += recs if rng.random() < overlap else [recs[int(rng.integers(len(recs)))]]
    annotators = sorted({str(r["rater"]) for r in kept})
    weights = {a: np.exp(rng.normal(0, 1.3, size=pseudo)) for a in annotators}
    names = [f"{a}-p{i:02d}" for a in annotators for i in range(pseudo)]
    bad = rng.permutation(len(names))[: int(round(bad_share * len(names)))]
    profiles = {n: "careful" for n in names}
    for i, b in enumerate(bad):
        profiles[names[b]] = "random" if i % 2 == 0 else "adversarial"
    out = []
    for r in kept:
        a = str(r["rater"])
        w = weights[a] / weights[a].sum()
        name = f"{a}-p{int(rng.choice(pseudo, p=w)):02d}"
        r = {**r, "rater": name}
        if profiles[name] == "random":
            r["ranks"] = [1, 2] if rng.random() < 0.5 else [2, 1]
        elif profiles[name] == "adversarial" and r["ranks"][0] != r["ranks"][1]:
            r["ranks"] = list(reversed(r["ranks"]))
        out.append(r)
    return out, profiles


def bucket_table(rows: list[dict[str, Any]], profiles: tuple[str, ...]) -> dict[str, Any]:
    """Per workload bucket: raters, flagged share, per profile group."""
    out = {}
    for lo, hi in WORKLOAD_BUCKETS:
        cell = {}
        for prof in profiles:
            sel = [r for r in rows if r["profile"] in prof.split("+") and lo <= r["items"] <= hi]
            cell[prof] = (sum(r["flagged"] for r in sel), len(sel))
        out[f"{lo}-{hi if hi < 10**9 else ''}"] = cell
    return out


def run_sparse(datasets: list[str], seeds: list[int], methods: list[str], cfg, log, pandalm: Path) -> dict:
    """The sparse-data report: flags by workload and the predictive measure, per dataset over seeds."""
    res: dict[str, Any] = {}
    for ds in datasets:
        flags: list[dict] = []
        orders: list[dict] = []  # per seed: order accuracy against the simulator's truth, per method
        pred: dict[str, dict[str, list]] = {m: {} for m in methods}
        for seed in seeds:
            start = time.perf_counter()
            truth = None
            if ds == "sparse":
                j, prof, truth = sparse_sim(seed, 1500)
            elif ds == "sparse-bad":
                j, prof, truth = sparse_sim(seed, 1500, SPARSE_BAD)
            elif ds == "pandalm-sparse":
                j, prof = pandalm_sparse(pandalm, seed)
            else:
                j, prof, truth = dense_sim(ds, seed, 300)
            flags += [{**row, "seed": seed} for row in flag_rates(j, prof, cfg)]
            if truth is not None:
                orders.append({"seed": seed, **truth_order(j, *truth, methods, cfg)})
            p = predictive(j, methods, cfg, seed)
            for m in methods:
                for k, v in p[m].items():
                    pred[m].setdefault(k, []).append(v)
            log(f"{ds} seed {seed}: {len(j.j_row)} judgments, {len(j.raters)} raters, "
                f"{len(p[methods[0]]['ll_a'])} held-out votes ({time.perf_counter() - start:.0f} s)")  # fmt: skip
            res[ds] = {"flags": flags, "pred": pred, "truth_order": orders}
            print_sparse(ds, res[ds], methods, seeds[: seeds.index(seed) + 1])  # cumulative, seed by seed
            sys.stdout.flush()
    return res


def print_sparse(ds: str, r: dict[str, Any], methods: list[str], seeds: list[int]) -> None:
    table = bucket_table(r["flags"], ("careful", "random", "adversarial"))
    print(f"\n### {ds}: flags by workload (judgments per rater), seeds {seeds[0]}-{seeds[-1]} pooled")
    print("| workload | careful flagged | random flagged | adversarial flagged |")
    print("|---|---|---|---|")
    per_seed = {s: bucket_table([x for x in r["flags"] if x.get("seed") == s], ("careful", "random", "adversarial"))
                for s in seeds}  # fmt: skip
    reach: dict[str, str] = {}
    for bucket, cell in table.items():
        txt = []
        for prof in ("careful", "random", "adversarial"):
            f, n = cell[prof]
            # pooled over seeds, then the mean +- SE over the seeds whose campaign has raters in the cell
            rates = [c[bucket][prof][0] / c[bucket][prof][1] for c in per_seed.values() if c[bucket][prof][1]]
            spread = f" ({mean_se(rates)[0]:.2f} +- {mean_se(rates)[1]:.2f})" if len(rates) > 1 else ""
            txt.append(f"{f}/{n} = {f / n:.2f}{spread}" if n else "-")
            if prof != "careful" and n and f / n >= 0.9 and prof not in reach:
                reach[prof] = bucket
        print(f"| {bucket} | " + " | ".join(txt) + " |")
    for prof in ("random", "adversarial"):
        cells = [(b, c[prof]) for b, c in table.items() if c[prof][1]]
        best = max(cells, key=lambda bc: bc[1][0] / bc[1][1], default=None)
        where = f"first at {reach[prof]} judgments" if prof in reach else "in no bucket"
        if best:
            print(f"{prof}: recall >= 0.9 {where}; highest {best[1][0] / best[1][1]:.2f} at {best[0]}")
    base = "ds3"
    print(f"\n### {ds}: leave-votes-out prediction of held-out votes (5 folds; mean over seeds +- SE; "
          f"differences paired per held-out vote, pooled over seeds, +- SE)")  # fmt: skip
    print(
        "| method | log loss (a) | log loss (b) | accuracy (a) | accuracy (b) | LL(a) - ds3 | LL(b) - ds3 "
        "| acc(b) - ds3 | LL(a) - majority+half | acc(a) - majority+half |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for m in methods:
        cells = []
        for k in ("ll_a", "ll_b", "acc_a", "acc_b"):
            vals = [float(v.mean()) for v in r["pred"][m][k]]
            mu, se = mean_se(vals)
            cells.append(f"{mu:.3f} +- {se:.3f}")
        pairs = [("ll_a", base), ("ll_b", base), ("acc_b", base)]
        if "majority+half" in r["pred"]:
            pairs += [("ll_a", "majority+half"), ("acc_a", "majority+half")]
        for k, ref in pairs:
            # paired per held-out vote, pooled over seeds (the votes are the same for every method)
            d = np.concatenate([v - w for v, w in zip(r["pred"][m][k], r["pred"][ref][k])])
            cells.append(f"{d.mean():+.3f} +- {d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else 0:.3f}")
        print(f"| {m} | " + " | ".join(cells) + " |")
    orders = r.get("truth_order") or []
    if orders:
        print(
            f"\n### {ds}: order accuracy against the simulator's truth (every judgment; clear pairs; per seed)"
        )
        print("| method | mean +- SE | per seed |\n|---|---|---|")
        for m in methods:
            vals = [o[m] for o in orders]
            mu, se = mean_se(vals)
            print(f"| {m} | {mu:.4f} +- {se:.4f} | " + ", ".join(f"{v:.4f}" for v in vals) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--campaigns", default=",".join(CAMPAIGNS))
    ap.add_argument("--seeds", default=",".join(map(str, REPORT_SEEDS)))
    ap.add_argument("--methods", default=",".join(OURS + CROWDKIT + EXTRA))
    ap.add_argument("--prompts", type=int, default=300)
    ap.add_argument("--pandalm", default=str(PANDALM), help="path to pandalm-testset-v1.json.gz ('' to skip)")
    ap.add_argument("--tune", action="store_true", help="grid-search ds3 on the tuning seeds, then stop")
    ap.add_argument("--json", default=None, help="also write the per-seed results here")
    ap.add_argument("--from-json", default=None, help="reprint the tables of a saved --sparse --json file")
    ap.add_argument(
        "--sparse",
        default=None,
        help="comma list of sparse, sparse-bad, pandalm-sparse and CAMPAIGNS names: the sparse-data report (flags by "
        "workload, leave-votes-out log loss and accuracy) instead of the campaign tables",
    )
    args = ap.parse_args()
    from rewardlab.config import RatersConfig

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.from_json:  # reprint the sparse tables of a saved --sparse --json run
        saved = json.loads(Path(args.from_json).read_text())
        for ds, r in saved.items():
            pred = {m: {k: [np.asarray(v) for v in vs] for k, vs in d.items()} for m, d in r["pred"].items()}
            seeds_run = sorted({x["seed"] for x in r["flags"]})
            print_sparse(ds, {**r, "pred": pred}, list(pred), seeds_run)
        return
    names = [n for n in args.campaigns.split(",") if n]
    if args.tune:
        tune(names, args.prompts, log)
        return
    cfg = RatersConfig()
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.sparse:
        res = run_sparse(args.sparse.split(","), seeds, PRED_METHODS, cfg, log, Path(args.pandalm))
        if args.json:  # per-rater flags and per-vote losses, per seed, for other summaries
            out = {ds: {"flags": r["flags"], "truth_order": r["truth_order"],
                        "pred": {m: {k: [v.tolist() for v in vs] for k, vs in d.items()} for m, d in r["pred"].items()}}
                   for ds, r in res.items()}  # fmt: skip
            Path(args.json).write_text(json.dumps(out))
        return
    methods = [m for m in args.methods.split(",") if m]
    if set(seeds) & set(TUNE_SEEDS):
        raise SystemExit(f"seeds {sorted(set(seeds) & set(TUNE_SEEDS))} are tuning seeds: report on others")
    res = run_campaigns(names, seeds, methods, args.prompts, cfg, log)
    print_campaigns(res, methods)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    if args.pandalm and Path(args.pandalm).exists():
        run_pandalm(Path(args.pandalm), methods, cfg, log)
    elif args.pandalm:
        log(f"PandaLM skipped: {args.pandalm} not found (pass --pandalm PATH)")


if __name__ == "__main__":
    main()
