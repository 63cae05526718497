"""Config merge order, strict keys with dotted paths and hints, and the `config show` command."""

from __future__ import annotations

import pytest

from rewardlab import config as cfglib
from rewardlab.config import ConfigError


@pytest.fixture
def rm_yaml(tmp_path):
    path = tmp_path / "rm.yaml"
    path.write_text("stage: rm\ntrain:\n  lr: 0.002\n  batch_size: 4\nheads: [overall, helpfulness]\n")
    return path


def test_merge_order_defaults_file_overrides(rm_yaml):
    cfg = cfglib.load(rm_yaml, ["train.batch_size=16", "loss.margin={better: 1.0}"])
    assert cfg.train.lr == 0.002  # file beats default
    assert cfg.train.batch_size == 16  # override beats file
    assert cfg.train.grad_accum == 1  # default kept
    assert cfg.heads == ["overall", "helpfulness"]
    assert cfg.loss.margin == {"better": 1.0}


def test_base_mapping_sits_below_the_file(rm_yaml):
    cfg = cfglib.load(rm_yaml, [], base={"train": {"lr": 1.0, "seed": 7}})
    assert cfg.train.lr == 0.002 and cfg.train.seed == 7


def test_unknown_key_names_dotted_path_with_hint(rm_yaml):
    with pytest.raises(ConfigError) as err:
        cfglib.load(rm_yaml, ["train.lrr=1"])
    msg = str(err.value)
    assert str(rm_yaml) in msg and "'train.lrr'" in msg and "did you mean 'train.lr'" in msg
    assert "\n" not in msg


def test_unknown_nested_key_in_file(tmp_path):
    path = tmp_path / "rm.yaml"
    path.write_text("stage: rm\nloss:\n  kindd: plackett-luce\n")
    with pytest.raises(ConfigError, match=r"unknown key 'loss.kindd' \(did you mean 'loss.kind'\?\)"):
        cfglib.load(path)


def test_wrong_type_names_key_and_value(rm_yaml):
    with pytest.raises(ConfigError, match=r"train.batch_size: .*\(got \"many\"\)"):
        cfglib.load(rm_yaml, ["train.batch_size=many"])


def test_bad_yaml_names_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("stage: rm\ntrain: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        cfglib.load(path)


def test_yaml_is_read_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("stage: rm\noutput_dir: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        cfglib.load(path)


def test_stage_inferred_from_folder(tmp_path):
    (tmp_path / "dpo").mkdir()
    path = tmp_path / "dpo" / "x.yaml"
    path.write_text("dpo:\n  beta: 0.2\n")
    cfg = cfglib.load(path)
    assert cfg.stage == "dpo" and cfg.dpo.beta == 0.2


def test_stage_mismatch_fails(rm_yaml):
    with pytest.raises(ConfigError, match="expects 'ppo'"):
        cfglib.load(rm_yaml, stage="ppo")


def test_fingerprint_changes_with_config(rm_yaml):
    a = cfglib.fingerprint(cfglib.load(rm_yaml))
    b = cfglib.fingerprint(cfglib.load(rm_yaml, ["train.seed=1"]))
    assert a != b and a == cfglib.fingerprint(cfglib.load(rm_yaml))


def test_every_stage_has_a_schema_with_defaults():
    for name, schema in cfglib.SCHEMAS.items():
        cfg = schema()
        assert cfg.stage == name


def test_config_show_prints_merged_value(cli, rm_yaml):
    res = cli("config", "show", rm_yaml, "train.lr=1e-5")
    assert res.exit_code == 0, res
    assert "lr: 1.0e-05" in res.stdout


def test_config_show_json(cli, rm_yaml):
    res = cli("config", "show", rm_yaml, "--json")
    assert res.exit_code == 0, res
    assert res.json()["train"]["lr"] == 0.002


def test_config_show_bad_key_exits_2(cli, rm_yaml):
    res = cli("config", "show", rm_yaml, "train.lrr=1")
    assert res.exit_code == 2
    assert "train.lrr" in res.stderr and res.stderr.count("\n") == 1


def test_config_show_missing_file_exits_2(cli, tmp_path):
    res = cli("config", "show", tmp_path / "nope.yaml")
    assert res.exit_code == 2 and "not found" in res.stderr
