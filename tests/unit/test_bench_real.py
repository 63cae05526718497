"""scripts/bench_real.py: ``--backbone`` picks the config and rewardlab's variants, and the TRL worker's setup
of a decoder tokenizer reads the reward at the real last token (its eos), also when the tokenizer ships
pad = eos as SmolLM2's does (issue 30 items 5 and 6). Tiny local model only; no training."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from rewardlab import models

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench(script):  # noqa: ANN001, ANN201
    return script("bench_real")


def test_backbone_picks_config_and_variants(bench) -> None:  # noqa: ANN001
    minilm = bench.parse_args(bench.build_parser(), [])
    assert minilm.backbone == "minilm" and minilm.config.name == "minilm.yaml"
    assert bench.tools_of("minilm") == ["rewardlab", "rewardlab-uncapped", "trl"]
    smol = bench.parse_args(bench.build_parser(), ["--backbone", "smollm2", "--only", "rewardlab-padded"])
    assert smol.config == ROOT / "configs" / "rm" / "smollm2.yaml" and smol.only == ["rewardlab-padded"]
    variants = bench.BACKBONES["smollm2"].variants
    assert variants == {
        "rewardlab-packed": ["train.packing=true"],
        "rewardlab-padded": ["train.packing=false"],
    }
    with pytest.raises(SystemExit) as err:  # a MiniLM variant is not run on SmolLM2
        bench.parse_args(bench.build_parser(), ["--backbone", "smollm2", "--only", "rewardlab"])
    assert err.value.code == 2


def test_packed_vs_padded_summary_is_paired_by_seed(bench) -> None:  # noqa: ANN001
    def run(acc: float, pairs: float) -> dict:
        return {
            "accuracy": acc,
            "pairs_per_s": pairs,
            "tokens_per_s": 100 * pairs,
            "wall_s": 10.0,
            "peak_rss_mb": 1.0,
        }

    results = {
        "rewardlab-packed": [run(0.6, 2.0), run(0.7, 2.0)],
        "rewardlab-padded": [run(0.5, 1.0), run(0.6, 1.0)],
        "trl": [run(0.5, 1.0), run(0.5, 1.0)],
    }
    summary = bench.summarize(results, bench.BACKBONES["smollm2"].variants)
    assert summary["packed-vs-padded"]["per_seed_diff"] == pytest.approx([0.1, 0.1])
    assert summary["packed-vs-padded"]["tokens_per_s_ratio"] == pytest.approx(2.0)
    assert summary["paired-rewardlab-padded"]["per_seed_diff"] == pytest.approx([0.0, 0.1])
    assert "paired" not in summary  # that key is the shipped MiniLM config's


@pytest.fixture(scope="module")
def pad_is_eos(tmp_path_factory) -> Path:
    """offline:tiny-llama whose tokenizer ships pad = eos (as SmolLM2-135M-Instruct's does)."""
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("padeos") / "model"
    shutil.copytree(models.resolve("offline:tiny-llama"), out)
    tok = AutoTokenizer.from_pretrained(out)
    tok.pad_token = tok.eos_token
    tok.save_pretrained(out)
    assert AutoTokenizer.from_pretrained(out).pad_token_id == tok.eos_token_id
    return out


def scores(model, tok, texts: list[str]) -> list[float]:  # noqa: ANN001
    batch = tok(texts, padding=True, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        return model(**batch).logits[:, 0].tolist()


def test_trl_worker_reads_the_reward_at_the_eos_when_pad_is_eos(pad_is_eos: Path, bench) -> None:  # noqa: ANN001
    tok, eos_arg = bench.trl_tokenizer(str(pad_is_eos))
    assert eos_arg is None  # a decoder keeps its own eos: nothing forced
    assert tok.eos_token == "<|eos|>" and tok.pad_token_id != tok.eos_token_id
    torch.manual_seed(0)
    model = bench.trl_model(str(pad_is_eos), tok).eval()
    assert model.config.pad_token_id == tok.pad_token_id
    row = {
        "chosen": "\n\nHuman: hi there\n\nAssistant: hello, how can I help?",
        "rejected": "\n\nHuman: hi there\n\nAssistant: go away",
    }
    texts = bench.chat_texts([row], tok)[0]
    long, short = texts["chosen"], texts["rejected"]
    assert long.endswith(tok.eos_token) and short.endswith(tok.eos_token)
    alone = [scores(model, tok, [t])[0] for t in (long, short)]
    assert scores(model, tok, [long, short]) == pytest.approx(alone, abs=1e-5)  # padding moves nothing
    cut = short[: -len(tok.eos_token)]
    assert abs(scores(model, tok, [cut])[0] - alone[1]) > 1e-4  # the eos is the token read
    # the setup it replaces: pad = eos makes transformers' pooling read the token before the eos
    model.config.pad_token_id = tok.eos_token_id
    assert scores(model, tok, [short])[0] == pytest.approx(scores(model, tok, [cut])[0], abs=1e-5)


def test_trl_tokenizer_keeps_bert_sep_as_eos(bench) -> None:  # noqa: ANN001
    tok, eos_arg = bench.trl_tokenizer(models.resolve("offline:minilm-l6"))
    assert eos_arg == tok.sep_token == tok.eos_token == "[SEP]" and tok.pad_token == "[PAD]"


def test_merge_joins_invocations_by_tool_and_seed(bench, tmp_path, capsys) -> None:  # noqa: ANN001
    """Seeds run in separate invocations (and packed apart from padded + TRL) make one paired table; files of
    another setup, a (tool, seed) given twice and tools without the same seeds are refused with exit 2."""
    import json

    def run(acc: float) -> dict:
        return {"accuracy": acc, "pairs_per_s": 1.0, "tokens_per_s": 100.0, "tokens_per_response": 50.0,
                "train_time_s": 8.0, "post_train_s": 2.0, "wall_s": 10.0, "peak_rss_mb": 1.0, "pairs_kept": 2,
                "pairs_dropped": 0, "pairs_truncated": 0}  # fmt: skip

    def payload(seeds: list[int], results: dict, limit: int | None = 200) -> dict:
        return {"date": "d", "data": "hh", "split": "test", "backbone": "smollm2", "config": "c", "sizes": {},
                "epochs": 1.0, "max_length": 256, "limit": limit, "trl_lr": 1e-4, "rewardlab_overrides": [],
                "parallel": True, "seeds": seeds, "results": results,
                "summary": {"length_rules": {"longer_wins": 0.565, "shorter_wins": 0.435}}}  # fmt: skip

    def write(name: str, data: dict) -> Path:
        (tmp_path / name).write_text(json.dumps(data))
        return tmp_path / name

    s0 = write("s0.json", payload([0], {"rewardlab-padded": [run(0.6)], "trl": [run(0.5)]}))
    s1 = write("s1.json", payload([1], {"rewardlab-padded": [run(0.7)], "trl": [run(0.8)]}))
    packed = write("p.json", payload([1, 0], {"rewardlab-packed": [run(0.7), run(0.6)]}))
    old = payload([2], {"rewardlab-padded": [run(0.5)], "trl": [run(0.5)], "rewardlab-packed": [run(0.5)]})
    del old["limit"]  # written before --json saved it: compared on what it has
    merged = bench.merge([s0, s1, packed, write("old.json", old)])
    assert merged["seeds"] == [0, 1, 2]
    packed_rows = merged["results"]["rewardlab-packed"]
    assert [r["accuracy"] for r in packed_rows] == [0.6, 0.7, 0.5]  # by seed, not by file order
    assert [r["invocation"] for r in packed_rows] == [2, 2, 3]
    summary = merged["summary"]
    assert summary["paired-rewardlab-padded"]["per_seed_diff"] == pytest.approx([0.1, -0.1, 0.0])
    assert summary["packed-vs-padded"]["per_seed_diff"] == pytest.approx([0.0, 0.0, 0.0])
    assert "invocation" not in summary["rewardlab-packed"]

    refused = {
        "another limit": [s0, write("l.json", payload([1], {"rewardlab-padded": [run(0.7)], "trl": [run(0.8)]}, 40))],
        "a seed twice": [s0, s0],
        "other train pairs": [s0, write("sp.json", {**payload([1], {"rewardlab-padded": [run(0.7)], "trl": [run(0.8)]}), "same_pairs": True})],
        "unpaired seeds": [s0, s1, write("p0.json", payload([0], {"rewardlab-packed": [run(0.6)]}))],
    }  # fmt: skip
    for why, files in refused.items():
        with pytest.raises(SystemExit) as err:
            bench.merge(files)
        assert err.value.code == 2, why
        line = capsys.readouterr().err.strip()
        assert line.startswith("bench_real.py --merge: ") and "\n" not in line, why
    bench.main(["--merge", str(s0), str(s1), "--json", str(tmp_path / "all.json")])
    out = capsys.readouterr().out
    assert "0.0 +- 10.0 points (paired by seed, SE)" in out  # +0.1 and -0.1
    assert json.loads((tmp_path / "all.json").read_text())["merged_from"] == [str(s0), str(s1)]


def test_same_pairs_keeps_what_fits_max_length_as_trl_does(pad_is_eos: Path, bench, monkeypatch) -> None:  # noqa: ANN001
    """--same-pairs: a pair goes when either chat-formatted text, eos included, is over max_length tokens
    (TRL's RewardTrainer filter; on HH at --limit 200 / 40 it keeps 118 / 20, TRL's own counts)."""
    monkeypatch.setitem(bench.BACKBONES, "tiny", bench.Backbone(ROOT, str(pad_is_eos), {}, chat=True))
    short = {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go"}
    long = {"chosen": "\n\nHuman: hi\n\nAssistant: " + "word " * 40, "rejected": short["rejected"]}
    tok, _ = bench.trl_tokenizer(str(pad_is_eos))
    lengths = [len(tok(t)["input_ids"]) for row in bench.chat_texts([short, long], tok) for t in row.values()]
    monkeypatch.setattr(bench, "MAX_LENGTH", max(lengths[:2]))  # the short pair just fits
    assert bench.pairs_trl_keeps([long, short, long], "tiny") == [short]
    monkeypatch.setattr(bench, "MAX_LENGTH", max(lengths[:2]) - 1)
    assert bench.pairs_trl_keeps([short], "tiny") == []
