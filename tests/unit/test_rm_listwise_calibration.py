"""`loss.kind: plackett-luce` with ties and a fixed `loss.tie_param`: head 0 learns from whole rankings and
has no tie parameter, so `evaluate_from_rewards` calibrates it as Bradley-Terry, as with a learned tie
parameter (issue 27: it used to calibrate it as Rao-Kupper with the fixed parameter)."""

from __future__ import annotations

import numpy as np
import pytest

from rewardlab.config import RMConfig
from rewardlab.data.schema import normalize
from rewardlab.eval.rm import evaluate_rewards
from rewardlab.recipes.rm import evaluate_from_rewards


def test_listwise_head_with_a_fixed_tie_param_is_calibrated_as_bradley_terry():
    rng = np.random.default_rng(0)
    records = [
        normalize(
            {"prompt": f"p{i}", "responses": ["a", "b", "c"], "ranks": [1, 1, 2] if i % 3 else [1, 2, 3]}
        )
        for i in range(30)
    ]
    rewards = [rng.normal(size=(3, 1)) for _ in records]
    base = {"heads": ["overall"], "loss": {"kind": "plackett-luce", "ties": "rao-kupper", "tie_param": 1.5}}
    cfg = RMConfig.model_validate(base)
    got = evaluate_from_rewards(records, rewards, cfg, ["rao-kupper"], 0.0, None)
    bt = evaluate_rewards(records, rewards, cfg.heads, None, 1.5, 0.0)
    rk = evaluate_rewards(records, rewards, cfg.heads, "rao-kupper", 1.5, 0.0)
    assert got["ece"] == pytest.approx(bt["ece"])
    assert bt["ece"] != pytest.approx(rk["ece"])  # the two calibrations differ here, so the test can fail
