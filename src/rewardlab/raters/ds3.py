"""Three-outcome Dawid-Skene with position-aware rater confusion, gold clamped, pooled prior: ``ds3``.

Why a model of our own instead of crowd-kit's DawidSkene (which we also wrap, as ``dawid-skene``):
- crowd-kit sees one label per (pair, rater) in the pair's canonical orientation and cannot know which
  answer the rater saw first, so a rater who clicks the first-listed answer 85% of the time looks like a
  weak random clicker. Here each rater's 3x3 confusion is over the *displayed* sides (first better, tie,
  second better): "picked the first one" from that rater is weak evidence, "picked the second" strong.
- gold references are known labels: their units' posteriors are clamped in every EM step, so they fix
  each rater's confusion instead of only scoring the rater afterwards.
- each rater's confusion is pulled toward the pool's (a Dirichlet prior of ``prior_strength``
  pseudo-judgments centred on the pooled confusion): with 30 judgments per rater, unsmoothed 3x3 estimates
  are noisy and produce 0/1 posteriors on split votes (crowd-kit gives p = 0.000 on a 1-1-1 split).
- the returned posterior is tempered (log-posterior times ``temperature`` <= 1, renormalised): raters err
  together on hard pairs, which the conditional-independence assumption ignores, so raw posteriors are
  overconfident. Tempering keeps the argmax, so calls (order, tie) come from the raw posterior and only the
  soft labels are softened. The default temperature was chosen on tuning seeds that the benchmark does
  not report (docs/raters.md).

Classes, per unit (an implied pair ``a < b`` in canonical order): 0 = a above b, 1 = tie, 2 = b above a.
Observations, per pair row, in display orientation: 0 = the first-listed won, 1 = tie, 2 = the second won.
Preference strengths are not used: tried as graded observations (first/second x unknown/weak/strong), EM
turned the tie class into a "hard pair" class (weak votes cluster on hard pairs), and order accuracy fell
by 1-7 points on the tuning seeds.
The class prior is symmetric (canonical order is text order, unrelated to quality) unless the campaign
never shows a unit in both orders (every rater saw the same order, as in most real exports): then it is
estimated in the shown orientation, so a real "response 1 is better more often" is not blamed on raters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rewardlab.raters.table import NO_GOLD, Judgments

# Prior confusion before any data: a rater who is right 75% of the time, ties rarely (a fallback only; the
# pooled confusion replaces it after the first M-step).
# Pseudo-judgments of the pool's confusion per true class in each rater's prior (config: ds3.prior_strength).
# 2, not 4: chosen on the tuning seeds of the sparse and dense benchmarks (docs/raters.md, Pooled prior).
PRIOR_STRENGTH = 2.0

_START = np.array([[0.75, 0.1, 0.15], [0.3, 0.4, 0.3], [0.15, 0.1, 0.75]])


@dataclass
class DS3Fit:
    posterior: np.ndarray  # [units, 3] tempered P(a above, tie, b above); rows of unjudged units are nan
    raw: np.ndarray  # [units, 3] the untempered EM posterior (same argmax): what the calls use
    confusion: np.ndarray  # [raters, 3, 3] P(observed display outcome | true display outcome)
    prior: np.ndarray  # [3] class prior in display orientation (symmetric when displays are shuffled)
    shuffled: bool  # units were shown in both orders, so the prior is symmetric
    iterations: int
    converged: bool
    strength: float = PRIOR_STRENGTH  # the prior strength toward the pool used in the last M-step
    # [units] share of a unit's new judgments expected to list a first: 0.5 when displays are shuffled, else
    # the unit's shown orientation (1.0 or 0.0); nan for unjudged units. Used by ``vote_label``.
    a_first_share: np.ndarray | None = None
    votes: np.ndarray | None = None  # [raters] kept (weighted) pair rows per rater: the pool's weights

    def pool_confusion(self, include_inverted: bool = False) -> np.ndarray:
        """[3, 3] the pool's display-side confusion: the confusion of the rater behind a random judgment, i.e.
        the raters' confusions weighted by their kept pair rows, leaving out raters read inverted.

        Why judgment-weighted and not a plain mean over raters: new judgments come from raters in proportion
        to their workload, and a plain mean gives a rater with 3 judgments (whose confusion is mostly the
        prior anyway) the say of one with 300 (on the tuning seeds the two differ by under 0.01 nats).
        Why without inverted raters: ds3 keeps an adversary because its votes, read the other way round, are
        informative, not because its answers are what a rater prefers; in the pool it would pull every label
        toward 1/2 (measured on the tuning seeds of the adversarial campaign: Brier against the true order
        0.103 with them, 0.046 without; the held-out-vote log loss level)."""
        n = np.zeros(len(self.confusion)) if self.votes is None else self.votes
        if not include_inverted:
            n = np.where(self.inverted(), 0.0, n)
        if n.sum() <= 0:
            return self.confusion.mean(axis=0)
        return np.einsum("r,rco->co", n / n.sum(), self.confusion)

    def vote_label(self, posterior: np.ndarray | None = None) -> np.ndarray:
        """[units, 3] canonical P(a new rater votes a above, tie, b above): sum_c posterior[c] * pool[c, o].

        Why: the soft label the reward model trains on is read as "the chance that a rater prefers A", i.e.
        the predictive distribution of a new, typical rater's vote, not the posterior of the true order. The
        posterior of a comparison judged once by a careful rater is near 0/1, but a typical rater would still
        say the other answer (or tie) at the pool's error and tie rates; this label carries that mass.
        The pool's confusion is over displayed sides, so the unit's posterior is turned to the side a new
        rater would see (both sides, half each, when displays are shuffled), multiplied, and turned back.
        ``posterior``: default the tempered ``posterior``."""
        post = self.posterior if posterior is None else posterior
        pool = self.pool_confusion()
        share = np.full(len(post), 0.5) if self.a_first_share is None else self.a_first_share
        first = post @ pool  # a listed first: display classes are canonical
        second = post @ pool[::-1, ::-1]  # b listed first: mirror in, mirror out
        return share[:, None] * first + (1.0 - share[:, None]) * second

    def accuracy(self) -> np.ndarray:
        """Per rater: sum_c prior_c * P(says c | true c), the probability a judgment is right."""
        return np.einsum("c,rcc->r", self.prior, self.confusion)

    def position_bias(self) -> np.ndarray:
        """Per rater: P(says first | first better) - P(says second | second better), in [-1, 1]."""
        return self.confusion[:, 0, 0] - self.confusion[:, 2, 2]

    def information(self) -> np.ndarray:
        """Per rater: mutual information (bits) between the true outcome and the rater's answer, under the
        rater's confusion and the class prior: what one judgment of the rater is worth to the posterior.

        Why not accuracy: an adversarial rater (right 15% of the time) is as informative as a careful one,
        since the confusion reads its answers inverted, and a position-biased rater's "the second one" is
        strong evidence; a random clicker is worth ~0 bits however its accuracy is dressed up.
        """
        joint = self.prior[None, :, None] * self.confusion  # [raters, true, said]
        said = joint.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = joint * np.log2(joint / (said * self.prior[None, :, None]))
        plug_in = np.nansum(np.where(joint > 0, terms, 0.0), axis=(1, 2))
        if self.votes is None:
            return plug_in
        # Miller-Madow: a confusion estimated from n judgments shows (k - 1)^2 / (2 n ln 2) bits of mutual
        # information on average even when the rater's answers are independent of the truth (k classes
        # in play). Without it a random clicker with 35 judgments read 0.14 bits, above the 0.12 bits that
        # keeps a flagged rater in the fit.
        k = int((self.prior > 0).sum())
        bias = (k - 1) ** 2 / (2.0 * np.maximum(self.votes, 1.0) * np.log(2.0))
        return np.maximum(plug_in - bias, 0.0)

    def inverted(self) -> np.ndarray:
        """Per rater: answers the opposite order more often than the true one (P(says b | a better) summed
        over both sides exceeds P(says a | a better)). ds3 reads such a rater's votes the other way round."""
        c = self.confusion
        return c[:, 0, 2] + c[:, 2, 0] > c[:, 0, 0] + c[:, 2, 2]


def _rows(j: Judgments, keep: np.ndarray) -> tuple[np.ndarray, ...]:
    """(unit, rater, display observation, a listed first) of the kept pair rows."""
    unit = j.p_unit[keep]
    rater = j.p_rater[keep].astype(np.int64)
    a_first = j.p_a_first[keep]
    canon = 1 - j.p_outcome[keep].astype(np.int64)  # +1 -> 0, 0 -> 1, -1 -> 2
    obs = np.where(a_first, canon, 2 - canon)
    return unit, rater, obs, a_first


def fit(
    j: Judgments,
    keep: np.ndarray | None = None,
    rater_weight: np.ndarray | None = None,
    prior_strength: float = PRIOR_STRENGTH,
    temperature: float = 0.7,
    use_gold: bool = True,
    max_iter: int = 100,
    tol: float = 1e-4,
    position_strength: float = 20.0,
    fit_strength: bool = False,
) -> DS3Fit:
    """Fit by EM on the kept pair rows (``keep``: bool per pair row). ``rater_weight`` scales each rater's
    log-likelihood (1 = a full vote, 0 = ignored: how flagged raters are down-weighted). EM stops when no
    confusion or prior entry moves by more than ``tol``.

    ``fit_strength``: empirical Bayes: in every M-step the prior strength toward the pool is the one that
    maximises the Dirichlet-multinomial marginal likelihood of all raters' expected confusion counts
    (``fitted_strength``), instead of ``prior_strength``. Raters who all behave like the pool give a strong
    prior (a rater with 5 judgments then sits at the pool's confusion); a pool of very different raters a
    weak one (a rater with 500 judgments is their own either way). The fitted value is ``DS3Fit.strength``."""
    keep = np.ones(len(j.p_unit), dtype=bool) if keep is None else keep
    n_u, n_r = j.n_units, len(j.raters)
    unit, rater, obs, a_first = _rows(j, keep)
    w = None if rater_weight is None else np.asarray(rater_weight, dtype=float)[rater]
    # Work on the judged units only, renumbered 0..m-1.
    judged_units, u = np.unique(unit, return_inverse=True)
    m = len(judged_units)
    # Orientation of each unit: its first kept row's display order. Treated as shuffled unless units were
    # judged more than once and none of them was ever seen both ways. With one judgment per unit there is
    # no telling, and a free display-side prior is then degenerate (measured at overlap 1: EM put 0.99 on
    # "the first is better" and scored 0.49), so the prior stays symmetric.
    ref = np.zeros(m, dtype=bool)
    ref[u[::-1]] = a_first[::-1]  # the first occurrence wins
    seen_first = np.bincount(u, weights=a_first.astype(float), minlength=m)
    rows_per_unit = np.bincount(u, minlength=m)
    repeated = rows_per_unit >= 2
    both_ways = (seen_first > 0) & (seen_first < rows_per_unit)
    shuffled = bool(both_ways.any() or not repeated.any())
    gold = j.unit_gold[judged_units] if use_gold else np.full(m, NO_GOLD, dtype=np.int8)
    clamp = gold != NO_GOLD
    clamp_post = np.eye(3)[np.where(gold == 1, 0, 2)[clamp]]
    # The confusion cell of each row for each canonical class c: the display class is c when a was listed
    # first, else its mirror 2 - c.
    cells = np.stack([rater * 9 + np.where(a_first, c, 2 - c) * 3 + obs for c in range(3)])
    # Start from the (weighted) vote shares plus a little smoothing.
    canon_obs = np.where(a_first, obs, 2 - obs)
    counts = np.bincount(u * 3 + canon_obs, weights=w, minlength=3 * m).reshape(m, 3) + 0.5
    post = counts / counts.sum(axis=1, keepdims=True)
    post[clamp] = clamp_post
    confusion = np.repeat(_START[None], n_r, axis=0)
    # Without a single tie vote the tie class has nothing to anchor it: EM would slowly turn it into a
    # "hard pair" class (measured: calls still changing after 160 iterations). It is switched off.
    ties = bool((obs == 1).any())
    prior = np.array([0.45, 0.1, 0.45]) if ties else np.array([0.5, 0.0, 0.5])
    converged = False
    it = 0
    strength = prior_strength
    while it < max_iter and m:
        it += 1
        if fit_strength:
            strength = fitted_strength(_cavity_counts(confusion, prior, u, cells, w, ref, m, clamp, n_r))
        new_conf, new_prior = _m_step(
            post, u, cells, w, ref, n_r, strength, shuffled, ties, position_strength
        )
        delta = max(float(np.abs(new_conf - confusion).max()), float(np.abs(new_prior - prior).max()))
        confusion, prior = new_conf, new_prior
        post = _normalise(_logpost(confusion, prior, u, cells, w, ref, m))
        post[clamp] = clamp_post
        if delta < tol:
            converged = True
            break
    logpost = _logpost(confusion, prior, u, cells, w, ref, m)
    raw = np.full((n_u, 3), np.nan)
    out = np.full((n_u, 3), np.nan)
    for full, part in ((raw, _normalise(logpost)), (out, _normalise(temperature * logpost))):
        part[clamp] = clamp_post
        full[judged_units] = part
    share = np.full(n_u, np.nan)
    share[judged_units] = 0.5 if shuffled else ref.astype(float)
    votes = np.bincount(rater, weights=w, minlength=n_r).astype(float)
    return DS3Fit(out, raw, confusion, prior, shuffled, it, converged, float(strength), share, votes)


# Prior strengths searched by fitted_strength: 0.3 to 1000 pseudo-judgments per true class.
STRENGTH_GRID = np.geomspace(0.3, 1000.0, 48)


def _expected_counts(post, u, cells, w, n_r) -> np.ndarray:
    """[raters, 3, 3] expected (soft) counts of (true display class, observed) per rater."""
    counts = np.zeros(n_r * 9)
    for c in range(3):
        weight = post[u, c] if w is None else post[u, c] * w
        counts += np.bincount(cells[c], weights=weight, minlength=n_r * 9)
    return counts.reshape(n_r, 3, 3)


def _cavity_counts(confusion, prior, u, cells, w, ref, m, clamp, n_r) -> np.ndarray:
    """[raters, 3, 3] expected counts of (true display class, observed) where each row's true class comes
    from its unit's posterior *without that row* (the cavity), over rows whose unit has another kept row or
    gold. Why: with the row's own vote in, a once-judged comparison's posterior just repeats the vote, every
    rater looks like the pool's average agreement with itself, and the fitted strength runs to the top of the
    grid (measured on the sparse campaign: 1000, which erases adversaries)."""
    logc = np.log(np.maximum(confusion, 1e-12)).reshape(-1)
    own = np.stack([logc[cells[c]] if w is None else logc[cells[c]] * w for c in range(3)], axis=1)
    full = _logpost(confusion, prior, u, cells, w, ref, m)
    cav = _normalise(full[u] - own)
    rows_per_unit = np.bincount(u, minlength=m)
    informed = (rows_per_unit[u] >= 2) | clamp[u]
    counts = np.zeros(n_r * 9)
    for c in range(3):
        weight = cav[:, c] * informed if w is None else cav[:, c] * informed * w
        counts += np.bincount(cells[c], weights=weight, minlength=n_r * 9)
    return counts.reshape(n_r, 3, 3)


def fitted_strength(counts: np.ndarray) -> float:
    """Empirical-Bayes prior strength: each rater's confusion row (true class c) is Dirichlet(s * pool_c),
    pool_c the pooled row; s maximises the Dirichlet-multinomial marginal likelihood of the expected counts,
    summed over raters and rows (a 1-D grid search, ``STRENGTH_GRID``). Why this and not a fixed number: how
    much a light rater should be pulled to the pool depends on how much raters differ, which the data show."""
    from scipy.special import gammaln

    pooled = counts.sum(axis=0) + 1.0
    pooled /= pooled.sum(axis=1, keepdims=True)
    n_row = counts.sum(axis=2)  # [raters, 3]
    used = n_row > 1e-6
    if not used.any():
        return float(STRENGTH_GRID[len(STRENGTH_GRID) // 2])
    best, best_ll = STRENGTH_GRID[0], -np.inf
    for s in STRENGTH_GRID:
        alpha = s * pooled[None]  # [1, 3, 3]
        ll = gammaln(s) - gammaln(s + n_row) + (gammaln(alpha + counts) - gammaln(alpha)).sum(axis=2)
        total = float(ll[used].sum())
        if total > best_ll:
            best, best_ll = s, total
    return float(best)


def _logpost(confusion, prior, u, cells, w, ref, m) -> np.ndarray:
    """[units, 3] log prior + log-likelihood of each unit's rows, per canonical class."""
    logc = np.log(np.maximum(confusion, 1e-12)).reshape(-1)
    out = np.empty((m, 3))
    for c in range(3):
        terms = logc[cells[c]] if w is None else logc[cells[c]] * w
        out[:, c] = np.bincount(u, weights=terms, minlength=m)
    logprior = np.log(np.maximum(prior, 1e-12))
    return out + np.where(ref[:, None], logprior[None, :], logprior[None, ::-1])


def _normalise(logp: np.ndarray) -> np.ndarray:
    z = np.exp(logp - logp.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _m_step(post, u, cells, w, ref, n_r, strength, shuffled, ties, position_strength=0.0):
    """Confusion per rater and the class prior. The confusion's Dirichlet prior has two parts:
    ``strength`` pseudo-judgments of the pool's confusion, and ``position_strength`` pseudo-judgments of the
    rater's own mirror-symmetric confusion (first and second side swapped and averaged): a rater without a
    side habit then pools the evidence of both display orders, and only a rater whose own data show a
    habit departs from symmetry."""
    counts = np.zeros(n_r * 9)
    for c in range(3):
        weight = post[u, c] if w is None else post[u, c] * w
        counts += np.bincount(cells[c], weights=weight, minlength=n_r * 9)
    counts = counts.reshape(n_r, 3, 3)
    pooled = counts.sum(axis=0) + 1.0  # one pseudo-count per cell keeps every outcome possible
    pooled /= pooled.sum(axis=1, keepdims=True)
    conf = counts + strength * pooled[None] + 1e-9
    if position_strength > 0:
        mirrored = (conf + conf[:, ::-1, ::-1]) / 2
        conf = conf + position_strength * mirrored / mirrored.sum(axis=2, keepdims=True)
    conf /= conf.sum(axis=2, keepdims=True)
    # Class prior in the display orientation of each unit's reference row.
    prior = np.where(ref[:, None], post, post[:, ::-1]).mean(axis=0) + 1e-3
    if not ties:
        prior[1] = 0.0
    if shuffled:
        side = (prior[0] + prior[2]) / 2
        prior = np.array([side, prior[1], side])
    return conf, prior / prior.sum()


# ---------------------------------------------------------------- K-wise orders


def best_orders(post: np.ndarray, k: int) -> np.ndarray:
    """Per group of ``k`` items (``post``: [groups, C(k,2), 3] canonical pair posteriors), the order (best
    first) that maximises the summed log-probability of its implied pairs (Kemeny on the posterior).

    Exhaustive for k <= 6 (720 orders); beyond that, by expected wins (sum of P(i above j) + P(tie) / 2).
    """
    from itertools import combinations, permutations

    pairs = list(combinations(range(k), 2))
    g = post.shape[0]
    if k > 6:
        wins = np.zeros((g, k))
        for n, (a, b) in enumerate(pairs):
            wins[:, a] += post[:, n, 0] + 0.5 * post[:, n, 1]
            wins[:, b] += post[:, n, 2] + 0.5 * post[:, n, 1]
        return np.argsort(-wins, axis=1, kind="stable")
    perms = np.array(list(permutations(range(k))), dtype=np.int64)  # [P, k]
    pos = np.argsort(perms, axis=1)  # item -> position
    # For each order and pair: class 0 when a comes first, else 2 (a strict order; ties are set afterwards).
    cls = np.stack([np.where(pos[:, a] < pos[:, b], 0, 2) for a, b in pairs], axis=1)  # [P, pairs]
    logp = np.log(np.maximum(post, 1e-12))  # [G, pairs, 3]
    pair_idx = np.arange(len(pairs))
    score = np.zeros((g, len(perms)))
    for n in pair_idx:
        score += logp[:, n, :][:, cls[:, n]]
    return perms[np.argmax(score, axis=1)]
