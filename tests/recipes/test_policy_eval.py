"""`rewardlab eval policy`: the JSON contract, the samples file, metrics.json merge, determinism, truth scores."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from _policy_setup import DATA, ROOT, SHARED, check, read_jsonl, untrained_rm
from conftest import run_cli

FIELDS = {
    "rm_score_mean", "ref_rm_score_mean", "win_rate_vs_ref", "kl_to_ref", "truth_score_mean",
    "ref_truth_score_mean", "response_length_mean",
}  # fmt: skip


@pytest.fixture(scope="module")
def ppo_run() -> tuple[Path, Path]:
    """A one-step PPO run (enough for the policy to differ from its reference)."""
    rm = untrained_rm("rm-tiny", "offline:tiny-rm")
    run = SHARED / "eval-ppo"
    check(run_cli("train", "ppo", ROOT / "configs/ppo/tiny.yaml", f"data.train={DATA}", f"output_dir={run}",
                  "model.name_or_path=offline:tiny-llama", f"ppo.reward_model={rm}", "train.max_steps=1",
                  "ppo.rollout_batch_size=8", "ppo.mini_batch_size=8", "ppo.max_new_tokens=8"))  # fmt: skip
    return run, rm


def test_eval_policy_json_samples_and_merge(cli, ppo_run):
    run, rm = ppo_run
    res = cli(
        "eval", "policy", run, "--n", "3", "--samples-per-prompt", "2", "--max-new-tokens", "8", "--json"
    )
    assert res.exit_code == 0, res
    out = res.json()
    assert set(out) >= FIELDS
    assert out["eval_reward_model"] == str(rm) and out["eval_samples"] == 6
    assert 0.0 <= out["win_rate_vs_ref"] <= 1.0
    assert out["truth_score_mean"] is not None  # the bundled campaign's prompts carry meta.task
    samples = read_jsonl(run / "samples.jsonl")
    assert len(samples) == 6
    assert {"prompt", "policy", "reference", "policy_rm", "reference_rm", "policy_truth", "kl"} <= set(
        samples[0]
    )
    merged = json.loads((run / "metrics.json").read_text())
    assert merged["steps"] == 1 and merged["rm_score_mean"] == out["rm_score_mean"]  # training keys kept
    # The RM's win rate is consistent with the per-sample scores.
    wins = sum(1.0 if s["policy_rm"] > s["reference_rm"] else 0.5 if s["policy_rm"] == s["reference_rm"] else 0.0
               for s in samples) / len(samples)  # fmt: skip
    assert out["win_rate_vs_ref"] == pytest.approx(wins)
    # The paired gain averages each prompt's samples first: 3 prompts, so its SE has 2 degrees of freedom.
    per_prompt: dict[str, list[float]] = {}
    for s in samples:
        per_prompt.setdefault(json.dumps(s["prompt"]), []).append(s["policy_rm"] - s["reference_rm"])
    diffs = [sum(v) / len(v) for v in per_prompt.values()]
    assert len(diffs) == 3
    assert out["rm_gain"] == pytest.approx(sum(diffs) / 3)
    assert out["rm_gain_se"] == pytest.approx(statistics.stdev(diffs) / 3**0.5)
    assert out["truth_gain"] == pytest.approx(out["truth_score_mean"] - out["ref_truth_score_mean"])
    again = cli(
        "eval", "policy", run, "--n", "3", "--samples-per-prompt", "2", "--max-new-tokens", "8", "--json"
    )
    assert again.json() == out  # seeded sampling: same numbers every time


def test_eval_policy_on_a_prompt_file_without_tasks(cli, ppo_run, tmp_path):
    run, _ = ppo_run
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Say hello."}\n{"prompt": "What is 2 + 2?"}\n')
    res = cli("eval", "policy", run, "--prompts", prompts, "--greedy", "--max-new-tokens", "6", "--json")
    assert res.exit_code == 0, res
    out = res.json()
    assert out["eval_prompts"] == 2 and out["truth_score_mean"] is None and out["eval_decoding"] == "greedy"


def test_eval_policy_rejects_a_folder_that_is_not_a_run(cli, tmp_path):
    res = cli("eval", "policy", tmp_path, "--json")
    assert res.exit_code == 2
    assert "not a finished policy run" in res.stderr


def test_eval_policy_best_of_n_baseline_and_exact_kl(cli, ppo_run):
    import math

    run, rm = ppo_run
    res = cli("eval", "policy", run, "--n", "3", "--best-of", "3", "--max-new-tokens", "6", "--json")
    assert res.exit_code == 0, res
    out = res.json()
    assert out["best_of_n"] == 3 and out["best_of_n_select_rm"] == str(rm)
    assert out["best_of_n_kl_bound"] == pytest.approx(math.log(3) - 2 / 3)
    assert 0.0 <= out["best_of_n_win_rate_vs_ref"] <= 1.0 and 0.0 <= out["win_rate_vs_best_of_n"] <= 1.0
    assert out["best_of_n_truth_score_mean"] is not None
    assert out["kl_to_ref"] >= 0.0  # exact: summed over the vocabulary, never negative
    assert 0.0 <= out["stop_rate"] <= 1.0
    samples = read_jsonl(run / "samples.jsonl")
    assert len(samples) == 3 and all(isinstance(s["best_of_n"], str) for s in samples)


def test_eval_policy_reuses_reference_answers_only_under_the_same_settings(cli, ppo_run, tmp_path):
    import shutil

    run, _ = ppo_run
    args = ("eval", "policy", run, "--n", "3", "--max-new-tokens", "8", "--json")
    first = cli(*args)
    assert first.exit_code == 0, first
    # The earlier evaluation, with its reference answers replaced: if the second evaluation uses them,
    # its reference metrics are those of the replacement, not of a fresh sample.
    source = tmp_path / "earlier"
    source.mkdir()
    shutil.copy(run / "metrics.json", source / "metrics.json")
    rows = read_jsonl(run / "samples.jsonl")
    assert all(isinstance(r["reference_stopped"], bool) for r in rows)
    with (source / "samples.jsonl").open("w") as fh:
        for r in rows:
            fh.write(
                json.dumps({**r, "reference": "Planted.", "reference_length": 1, "reference_stopped": True})
                + "\n"
            )
    again = cli(*args, "--reference-from", source)
    assert again.exit_code == 0, again
    out = again.json()
    assert out["ref_response_length_mean"] == 1.0 and out["ref_stop_rate"] == 1.0
    assert {r["reference"] for r in read_jsonl(run / "samples.jsonl")} == {"Planted."}
    assert out["rm_score_mean"] == first.json()["rm_score_mean"]  # the policy's side is sampled as before
    assert out["eval_reference_from"] == str(source)

    other_seed = cli(*args, "--seed", "1", "--reference-from", source)
    assert other_seed.exit_code == 2
    assert "seed: 0 there, 1 here" in other_seed.stderr
    fewer = cli("eval", "policy", run, "--n", "2", "--max-new-tokens", "8", "--reference-from", source)
    assert fewer.exit_code == 2 and "prompt_ids_sha256" in fewer.stderr
    legacy = json.loads((source / "metrics.json").read_text())
    del legacy["eval_reference_settings"]
    (source / "metrics.json").write_text(json.dumps(legacy))
    old = cli(*args, "--reference-from", source)
    assert old.exit_code == 2 and "'eval_reference_settings' missing" in old.stderr


def test_kl_from_the_samplers_logits_matches_a_full_forward():
    """eval's KL reads the policy's side from the sampler's own logits (KV cache) and the reference's from one
    forward pass: a model against itself gives 0, and against another model the same numbers as a full
    forward of both (left-padded prompts of different lengths, answers stopped early or cut)."""
    import torch

    from rewardlab import generation as gen
    from rewardlab import models
    from rewardlab import ppo_math as pm
    from rewardlab.eval.policy import sample

    tokenizer = models.load_tokenizer("offline:tiny-llama")
    policy = models.build_reference("offline:tiny-llama")
    other = models.build_reference("offline:tiny-llama")
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    prompts = ["Say something.", "Write a long list of numbers please, with words in between them.", "Hi"]
    stops = gen.stop_token_ids(tokenizer, policy)
    _, _, _, (same, same_k1) = sample(policy, tokenizer, prompts, 12, 0, False, 2, 64, stops, policy)
    assert max(map(abs, same)) < 1e-4 and max(map(abs, same_k1)) < 1e-4
    _, _, _, (exact, _) = sample(policy, tokenizer, prompts, 12, 0, False, 2, 64, stops, other)
    assert min(exact) > 0.01  # the perturbed model differs
    # the same answers, scored by a full forward of both models
    expected = []
    for start in range(0, len(prompts), 2):
        query, qmask = gen.encode_prompts(tokenizer, prompts[start : start + 2], 64)
        torch.manual_seed(start)  # sample() seeds each batch with seed + start, seed 0 here
        response = gen.generate(
            policy, tokenizer, query, qmask, gen.generation_config(tokenizer, 12, True, stop_ids=stops)
        )
        mask, _, _ = pm.response_mask(response, stops)
        attention = torch.cat([qmask, mask.long()], 1)
        kwargs = {"input_ids": torch.cat([query, response], 1), "attention_mask": attention,
                  "position_ids": gen.position_ids(attention), "use_cache": False}  # fmt: skip
        with torch.no_grad():
            a = policy(**kwargs).logits[:, query.shape[1] - 1 : -1]
            b = other(**kwargs).logits[:, query.shape[1] - 1 : -1]
        expected += (pm.exact_kl(a, b) * mask).sum(1).tolist()
    assert exact == pytest.approx(expected, rel=1e-3, abs=1e-4)


def test_best_of_n_keeps_the_selectors_argmax_and_beats_the_plain_sample(cli, ppo_run, monkeypatch):
    """The kept answer is the selector's highest-scored of the n candidates, and best-of-n's mean selector
    score is at least the reference's plain sample's on the same prompts and seed (issue 27)."""
    from rewardlab.eval import policy as policy_eval
    from rewardlab.scoring import RewardScorer

    run, rm = ppo_run
    calls: list[tuple[list, list[str]]] = []
    real_sample = policy_eval.sample

    def spy(model, tokenizer, prompts, *args, **kwargs):
        out = real_sample(model, tokenizer, prompts, *args, **kwargs)
        calls.append((list(prompts), list(out[0])))
        return out

    monkeypatch.setattr(policy_eval, "sample", spy)
    res = cli("eval", "policy", run, "--n", "4", "--best-of", "4", "--max-new-tokens", "6", "--json")
    assert res.exit_code == 0, res
    out = res.json()
    candidates = [(p, t) for p, t in calls if len(p) == 16]  # the 4 x 4 best-of-n draw
    assert len(candidates) == 1
    prompts, texts = candidates[0]
    scores = RewardScorer.from_path(rm).score(prompts, texts)[:, 0]
    kept = [s["best_of_n"] for s in read_jsonl(run / "samples.jsonl")]
    for i, answer in enumerate(kept):
        block = scores[4 * i : 4 * i + 4]
        assert answer == texts[4 * i + int(block.argmax())]
    assert out["best_of_n_select_rm"] == str(rm)  # selector = the eval RM: its scores are comparable
    assert out["best_of_n_rm_score_mean"] >= out["ref_rm_score_mean"]
