"""Config fuzzing: unknown keys and wrong-typed values at random paths of every shipped config, in the
file or as key=value overrides, make `rewardlab config show` exit 2 with one line naming the key path;
random override strings and random YAML never end in a traceback."""

from __future__ import annotations

import contextlib
import json
import os
import types
import typing
from pathlib import Path
from typing import Any, Union

import pytest
import yaml
from _fuzz import examples
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from typer.testing import CliRunner

from rewardlab import config as cfglib
from rewardlab.cli import app

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if "accelerate" not in p.parts)
SECTIONS = {
    "simulate",
    "data",
    "raters",
    "rm",
    "sft",
    "dpo",
    "ppo",
    "sample",
    "rate",
}  # pipeline stage sections
RESERVED = {"base", "stage"}  # keys with a meaning in a pipeline section: not "unknown"
WRONG_FOR_LEAF = {"fuzz_junk": {"deeper": 1}}  # a mapping: wrong for every scalar and list field
WRONG_FOR_MAPPING = [[1, 2], 7]  # wrong for every section and dict field


def show(*args: str) -> Any:
    return CliRunner().invoke(app, ["config", "show", *map(str, args)], catch_exceptions=True)


def assert_refused(result: Any, path: list[str], pipeline: bool) -> None:
    """Exit 2, one line on stderr, naming the key path (a pipeline: the stage section and the path in it)."""
    assert result.exit_code == 2, (result.exit_code, result.stdout[-300:], result.stderr, result.exception)
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    dotted = ".".join(path)
    if pipeline and path[0] in SECTIONS and len(path) > 1 and dotted not in err:
        assert f"stage '{path[0]}'" in err and ".".join(path[1:]) in err, (path, err)
    else:
        assert dotted in err, (path, err)


# ------------------------------------------------------------------------------------------------ schema


def _arms(ann: Any) -> list[Any]:
    if typing.get_origin(ann) in (Union, types.UnionType):
        return list(typing.get_args(ann))
    return [ann]


def _is_model(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def kind_at(schema: type[BaseModel], path: list[Any], raw: dict[str, Any]) -> str:
    """What the schema holds at ``path`` of the YAML tree: model (strict keys), dict (typed keys/values),
    leaf (a scalar or a list), any (an untyped value: nothing is wrong there), or section (a pipeline
    stage section written as a path to its file)."""
    ann: Any = schema
    node: Any = raw
    for depth, part in enumerate(path):
        child = node[part]
        if schema is cfglib.PipelineConfig and depth == 0 and part in SECTIONS:
            ann = (
                cfglib.SCHEMAS["simulate" if part == "rate" else part]
                if isinstance(child, dict)
                else "section"
            )
        elif ann == "section" or ann is Any:
            return "any"
        else:
            arms = _arms(ann)
            model = next((a for a in arms if _is_model(a)), None)
            mapping = next((a for a in arms if typing.get_origin(a) is dict), None)
            seq = next((a for a in arms if typing.get_origin(a) is list), None)
            if isinstance(node, dict) and model is not None:
                if part == "base" and depth == 1 and schema is cfglib.PipelineConfig:
                    ann = str
                elif part not in model.model_fields:
                    return "any"
                else:
                    ann = model.model_fields[part].annotation
            elif isinstance(node, dict) and mapping is not None:
                ann = typing.get_args(mapping)[1]
            elif isinstance(node, list) and seq is not None:
                ann = typing.get_args(seq)[0]
            else:
                return "any"
        node = child
    if ann == "section":
        return "section"
    if ann is Any:
        return "any"
    arms = _arms(ann)
    if isinstance(node, dict):
        if any(_is_model(a) for a in arms):
            return "model"
        return "dict" if any(typing.get_origin(a) is dict for a in arms) else "any"
    return "any" if any(a is Any for a in arms) else "leaf"


def nodes(value: Any, path: list[Any] | None = None) -> list[tuple[list[Any], Any]]:
    path = path or []
    out = [(path, value)]
    if isinstance(value, dict):
        for k, v in value.items():
            out += nodes(v, [*path, k])
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += nodes(v, [*path, i])
    return out


def set_at(raw: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    raw = json.loads(json.dumps(raw))
    node = raw
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return raw


@contextlib.contextmanager
def at_root():
    """Pipeline configs name their stage files relative to the repository root, as users run them."""
    old = os.getcwd()
    os.chdir(ROOT)
    try:
        yield
    finally:
        os.chdir(old)


@st.composite
def mutation(draw: Any, path_: Path) -> tuple[dict[str, Any], list[str], Any]:
    """(mutated YAML tree, key path, the value set there) for one unknown key or one wrong-typed value."""
    raw = yaml.safe_load(path_.read_text())
    schema = cfglib.SCHEMAS[raw["stage"]]
    candidates = [
        (p, v) for p, v in nodes(raw) if p and kind_at(schema, p, raw) in ("leaf", "model", "dict", "section")
    ]
    mappings = [p for p, v in nodes(raw) if kind_at(schema, p, raw) == "model"]
    if draw(st.booleans()):  # an unknown key in a strict section
        where = draw(st.sampled_from(mappings))
        node = raw
        for part in where:
            node = node[part]
        key = draw(
            st.from_regex(r"\A[a-z][a-z0-9_]{2,10}\Z").filter(lambda k: k not in node and k not in RESERVED)
        )
        value = draw(st.sampled_from([1, "x", [1], {"a": 1}, None]))
        return (set_at(raw, [*where, key], value) if where else {**raw, key: value}), [*where, key], value
    where, current = draw(st.sampled_from(candidates))
    kind = kind_at(schema, where, raw)
    value = WRONG_FOR_LEAF if kind in ("leaf", "section") else draw(st.sampled_from(WRONG_FOR_MAPPING))
    path = [*where, "fuzz_junk"] if kind == "section" else where  # a section path became an inline section
    return set_at(raw, where, value), path, value


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
@settings(max_examples=examples(6))
@given(data=st.data())
def test_bad_key_or_type_in_file_exits_2_with_key_path(
    config: Path, data: Any, tmp_path_factory: Any
) -> None:
    raw, path, _ = data.draw(mutation(config), label="mutation")
    folder = tmp_path_factory.mktemp("cfg") / config.parent.name  # the folder still names the stage
    folder.mkdir(exist_ok=True)
    target = folder / config.name
    target.write_text(yaml.safe_dump(raw, sort_keys=False))
    with at_root():
        result = show(target)
    assert_refused(
        result, [str(p) for p in path], raw.get("stage") == "pipeline" or config.parent.name == "pipeline"
    )


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
@settings(max_examples=examples(6))
@given(data=st.data())
def test_bad_key_or_type_as_override_exits_2_with_key_path(config: Path, data: Any) -> None:
    raw, path, value = data.draw(
        mutation(config).filter(lambda m: all(isinstance(p, str) for p in m[1])),  # overrides name keys only
        label="mutation",
    )
    override = f"{'.'.join(path if path[-1] != 'fuzz_junk' else path[:-1])}={json.dumps(value)}"
    with at_root():
        result = show(config.relative_to(ROOT), override)
    assert_refused(result, path, config.parent.name == "pipeline")


OVERRIDE_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)


@settings(max_examples=examples(40))
@given(
    config=st.sampled_from(CONFIGS),
    key=st.one_of(
        OVERRIDE_TEXT, st.sampled_from(["train.lr", "model", "stage", "train", "a..b", "", "loss.margin"])
    ),
    value=st.one_of(
        OVERRIDE_TEXT,
        st.sampled_from(
            ["[", "{a: ", "&x [*x]", "!!python/object:os.system", "1e999", ".nan", "~", "- a\n- b", "\t"]
        ),
    ),
)
def test_random_overrides_never_crash(config: Path, key: str, value: str) -> None:
    with at_root():
        # after "--": an override that starts with "-" is otherwise an unknown option to click, whose usage
        # error (exit 2, a multi-line box) is the CLI framework's, not a config error
        result = show(config.relative_to(ROOT), "--", f"{key}={value}")
    assert result.exit_code in (0, 2), (result.exit_code, result.stderr, result.exception)
    if result.exit_code == 2:
        err = result.stderr.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err


@settings(max_examples=examples(40))
@given(
    stage=st.sampled_from(sorted(cfglib.SCHEMAS)),
    text=st.one_of(
        st.text(max_size=80),
        st.binary(max_size=80).map(lambda b: b.decode("latin-1")),
        st.sampled_from(
            [
                "a: &x [*x]",
                "train: {lr: [",
                "- 1\n- 2",
                "stage: 5",
                "!!binary AAAA",
                "? [a]\n: 1",
                "a: !!set {b}",
            ]
        ),
    ),
)
def test_random_yaml_never_crashes(stage: str, text: str, tmp_path_factory: Any) -> None:
    folder = tmp_path_factory.mktemp("yaml") / stage
    folder.mkdir()
    path = folder / "config.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    with at_root():
        result = show(path)
    assert result.exit_code in (0, 2), (result.exit_code, result.stderr, result.exception)
    if result.exit_code == 2:
        err = result.stderr.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err


# ------------------------------------------------------------------------------------------------ values

EDGE_VALUES = [0, -1, 1, -0.5, 1e-12, 1e308, 2**63, float("nan"), float("inf"), -float("inf")]


def _numeric_leaves(raw: dict[str, Any], schema: type[BaseModel]) -> list[list[str]]:
    return [
        [str(part) for part in p]
        for p, v in nodes(raw)
        if p
        and all(isinstance(part, str) for part in p)
        and isinstance(v, (int, float))
        and not isinstance(v, bool)
        and kind_at(schema, p, raw) == "leaf"
    ]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
@settings(max_examples=examples(8))
@given(data=st.data())
def test_edge_values_are_accepted_or_refused_with_their_key(config: Path, data: Any) -> None:
    """A number at any numeric key (zero, negative, tiny, huge, NaN, inf) is either a valid setting or exits 2
    naming that key when the config is built: never an internal error later."""
    raw = yaml.safe_load(config.read_text())
    leaves = _numeric_leaves(raw, cfglib.SCHEMAS[raw["stage"]])
    if not leaves:
        return
    path = data.draw(st.sampled_from(leaves), label="key")
    value = data.draw(st.sampled_from(EDGE_VALUES), label="value")
    text = {float("nan"): ".nan", float("inf"): ".inf", -float("inf"): "-.inf"}.get(value, repr(value))
    with at_root():
        result = show(config.relative_to(ROOT), "--", f"{'.'.join(path)}={text}")
    assert result.exit_code in (0, 2), (result.exit_code, result.stderr, result.exception)
    if result.exit_code == 2:
        assert_refused(result, path, config.parent.name == "pipeline")
