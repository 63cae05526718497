"""Progress in logs: plain lines when stderr is not a terminal (CI, nohup), not a redrawn bar."""

from __future__ import annotations

import io
import json

from rewardlab import progress


def test_plain_progress_prints_periodic_lines_and_a_last_one():
    out = io.StringIO()
    bar = progress.PlainProgress(10, "train rm", unit="steps", interval=0.0, stream=out)
    bar.update(4)
    bar.set_postfix(loss="0.5000")
    bar.update(6)
    bar.close()
    bar.close()  # idempotent
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("train rm: 4/10 steps (40%), ") and "eta " in lines[0]
    assert lines[1].startswith("train rm: 10/10 steps (100%)") and lines[1].endswith("loss=0.5000")
    assert "took " in lines[2] and "\r" not in out.getvalue()
    quiet = io.StringIO()
    bar = progress.PlainProgress(10, "x", interval=3600.0, stream=quiet)
    bar.update(3)
    assert quiet.getvalue() == ""  # within the interval: nothing yet
    bar.close()
    assert quiet.getvalue().startswith("x: 3/10 it (30%)")


def test_bar_is_plain_when_stderr_is_not_a_terminal(monkeypatch):
    monkeypatch.delenv("DISABLE_TQDM", raising=False)
    monkeypatch.setattr(progress, "interactive", lambda: False)
    assert isinstance(progress.bar(5, "ppo"), progress.PlainProgress)
    monkeypatch.setenv("DISABLE_TQDM", "1")
    assert not isinstance(progress.bar(5, "ppo"), progress.PlainProgress)


def test_data_import_prints_progress_lines_into_a_log(tmp_path, cli, monkeypatch):
    monkeypatch.delenv("DISABLE_TQDM", raising=False)
    monkeypatch.setenv("REWARDLAB_PROGRESS_SECONDS", "0")
    src = tmp_path / "a.jsonl"
    rec = {"prompt": "q", "responses": ["a", "b"], "ranks": [1, 2]}
    src.write_text("".join(json.dumps({**rec, "prompt": f"q{i}"}) + "\n" for i in range(20)))
    res = cli("data", "import", src, "--out", tmp_path / "ds", "--json")
    assert res.exit_code == 0, res
    assert res.json()["accepted"] == 20  # stdout holds only the JSON
    lines = [x for x in res.stderr.splitlines() if x.startswith("importing: ")]
    assert lines and "(100%)" in lines[-1] and "took " in lines[-1]
