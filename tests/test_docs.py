"""The docs cannot drift from the code: every `rewardlab ...` line in README.md and docs/ parses against the real
command tree, every config key they name exists, every relative link resolves, the config reference is the one
the schema generates, and the README stays a short front door."""

from __future__ import annotations

import importlib.util
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer

from rewardlab import config as cfglib
from rewardlab.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
README_MAX_CHARS = 12_000

# The sections a config key can start with (a dotted key in backticks starting with one of these is a key).
# Dotted names in backticks that start like a config key but name something else.
NOT_KEYS = {"data.meta.task"}  # a Label Studio task's data field (docs/simulate.md)
SECTIONS = (
    "model",
    "data",
    "train",
    "tracking",
    "loss",
    "ppo",
    "dpo",
    "sft",
    "online",
    "thresholds",
    "noisy_bt",
)


def _gen_module():
    spec = importlib.util.spec_from_file_location("gen_config_docs", ROOT / "scripts" / "gen_config_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@cache
def all_keys() -> frozenset[str]:
    gen = _gen_module()
    keys = set()
    for stage, schema in cfglib.SCHEMAS.items():
        keys.update(k for k, *_ in gen.rows(schema, stage, default_obj=schema()))
    return frozenset(keys)


def command_lines(text: str) -> list[tuple[str, bool]]:
    """(command after `rewardlab`, from a code block) for every rewardlab invocation in a markdown page."""
    out = []
    in_block = False
    pending = ""
    for raw in text.splitlines():
        if raw.strip().startswith("```"):
            in_block = not in_block
            pending = ""
            continue
        if in_block:
            line = pending + raw.strip()
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            line = re.sub(r"\s+#\s.*$", "", line)  # a trailing shell comment
            m = re.search(r"(?:^|\s|\()(?:rewardlab|-m rewardlab(?:\.cli)?)\s+(.*)$", line)
            if m and not line.lstrip().startswith("#"):
                out.append((m.group(1).strip(), True))
        else:
            for code in re.findall(r"`(rewardlab [^`]+)`", raw):
                out.append((code.removeprefix("rewardlab ").strip(), False))
    return out


def _is_placeholder(token: str) -> bool:
    """A syntax placeholder (CONFIG, RUN_DIR, [key=value ...], a|b choices), not a value to parse."""
    return (
        bool(re.fullmatch(r"[A-Z][A-Z_.]*", token)) or token.startswith("[") or "..." in token or "|" in token
    )


def resolve(tokens: list[str]) -> tuple[Any, list[str], str]:
    """Walk the command tree (typer's vendored click, so duck-typed): (leaf command, its arguments, its path)."""
    cmd = root_command()
    path: list[str] = []
    while hasattr(cmd, "list_commands"):
        if not tokens or tokens[0].startswith("<"):  # `rewardlab raters`, `rewardlab <command> --help`
            return cmd, tokens[1:], " ".join(path)
        if tokens[0].startswith("-"):
            break  # a group option (--help): checked below like any option
        name = tokens.pop(0)
        for alt in name.split("|"):  # `train sft|rm|dpo`: every alternative must exist
            assert alt in cmd.commands, f"`rewardlab {' '.join([*path, alt])}`: no such command"
        path.append(name)
        cmd = cmd.commands[name.split("|")[0]]
    return cmd, tokens, " ".join(path)


@cache
def root_command() -> Any:
    return typer.main.get_command(app)


def _options(cmd: Any) -> set[str]:
    return {"--help"} | {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}


def _stage_for(path: str, params: dict) -> tuple[str | None, str | None]:
    """(stage, config path) of a command that reads a config, else (None, None)."""
    if path.startswith("train "):
        return path.split()[1], params.get("config")
    if path in ("sample", "pipeline"):
        return path, params.get("config")
    if path.startswith("raters "):
        return "raters", params.get("config")
    if path == "config show":
        return None, params.get("config")
    return None, None


def check_command(line: str, full: bool) -> None:
    tokens = shlex.split(line)
    cmd, args, path = resolve(tokens)
    for tok in args:
        if tok.startswith("--"):
            opt = tok.split("=", 1)[0]
            assert opt in _options(cmd), f"`rewardlab {path}` has no option {opt}"
    if not full or "|" in path or hasattr(cmd, "list_commands") or any(_is_placeholder(t) for t in args):
        return
    ctx = cmd.make_context(f"rewardlab {path}", list(args), resilient_parsing=False)
    stage, cfg_path = _stage_for(path, ctx.params)
    overrides = [o for o in (ctx.params.get("overrides") or []) if "=" in o]
    if stage is None and cfg_path is None:
        return
    p = ROOT / cfg_path if cfg_path else None
    if p is not None and not p.is_file():
        p = None  # a user's own file: check the overrides against the stage's schema alone
    if stage is None and p is None:
        return
    cfglib.load(p, overrides, stage=stage)


def _lines(page: Path) -> list[tuple[str, bool]]:
    return command_lines(page.read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_line_parses(page: Path) -> None:
    lines = _lines(page)
    bad = []
    for line, full in lines:
        try:
            check_command(line, full)
        except Exception as exc:  # any failure to parse, whatever click copy raised it
            bad.append(f"rewardlab {line}\n    -> {exc}")
    assert not bad, f"{page.name}: {len(bad)} command line(s) do not parse:\n" + "\n".join(bad)


def test_command_lines_are_found() -> None:
    """The extractor itself: the README's tour has a dozen commands, all checked in full."""
    lines = _lines(ROOT / "README.md")
    assert sum(full for _, full in lines) >= 10


def test_a_wrong_command_line_is_caught() -> None:
    with pytest.raises(AssertionError, match="no such command"):
        check_command("trian rm configs/rm/tiny.yaml", True)
    with pytest.raises(AssertionError, match="has no option"):
        check_command("data import x.jsonl --outt d", True)
    with pytest.raises(cfglib.ConfigError, match="train.lrr"):
        check_command("train rm configs/rm/tiny.yaml train.lrr=1e-5", True)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_config_key_mentioned_exists(page: Path) -> None:
    keys = all_keys()
    text = page.read_text(encoding="utf-8")
    missing = []
    for code in re.findall(r"`([a-z_]+(?:\.[a-z_0-9]+)+)(?:=[^`]*)?`", text):
        if code.split(".")[0] in SECTIONS and code not in keys and code not in NOT_KEYS:
            missing.append(code)
    assert not missing, f"{page.name} names config keys that do not exist: {sorted(set(missing))}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://|mailto:|#", target):
            continue
        path = target.split("#", 1)[0]
        if path and not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


def test_readme_is_a_short_front_door() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text) <= README_MAX_CHARS, f"README.md is {len(text)} characters (at most {README_MAX_CHARS})"
    assert "make quickstart" in text and "make test" in text
    for page in DOCS:  # every docs page is reachable from the README
        assert f"docs/{page.name}" in text, f"README.md does not link docs/{page.name}"
    assert "TODO" not in text and "FEATURE_TABLE" not in text


def test_config_reference_is_current() -> None:
    gen = _gen_module()
    assert (ROOT / "docs" / "configs.md").read_text(encoding="utf-8") == gen.render(), (
        "docs/configs.md is stale: run python scripts/gen_config_docs.py"
    )
