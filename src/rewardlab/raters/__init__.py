"""Rater quality and aggregation: who to trust, and one soft-labelled record per comparison.

- ``table``: judgments as flat arrays (built once per dataset);
- ``quality``: per-rater metrics, overall agreement and alpha, flags (``raters report``);
- ``aggregate``: exclusion and merging into soft pairwise labels (``raters aggregate``);
- ``noisy_bt``: crowd-kit's NoisyBradleyTerry model with a vectorised, corrected gradient;
- ``planning``: label accuracy and flag quality of a simulated setting (``simulate`` sweeps);
- ``report_html``: the self-contained HTML report and ``render_rater_charts`` for other pages.
"""
