"""train.packing: the padding-free RM forward (one packed row, position ids restarting per sequence) gives
the padded forward's rewards and gradients on a decoder, and is refused for encoders and several processes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rewardlab import models
from rewardlab.errors import UserError
from rewardlab.recipes import rm
from rewardlab.scoring import pad_batch


def _seqs(vocab: int, lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(5, vocab, size=n).astype(np.int64) for n in lengths]


@pytest.mark.parametrize("lora", [None, {"r": 4, "alpha": 8, "dropout": 0.0}])
def test_packed_rewards_equal_the_padded_forward(lora):
    torch.manual_seed(0)
    model = models.build_reward_model("offline:tiny-llama", num_heads=2, lora=lora).eval()
    pad = models.load_tokenizer("offline:tiny-llama").pad_token_id
    seqs = _seqs(model.config.vocab_size, [7, 19, 3, 12, 19, 1])
    ids, mask = pad_batch(seqs, pad)
    assert int(mask.numel() - mask.sum()) > 0  # the padded batch does pad: the comparison means something
    padded = model(input_ids=ids, attention_mask=mask).logits
    packed = rm.packed_logits(model, seqs, torch.device("cpu"))
    assert packed.shape == padded.shape == (len(seqs), 2)
    torch.testing.assert_close(packed, padded, atol=1e-5, rtol=0)
    # the gradients of a loss on the rewards agree too (what training uses)
    params = [p for p in model.parameters() if p.requires_grad]
    g_pad = torch.autograd.grad(padded.pow(2).sum(), params)
    g_pack = torch.autograd.grad(rm.packed_logits(model, seqs, torch.device("cpu")).pow(2).sum(), params)
    for a, b in zip(g_pack, g_pad, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_without_restarting_positions_the_rewards_differ():
    """The check can fail: one plain causal row (no per-sequence positions) lets sequences see each other."""
    model = models.build_reward_model("offline:tiny-llama").eval()
    seqs = _seqs(model.config.vocab_size, [6, 9, 4], seed=1)
    ids, _, ends = rm.pack(seqs)
    hidden = model.model(input_ids=ids, use_cache=False).last_hidden_state  # positions 0..T-1: one sequence
    leaky = model.score(hidden[0, ends])
    packed = rm.packed_logits(model, seqs, torch.device("cpu"))
    assert (leaky[1:] - packed[1:]).abs().max() > 1e-3


def test_pack_layout():
    ids, positions, ends = rm.pack([np.array([4, 5, 6]), np.array([7]), np.array([8, 9])])
    assert ids.tolist() == [[4, 5, 6, 7, 8, 9]]
    assert positions.tolist() == [[0, 1, 2, 0, 0, 1]]
    assert ends.tolist() == [2, 3, 5]


def test_packing_is_refused_for_encoders_and_several_processes():
    from transformers import BertConfig, BertForSequenceClassification

    bert = BertForSequenceClassification(
        BertConfig(
            vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        )
    )
    with pytest.raises(UserError, match="encoder"):
        rm.check_packing(bert, 1)
    decoder = models.build_reward_model("offline:tiny-llama")
    rm.check_packing(decoder, 1)
    with pytest.raises(UserError, match="one process"):
        rm.check_packing(decoder, 2)
    with pytest.raises(UserError, match="pools by 'mean'"):
        rm.check_packing(models.build_reward_model("offline:tiny-llama", pooling="mean"), 1)


def test_rm_run_packed_matches_the_padded_run(cli, tmp_path, arithmetic_pairs):
    """The loop end to end on a decoder: the same seed packed and padded gives the same training."""
    data = arithmetic_pairs(tmp_path / "data", 24)
    runs = {}
    for packing in ("false", "true"):
        out = tmp_path / f"run-{packing}"
        res = cli("train", "rm", "configs/rm/tiny.yaml", f"data.train={data}", f"output_dir={out}", "heads=[overall]",
                  "model.name_or_path=offline:tiny-llama", f"train.packing={packing}", "train.max_steps=3",
                  "train.batch_size=4", "--json")  # fmt: skip
        assert res.exit_code == 0, res
        runs[packing] = res.json()
    losses = {k: v for k, v in runs["false"].items() if "loss" in k and isinstance(v, float)}
    assert losses, runs["false"]
    for key, value in losses.items():
        assert runs["true"][key] == pytest.approx(value, abs=1e-4), key
