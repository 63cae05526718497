"""Rejection sampling trains on the tokens it sampled: a cut answer is never taught as a finished one.

Through the chat template, every kept answer would be closed by the end-of-turn token, so an answer cut by
the length limit would teach the policy to stop mid-sentence. These tests pin the pre-tokenized rows RS
hands TRL: sampled prompt ids, the answer's ids, the stop token only when the answer stopped, and loss on
the answer alone (checked in the labels TRL builds from them).
"""

from __future__ import annotations

from _policy_setup import ROOT

from rewardlab import config as rl_config

STOP = 2


def test_the_best_answer_is_kept_with_its_sampled_tokens_cut_or_not():
    from rewardlab.recipes import rs

    tokens = [
        [([5, 6], [7, STOP]), ([5, 6], [8, 9, 10])],
        [([11], [12, 13, STOP]), ([11], [14])],
    ]
    stopped = [[True, False], [True, False]]
    kept, skipped = rs.select_best(
        ["p0", "p1"], [["a", "b"], ["c", "d"]], [[0.1, 0.9], [0.8, 0.2]], stopped, False, tokens
    )
    assert skipped == 0
    # prompt 0's best answer (0.9) was cut by the limit; prompt 1's (0.8) stopped
    assert [k["response"] for k in kept] == ["b", "c"]
    assert [k["stopped"] for k in kept] == [False, True]
    rows = rs.training_rows(kept)
    assert rows[0]["input_ids"] == [5, 6, 8, 9, 10]  # no end token appended to the cut answer
    assert rows[0]["completion_mask"] == [0, 0, 1, 1, 1]
    assert rows[1]["input_ids"] == [11, 12, 13, STOP]  # the stopped one keeps its stop token
    assert rows[1]["completion_mask"] == [0, 1, 1, 1]
    # required stops: prompt 0 falls back to its stopped (worse) answer
    kept, _ = rs.select_best(["p0"], [["a", "b"]], [[0.1, 0.9]], [[True, False]], True)
    assert kept[0]["response"] == "a"


def test_sampled_tokens_match_the_text_and_trl_labels_only_the_answer(tmp_path):
    import torch
    from trl import SFTConfig, SFTTrainer

    from rewardlab import models
    from rewardlab.recipes import policy_common as pc
    from rewardlab.recipes import rs

    cfg = rl_config.load(
        ROOT / "configs/rs/tiny.yaml",
        ["model.name_or_path=offline:tiny-llama", "rs.max_new_tokens=6", "rs.num_samples=2"],
    )
    tok = models.load_tokenizer("offline:tiny-llama")
    torch.manual_seed(0)
    model = models.build_policy("offline:tiny-llama")
    stop_ids = pc.stop_token_ids(tok, model)
    prompts = ["Say hi.", "A longer question, about the weather?"]
    answers, stopped, tokens = rs.sample_answers(model, tok, prompts, cfg, 0, stop_ids)
    encoded, _ = pc.encode_prompts(tok, prompts, cfg.data.max_length)
    for j in range(len(prompts)):
        unpadded = [t for t in encoded[j].tolist() if t != tok.pad_token_id]
        for text, ends, (prompt_ids, answer_ids) in zip(answers[j], stopped[j], tokens[j], strict=True):
            assert prompt_ids == unpadded  # left padding removed
            assert (answer_ids[-1] in stop_ids) == ends
            assert len(answer_ids) <= 6 and (ends or len(answer_ids) == 6)
            assert tok.decode(answer_ids, skip_special_tokens=True).strip() == text
    assert not all(map(all, stopped)), "the fixture needs a cut answer (an untrained model rarely stops)"
    kept, _ = rs.select_best(prompts, answers, [[0.0, 1.0], [1.0, 0.0]], stopped, False, tokens)
    args = SFTConfig(
        output_dir=str(tmp_path),
        max_length=64,
        completion_only_loss=True,
        report_to=[],
        use_cpu=True,
        bf16=False,
        dataloader_pin_memory=False,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=rs.training_rows(kept), processing_class=tok)
    for k, row in zip(kept, trainer.train_dataset, strict=True):
        assert row["input_ids"] == k["prompt_ids"] + k["response_ids"]  # not re-tokenized, not extended
        assert row["labels"] == [-100] * len(k["prompt_ids"]) + k["response_ids"]
