"""`model.pooling`: auto follows the backbone, and a saved RM scores the same in plain transformers when
its model card's lines are run, as with `rewardlab score` (tiny decoder with mean pooling, MiniLM auto)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rewardlab import models
from rewardlab.data.dataset import write_dataset
from rewardlab.data.schema import normalize


def test_auto_reads_the_backbone_pooling_config(tmp_path):
    from transformers import AutoConfig

    minilm = models.resolve("offline:minilm-l6")
    assert models.resolve_pooling("auto", minilm, AutoConfig.from_pretrained(minilm)) == "mean"
    tiny = models.resolve("offline:tiny-rm")
    assert models.resolve_pooling("auto", tiny, AutoConfig.from_pretrained(tiny)) == "last"
    assert models.resolve_pooling("cls", minilm, AutoConfig.from_pretrained(minilm)) == "cls"
    # a sentence-transformers folder with [CLS] pooling, one with max pooling (not offered: native)
    for flags, expected in (
        ({"pooling_mode_cls_token": True}, "cls"),
        ({"pooling_mode_max_tokens": True}, None),
    ):
        folder = tmp_path / str(expected)
        (folder / "1_Pooling").mkdir(parents=True)
        (folder / "modules.json").write_text(json.dumps([{"path": "1_Pooling", "type": "x.models.Pooling"}]))
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(flags))
        assert models.sentence_transformers_pooling(folder) == expected


def test_pool_hidden_by_hand():
    import torch

    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]], [[5.0, 6.0], [7.0, 8.0], [0.0, 1.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert models.pool_hidden(hidden, mask, "mean").tolist() == [[2.0, 3.0], [4.0, 5.0]]
    assert models.pool_hidden(hidden, mask, "cls").tolist() == [[1.0, 2.0], [5.0, 6.0]]
    assert models.pool_hidden(hidden, mask, "last").tolist() == [[3.0, 4.0], [0.0, 1.0]]
    left = torch.tensor([[0, 1, 1], [1, 1, 1]])  # left padding: the last real token is still found
    assert models.pool_hidden(hidden, left, "last").tolist() == [[9.0, 9.0], [0.0, 1.0]]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    rows = [
        normalize(
            {
                "prompt": f"What is {n} + {n}?",
                "responses": [f"{n} + {n} = {2 * n}.", f"I think it is {2 * n + 3}."],
                "ranks": [1, 2],
            },
            source=f"t:{n}",
        )
        for n in range(16)
    ]
    path = tmp_path_factory.mktemp("pool") / "ds"
    write_dataset(rows, path)
    return path


def card_scores(model_dir: Path, prompt: str, response: str) -> list[float]:
    """Run the model card's snippet with this folder and one conversation; its `rewards`."""
    card = (model_dir / "README.md").read_text()
    code = re.search(r"## Scoring in plain transformers.*?```python\n(.*?)```", card, re.S).group(1)
    code = code.replace('"path/to/model"', repr(str(model_dir)))
    code = code.replace('"How do I boil an egg?"', repr(prompt)).replace(
        '"Simmer it for 9 minutes."', repr(response)
    )
    scope: dict = {}
    exec(code, scope)  # noqa: S102 - the card's own lines, as a user would paste them
    return scope["rewards"][0].tolist()


@pytest.mark.parametrize(
    ("source", "pooling", "expected"),
    [
        ("offline:tiny-rm", "mean", "mean"),
        ("offline:minilm-l6", "auto", "mean"),
        ("offline:tiny-rm", "auto", "last"),
    ],
)
def test_card_lines_score_like_rewardlab_score(pairs, tmp_path, cli, source, pooling, expected):
    out = tmp_path / "run"
    res = cli(
        "train", "rm", "configs/rm/tiny.yaml", f"data.train={pairs}", f"output_dir={out}", "heads=[overall]",
        f"model.name_or_path={source}", f"model.pooling={pooling}", "train.max_steps=2", "train.batch_size=4",
        "data.max_length=64", "train.lr=1e-3",
    )  # fmt: skip
    assert res.exit_code == 0, res
    model_dir = out / "model"
    assert json.loads((model_dir / "config.json").read_text())["rewardlab_pooling"] == expected
    long_prompt = "Tell me about eggs. " * 30  # longer than max_length: the prompt is cut from the left
    cases = [("What is 2 + 2?", "2 + 2 = 4."), (long_prompt, "Boil them for nine minutes.")]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in cases))
    dst = tmp_path / "out.jsonl"
    assert cli("score", str(out), "--input", str(src), "--output", str(dst)).exit_code == 0
    ours = [json.loads(line)["rewards"]["overall"] for line in dst.read_text().splitlines()]
    plain = [card_scores(model_dir, p, r)[0] for p, r in cases]
    assert plain == pytest.approx(ours, abs=1e-5)
    assert len(set(ours)) == 2  # two different inputs, two different rewards (not a constant head)


def test_prompt_cap_is_saved_and_scoring_cuts_prompts_the_same_way(pairs, tmp_path, cli):
    """`max_prompt_length`: the RM trains on the last N prompt tokens, and every later scorer (score, PPO,
    eval) cuts the same way, so a prompt's older turns cannot move a reward the RM never saw them in."""
    from rewardlab.scoring import RewardScorer

    out = tmp_path / "run"
    res = cli(
        "train", "rm", "configs/rm/tiny.yaml", f"data.train={pairs}", f"output_dir={out}", "heads=[overall]",
        "max_prompt_length=8", "train.max_steps=2", "train.batch_size=4", "data.max_length=64",
    )  # fmt: skip
    assert res.exit_code == 0, res
    assert "prompts to their last 8" in res.stdout + res.stderr
    assert json.loads((out / "model" / "config.json").read_text())["rewardlab_max_prompt_length"] == 8
    assert "last 8 tokens" in (out / "model" / "README.md").read_text()
    scorer = RewardScorer.from_path(out)
    assert scorer.max_prompt_length == 8
    tail = "Now tell me: what is 2 + 2?"
    early, other = "We talked about eggs. " * 5, "We talked about trains and ships. " * 5
    a, b = scorer.score([early + tail, other + tail], ["4.", "4."])[:, 0]
    assert a == pytest.approx(b, abs=1e-6)  # only the prompt's last 8 tokens are read
    uncapped = RewardScorer(scorer.model, scorer.tokenizer, 64)
    uncapped.max_prompt_length = None
    c, d = uncapped.score([early + tail, other + tail], ["4.", "4."])[:, 0]
    assert c != pytest.approx(d, abs=1e-6)  # without the cap the early turns do move it


def test_run_setting_wins_over_a_saved_prompt_cap(pairs, tmp_path, cli, monkeypatch):
    """An RM started from an RM that saved a cap (8), trained with `max_prompt_length: null`, is evaluated,
    calibrated and given its reward mean/std uncapped, as it trained (issue 27); `score` on the saved
    folder then reads its own (null) cap, and a folder's saved cap still holds for a plain load."""
    from rewardlab.recipes import rm as rm_recipe
    from rewardlab.scoring import RewardScorer

    first = tmp_path / "first"
    args = ["heads=[overall]", "train.max_steps=2", "train.batch_size=4", "data.max_length=64"]
    res = cli("train", "rm", "configs/rm/tiny.yaml", f"data.train={pairs}", f"output_dir={first}",
              "max_prompt_length=8", *args)  # fmt: skip
    assert res.exit_code == 0, res
    saved = RewardScorer.from_path(first)
    assert saved.max_prompt_length == 8  # a plain load keeps the folder's cap
    assert RewardScorer(saved.model, saved.tokenizer, 64, "cpu", None).max_prompt_length is None
    assert RewardScorer(saved.model, saved.tokenizer, 64, "cpu", 16).max_prompt_length == 16

    built: list[int | None] = []

    class Spy(RewardScorer):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            built.append(self.max_prompt_length)

    monkeypatch.setattr(rm_recipe, "RewardScorer", Spy)
    second = tmp_path / "second"
    res = cli("train", "rm", "configs/rm/tiny.yaml", f"data.train={pairs}", f"output_dir={second}",
              f"model.name_or_path={first / 'model'}", "max_prompt_length=null", "train.eval_every=1", *args)  # fmt: skip
    assert res.exit_code == 0, res
    assert built and built == [None] * len(built)  # live eval, final eval, calibration, reward mean/std
    assert json.loads((second / "model" / "config.json").read_text())["rewardlab_max_prompt_length"] is None
    assert RewardScorer.from_path(second).max_prompt_length is None
