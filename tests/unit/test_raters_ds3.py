"""ds3: ties vs disagreement on hand-made votes, calibrated split votes, position bias, gold, K-wise orders."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from rewardlab.config import RatersConfig
from rewardlab.data.schema import normalize
from rewardlab.raters import aggregate, ds3, quality
from rewardlab.raters.table import from_records


def rec(responses, ranks, rater, prompt, **extra):
    return normalize({"prompt": prompt, "responses": responses, "ranks": ranks, "rater": rater, **extra})


def vote(prompt, outcome, rater, shown_first="A"):
    """One pair judgment of responses A/B: outcome 'A', 'B' or 'tie', with A or B listed first."""
    ranks_ab = {"A": [1, 2], "B": [2, 1], "tie": [1, 1]}[outcome]
    if shown_first == "A":
        return rec([f"A {prompt}", f"B {prompt}"], ranks_ab, rater, prompt)
    return rec([f"B {prompt}", f"A {prompt}"], ranks_ab[::-1], rater, prompt)


def background(n=40, seed=0):
    """Clear pairs judged by three careful raters (one occasional tie), shown in random orders, so EM can
    learn what a careful rater's confusion looks like."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        winner = "A" if rng.random() < 0.5 else "B"
        for r in ("r1", "r2", "r3"):
            said = (
                winner
                if rng.random() < 0.92
                else ("tie" if rng.random() < 0.5 else {"A": "B", "B": "A"}[winner])
            )
            out.append(vote(f"bg{i}", said, r, "A" if rng.random() < 0.5 else "B"))
    for i in range(6):  # some true ties, which careful raters call ties most of the time
        for r, said in zip(("r1", "r2", "r3"), ("tie", "tie", "A" if i % 2 else "B")):
            out.append(vote(f"tie{i}", said, r, "A" if rng.random() < 0.5 else "B"))
    return out


def merged(records, method="ds3", **cfg):
    j = from_records(records)
    config = RatersConfig(exclude="none", **cfg)
    cons = aggregate.consensus(j, method, np.ones(len(j.j_row), dtype=bool), config)
    return j, cons


def unit_of(j, prompt):
    g = next(i for i, key in enumerate(j.group_keys) if j.group_responses[i][0] == f"A {prompt}")
    return int(j.unit_offset[g]), g


@pytest.mark.parametrize(
    "votes,expect",
    [
        (("A", "B", "tie"), "uncertain"),  # disagreement: uncertain, not a tie
        (("tie", "tie", "tie"), "tie"),
        (("tie", "tie", "A"), "tie"),  # the raters' evidence says tie (leaning A)
        (("A", "A", "A"), "A"),
        (("A", "A", "B"), "A"),
    ],
)
def test_ties_are_told_apart_from_disagreement(votes, expect):
    target = [
        vote("target", v, r, "A" if n % 2 else "B") for n, (v, r) in enumerate(zip(votes, ("r1", "r2", "r3")))
    ]
    j, cons = merged(background() + target)
    u, g = unit_of(j, "target")
    p, post, ranks = cons.unit_p[u], cons.ds3_fit.raw[u], cons.group_ranks[g]
    if expect == "uncertain":
        assert ranks != [1, 1]
        assert 0.3 < p < 0.7  # near 0.5 and nowhere near 0/1
    elif expect == "tie":
        assert ranks == [1, 1] and post[1] >= 0.5
        assert 0.4 < p < 0.75
        if votes.count("A"):
            assert p > 0.5  # leans to the side the dissenter chose
    else:
        assert ranks == [1, 2] and p > 0.75


def test_a_one_one_one_split_is_not_a_hard_label():
    # crowd-kit's DawidSkene gives p = 0.000 on such a split (measured, crowd-kit 1.4.2); ds3 stays soft
    target = [vote("split", v, r) for v, r in zip(("A", "B", "tie"), ("r1", "r2", "r3"))]
    _, cons = merged(background() + target)
    j = from_records(background() + target)
    u, _ = unit_of(j, "split")
    assert 0.2 < cons.unit_p[u] < 0.8


def test_position_biased_rater_is_detected_and_discounted():
    # r4 picks the first-listed response 90% of the time; careful r1..r3 judge on merit.
    rng = np.random.default_rng(1)
    records = []
    for i in range(120):
        winner = "A" if rng.random() < 0.5 else "B"
        for r in ("r1", "r2"):
            records.append(vote(f"p{i}", winner, r, "A" if rng.random() < 0.5 else "B"))
        first = "A" if rng.random() < 0.5 else "B"
        said = first if rng.random() < 0.9 else winner
        records.append(vote(f"p{i}", said, "r4", first))
    j = from_records(records)
    fit = ds3.fit(j)
    bias = dict(zip(j.raters, fit.position_bias()))
    assert bias["r4"] > 0.5 and abs(bias["r1"]) < 0.2
    # When r4 picks the *second* response it goes against its habit: the model trusts that more than a
    # first-pick (P(r4 says second | second better) > P(r4 says first | first better) is not what we test;
    # we test that its confusion puts "says first" mass on the "second better" row).
    r4 = j.raters.index("r4")
    assert fit.confusion[r4, 2, 0] > 0.6


def test_gold_clamps_units_and_fixes_rater_estimates():
    # Two adversarial raters outvote one careful rater on every item; gold on 20% of items tells EM who is
    # right. Without gold the majority (the adversaries) wins.
    rng = np.random.default_rng(2)
    records = []
    truth = {}
    for i in range(100):
        winner = "A" if rng.random() < 0.5 else "B"
        truth[f"g{i}"] = winner
        loser = {"A": "B", "B": "A"}[winner]
        records.append(vote(f"g{i}", winner, "good", "A" if rng.random() < 0.5 else "B"))
        for r in ("bad1", "bad2"):
            records.append(vote(f"g{i}", loser if rng.random() < 0.9 else winner, r, "A"))
        if i < 20:
            records.append(normalize({"prompt": f"g{i}", "responses": [f"A g{i}", f"B g{i}"],
                                      "ranks": [1, 2] if winner == "A" else [2, 1], "gold": True}))  # fmt: skip
    j = from_records(records)

    def accuracy(use_gold):
        post = ds3.fit(j, use_gold=use_gold).posterior
        right = [
            (post[unit_of(j, p)[0], 0] > 0.5) == (w == "A") for p, w in truth.items() if int(p[1:]) >= 20
        ]
        return np.mean(right)

    with_gold, without = accuracy(True), accuracy(False)
    assert with_gold > 0.85 and without < 0.3
    post = ds3.fit(j).posterior
    u, _ = unit_of(j, "g0")
    assert post[u, 0] == (1.0 if truth["g0"] == "A" else 0.0)  # a gold unit is its reference label


def test_kwise_groups_get_one_consistent_order_with_pairwise_probabilities():
    # Intransitive votes (A>B, B>C, C>A twice each) plus a clear D at the bottom: the order must still be
    # a ranking (ranks consistent with one order), with a soft label for every pair.
    texts = ["A", "B", "C", "D"]
    records = background()
    prefs = [["A", "B", "C", "D"], ["B", "C", "A", "D"], ["C", "A", "B", "D"]]
    for n, order in enumerate(prefs * 2):
        shown = texts[n % 4 :] + texts[: n % 4]
        ranks = [order.index(t) + 1 for t in shown]
        records.append(rec(shown, ranks, f"r{n % 3 + 1}", "kwise"))
    j, cons = merged(records)
    g = next(i for i, r in enumerate(j.group_responses) if r == texts)
    ranks = cons.group_ranks[g]
    assert ranks[3] == max(ranks) and sorted(set(ranks)) == list(range(1, len(set(ranks)) + 1))
    base = int(j.unit_offset[g])
    p = {pair: cons.unit_p[base + n] for n, pair in enumerate(combinations(range(4), 2))}
    assert all(p[(i, 3)] > 0.8 for i in range(3))  # D is last by every vote
    # A cycle cannot be one order: the order keeps two of its three pairs and breaks the third.
    against = [
        pair for pair in [(0, 1), (1, 2), (0, 2)] if (ranks[pair[0]] < ranks[pair[1]]) != (p[pair] > 0.5)
    ]
    assert len(against) == 1


def test_best_orders_is_the_maximum_likelihood_order():
    # Three items; pair posteriors favour B > A strongly, A > C and B > C: the order is B, A, C.
    post = np.array([[[0.1, 0.0, 0.9], [0.8, 0.0, 0.2], [0.9, 0.0, 0.1]]])  # pairs (A,B), (A,C), (B,C)
    assert ds3.best_orders(post, 3).tolist() == [[1, 0, 2]]


def test_unshuffled_display_learns_a_first_side_prior_instead_of_blaming_raters():
    # Every rater sees the same order and response 1 is truly better 80% of the time (as in many real
    # exports): the prior, not the raters, carries the lean.
    rng = np.random.default_rng(3)
    records = []
    for i in range(150):
        winner = "A" if rng.random() < 0.8 else "B"
        for r in ("r1", "r2", "r3"):
            said = winner if rng.random() < 0.9 else {"A": "B", "B": "A"}[winner]
            records.append(vote(f"u{i}", said, r, "A"))
    fit = ds3.fit(from_records(records))
    assert not fit.shuffled and fit.prior[0] > 0.65
    assert np.all(np.abs(fit.position_bias()) < 0.15)


def test_without_any_tie_vote_the_tie_class_is_off_and_em_converges():
    # Measured before the fix: with no tie votes EM kept turning the tie class into a "hard pair" class and
    # had not converged after 160 iterations (calls still changing) on 100k judgments.
    rng = np.random.default_rng(4)
    records = []
    for i in range(200):
        winner = "A" if rng.random() < 0.5 else "B"
        for r in ("r1", "r2", "r3", "r4"):
            said = winner if rng.random() < 0.8 else {"A": "B", "B": "A"}[winner]
            records.append(vote(f"n{i}", said, r, "A" if rng.random() < 0.5 else "B"))
    fit = ds3.fit(from_records(records))
    assert fit.converged and fit.iterations < 60
    assert fit.prior[1] == 0.0 and np.nanmax(fit.posterior[:, 1]) < 1e-6


def test_one_judgment_per_pair_keeps_a_symmetric_prior():
    # Overlap 1 cannot show whether displays were shuffled; a free "first is better" prior then soaks up
    # everything (measured: 0.99 on the first side, accuracy 0.49 on the sweep's overlap-1 setting).
    rng = np.random.default_rng(5)
    records = []
    truth = {}
    for i in range(60):
        winner = "A" if rng.random() < 0.5 else "B"
        truth[f"o{i}"] = winner
        said = winner if rng.random() < 0.85 else {"A": "B", "B": "A"}[winner]
        records.append(vote(f"o{i}", said, f"r{i % 6}", "A" if rng.random() < 0.5 else "B"))
    j = from_records(records)
    fit = ds3.fit(j)
    assert fit.shuffled and fit.prior[0] == pytest.approx(fit.prior[2])
    right = [(fit.raw[unit_of(j, p)[0], 0] > 0.5) == (w == "A") for p, w in truth.items()]
    assert np.mean(right) > 0.75


def adversarial_campaign(n=80, seed=6):
    """Careful r1..r3, an adversary who picks the worse response 95% of the time and a random clicker, on
    clear pairs in shuffled orders; returns the records and the true winner per prompt."""
    rng = np.random.default_rng(seed)
    records, truth = [], {}
    for i in range(n):
        winner = "A" if rng.random() < 0.5 else "B"
        loser = {"A": "B", "B": "A"}[winner]
        truth[f"v{i}"] = winner
        for r in ("r1", "r2", "r3"):
            said = winner if rng.random() < 0.9 else loser
            records.append(vote(f"v{i}", said, r, "A" if rng.random() < 0.5 else "B"))
        records.append(vote(f"v{i}", loser if rng.random() < 0.95 else winner, "adv", "AB"[i % 2]))
        records.append(vote(f"v{i}", "A" if rng.random() < 0.5 else "B", "rnd", "AB"[i % 2]))
    return records, truth


def test_an_inverted_rater_is_read_inverted_and_kept_by_the_flagged_policy():
    records, _ = adversarial_campaign()
    # "solo": only the adversary judged it and said B, so A is the better one. "split": r1 says A, r2 says
    # B and the adversary says B: majority says B, the adversary's B is evidence for A.
    records.append(vote("solo", "B", "adv"))
    records += [vote("split", "A", "r1"), vote("split", "B", "r2", "B"), vote("split", "B", "adv")]
    j, cons = merged(records)
    fit = cons.ds3_fit
    idx = {name: n for n, name in enumerate(j.raters)}
    assert fit.inverted()[idx["adv"]] and not fit.inverted()[[idx["r1"], idx["rnd"]]].any()
    info = fit.information()
    assert info[idx["adv"]] > 0.4 and info[idx["rnd"]] < RatersConfig().ds3.keep_flagged_min_bits
    for prompt in ("solo", "split"):
        u, g = unit_of(j, prompt)
        assert cons.unit_p[u] > 0.6 and cons.group_ranks[g] == [1, 2]
    maj = aggregate.consensus(j, "majority", np.ones(len(j.j_row), dtype=bool), RatersConfig())
    assert maj.unit_p[unit_of(j, "split")[0]] < 0.5  # face-value votes get "split" wrong
    # The report flags the adversary and marks it inverted; with the random clicker flagged too (on 80
    # votes its agreement can pass by chance), the flagged policy under ds3 keeps the adversary (read
    # inverted) and still drops the clicker, who carries no information; other methods drop both.
    report = quality.build_report(j, RatersConfig())
    rows = {r["rater"]: r for r in report["raters"]}
    assert rows["adv"]["flagged"] and rows["adv"]["ds3_inverted"] and not rows["rnd"]["ds3_inverted"]
    assert rows["rnd"]["ds3_information"] < cfg_bits() < rows["adv"]["ds3_information"]
    rows["rnd"].update(flagged=True, reasons=["low_agreement: 0.50 < 0.6"])
    cfg = RatersConfig()
    assert set(aggregate.excluded_raters(j, report, cfg, "ds3")) == {"rnd"}
    assert "inverted" in aggregate.kept_flagged_raters(report, cfg, "ds3")["adv"]
    assert set(aggregate.excluded_raters(j, report, cfg, "majority")) == {"adv", "rnd"}
    old = RatersConfig(ds3={"keep_flagged_min_bits": None})
    assert set(aggregate.excluded_raters(j, report, old, "ds3")) == {"adv", "rnd"}
    listed = RatersConfig(exclude_list=["adv"])
    assert set(aggregate.excluded_raters(j, report, listed, "ds3")) == {"adv", "rnd"}


def cfg_bits() -> float:
    return RatersConfig().ds3.keep_flagged_min_bits


def test_information_is_corrected_for_the_judgments_behind_it():
    """A 3x3 confusion estimated from few judgments always shows some structure, so the plug-in mutual
    information of a random clicker with 35 judgments reads above the threshold that keeps a flagged rater
    in the fit (0.14 bits here); the Miller-Madow-corrected value the report and the keep rule use does not,
    while careful raters stay far above it."""
    from rewardlab.raters import synthetic

    records, truth = synthetic.campaign(groups=120, raters=12, overlap=3, seed=5, gold_rate=0.1)
    j = from_records([normalize(r) for r in records])
    fit = ds3.fit(j)
    raw = ds3.DS3Fit(**{**fit.__dict__, "votes": None}).information()  # the plug-in estimate
    info = fit.information()
    k = int((fit.prior > 0).sum())
    assert np.allclose(info, np.maximum(raw - (k - 1) ** 2 / (2 * fit.votes * np.log(2)), 0))
    profile = {name: truth["raters"][name] for name in j.raters}
    clicker = j.raters.index("r-000")
    assert profile["r-000"] == "random" and raw[clicker] > cfg_bits() > info[clicker]
    careful = [n for n, name in enumerate(j.raters) if profile[name] == "careful"]
    assert careful and info[careful].min() > 2 * cfg_bits()


def test_em_stops_when_no_confusion_or_prior_entry_moves_more_than_tol():
    """The documented stopping rule (docs/raters.md, config.py): EM stops at the first iteration in which no
    entry of any rater's confusion or of the class prior moves by more than tol (1e-4)."""
    j = from_records(background())
    full = ds3.fit(j)
    assert full.converged and full.iterations > 2
    before = ds3.fit(j, max_iter=full.iterations - 1)
    assert not before.converged
    moved = max(np.abs(full.confusion - before.confusion).max(), np.abs(full.prior - before.prior).max())
    assert moved < 1e-4
    earlier = ds3.fit(j, max_iter=full.iterations - 2)
    moved_before = max(
        np.abs(before.confusion - earlier.confusion).max(), np.abs(before.prior - earlier.prior).max()
    )
    assert moved_before >= 1e-4


def test_fitted_strength_follows_how_much_raters_differ():
    """Empirical Bayes: raters drawn from one confusion give a strong pull to the pool; raters whose
    confusions differ (careful and inverted ones) a weak one."""
    rng = np.random.default_rng(0)
    pool = np.array([[0.8, 0.1, 0.1], [0.3, 0.4, 0.3], [0.1, 0.1, 0.8]])

    def counts(confusions, n=60):
        return np.stack([np.stack([rng.multinomial(n, row) for row in c]) for c in confusions]).astype(float)

    alike = ds3.fitted_strength(counts([pool] * 30))
    inverted = pool[:, ::-1]
    differ = ds3.fitted_strength(counts([pool] * 15 + [inverted] * 15))
    assert alike > 50 and differ < 5


def test_fit_strength_pulls_light_raters_to_the_pool():
    records = background()
    # a light rater with three judgments, all agreeing with the background's winners would need more data
    # to earn its own confusion: with the fitted prior its confusion sits near the pool's
    records += [vote(f"bg{i}", "A", "light") for i in range(3)]
    j = from_records(records)
    fixed = ds3.fit(j)
    eb = ds3.fit(j, fit_strength=True)
    li = j.raters.index("light")
    pooled = np.delete(eb.confusion, li, axis=0).mean(axis=0)
    assert eb.strength > fixed.strength  # three alike careful raters: a strong pull
    assert np.abs(eb.confusion[li] - pooled).max() < np.abs(fixed.confusion[li] - pooled).max()


def tie_pool(n=40, tie_rate=0.2, seed=1):
    """Clear pairs judged by three raters who call a tie ``tie_rate`` of the time and are otherwise right 90%,
    shown in random orders."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        winner = "A" if rng.random() < 0.5 else "B"
        for r in ("r1", "r2", "r3"):
            x = rng.random()
            said = (
                "tie"
                if x < tie_rate
                else (winner if x < tie_rate + 0.9 * (1 - tie_rate) else "AB"[winner == "A"])
            )
            out.append(vote(f"bg{i}", said, r, "A" if rng.random() < 0.5 else "B"))
    return out


def test_vote_label_is_posterior_times_pool_confusion():
    """soft_label: vote of a once-judged comparison = posterior x the pool's judgment-weighted confusion
    (both display sides, half each, when displays are shuffled); it sums to 1, carries the pool's tie rate,
    and leaves the calls alone."""
    records = tie_pool() + [vote("once", "A", "r1", "A"), vote("once2", "A", "r2", "B")]
    # an adversary on 30 of the pairs: ds3 reads it inverted, and it is no part of the pool
    truth = {r["prompt"]: r for r in records if r["rater"] == "r1"}
    for i in range(30):
        said = {(1, 2): "B", (2, 1): "A", (1, 1): "tie"}[tuple(truth[f"bg{i}"]["ranks"])]
        records.append(vote(f"bg{i}", said if truth[f"bg{i}"]["responses"][0].startswith("A") else
                            {"A": "B", "B": "A", "tie": "tie"}[said], "adv"))  # fmt: skip
    j = from_records(records)
    fit = ds3.fit(j)
    assert fit.shuffled
    adv = j.raters.index("adv")
    assert fit.inverted()[adv] and fit.inverted().sum() == 1
    rows = np.bincount(j.p_rater, minlength=len(j.raters)).astype(float)
    rows[adv] = 0.0
    pool = np.einsum("r,rco->co", rows / rows.sum(), fit.confusion)
    pool = (pool + pool[::-1, ::-1]) / 2  # a new rater sees either side first
    for prompt in ("once", "once2"):
        u, _ = unit_of(j, prompt)
        want = fit.posterior[u] @ pool
        got = fit.vote_label()[u]
        np.testing.assert_allclose(got, want, atol=1e-9)
        assert abs(got.sum() - 1) < 1e-9
        assert got[1] > max(0.12, fit.posterior[u, 1] + 0.03)  # the pool ties often; the label shows it
        assert got[0] < fit.posterior[u, 0]  # a typical rater may still disagree: softer than the posterior
    _, post_cons = merged(records)
    jv, vote_cons = merged(records, ds3={"soft_label": "vote"})
    u, g = unit_of(jv, "once")
    vl = vote_cons.ds3_fit.vote_label()
    np.testing.assert_allclose(vote_cons.unit_p, vl[:, 0] + 0.5 * vl[:, 1], atol=1e-12)
    assert vote_cons.unit_post[u, 1] > post_cons.unit_post[u, 1]
    assert vote_cons.group_ranks == post_cons.group_ranks  # same calls


def test_vote_label_turns_the_pool_to_the_side_shown():
    """The pool's confusion is over displayed sides: on a true tie a pool that says "the first one" 60% of
    the time gives a the vote when a is listed first, b when b is, and half each when displays are shuffled.
    """
    habit = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])  # true display class -> said
    post = np.array([[0.0, 1.0, 0.0]] * 3)  # canonical: a true tie
    fit = ds3.DS3Fit(post, post, habit[None], np.array([0.45, 0.1, 0.45]), False, 1, True,
                     a_first_share=np.array([1.0, 0.0, 0.5]), votes=np.array([10.0]))  # fmt: skip
    v = fit.vote_label()
    np.testing.assert_allclose(v[0], [0.6, 0.3, 0.1])  # a first: "first" is a
    np.testing.assert_allclose(v[1], [0.1, 0.3, 0.6])  # b first: "first" is b
    np.testing.assert_allclose(v[2], [0.35, 0.3, 0.35])
