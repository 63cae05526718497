"""`rewardlab compare`: terminal/JSON comparison, and the HTML report opened in headless Chromium.

The Chromium test installs Debian's `chromium` through scripts/ensure_chromium.sh when it is missing and
fails (never skips) when that is impossible: a report nobody can open is a bug.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--enable-logging=stderr",
    "--v=0",
]


def _write_run(path: Path, config: dict, metrics: dict | None, history: list[dict]) -> Path:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    (path / "manifest.json").write_text(json.dumps({"stage": config["stage"]}))
    if metrics is not None:
        (path / "metrics.json").write_text(json.dumps(metrics))
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    return path


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    """Two RM runs that differ in lr, one raters run, one policy run, a sample run, an active-learning run."""
    rm_cfg = {"stage": "rm", "output_dir": "x", "train": {"lr": 1e-3, "batch_size": 8}, "heads": ["overall"]}
    hist = [
        {"step": s, "loss": 0.7 - 0.05 * s, "accuracy": 0.5 + 0.03 * s, "lr": 1e-3 * (1 - s / 10),
         "grad_norm": 2.0 / s, "rankings": 8 * s}
        for s in range(1, 11)
    ]  # fmt: skip
    hist.insert(5, {"step": 5, "eval/loss": 0.55, "eval/accuracy": 0.7})  # eval during training
    hist.append({"step": 10, "eval/loss": 0.45, "eval/accuracy": 0.8})
    rm_a = _write_run(
        tmp_path / "rm-a",
        rm_cfg,
        {"accuracy": 0.81, "n_pairs": 40, "ece": 0.05, "accuracy_by_head": {"overall": 0.81}},
        hist,
    )
    _jsonl(
        rm_a / "eval_rewards.jsonl",
        [{"chosen": 0.5 + 0.1 * i, "rejected": -0.3 + 0.05 * i} for i in range(30)],
    )
    rm_cfg_b = {**rm_cfg, "train": {"lr": 5e-4, "batch_size": 8}}
    rm_b = _write_run(
        tmp_path / "rm-b",
        rm_cfg_b,
        {"accuracy": 0.74, "n_pairs": 40, "ece": 0.09},
        [{**h, "loss": h["loss"] + 0.1} if "loss" in h else h for h in hist],
    )
    _jsonl(
        rm_b / "eval_rewards.jsonl",
        [{"reward": 0.1 * i, "label": "chosen" if i % 2 else "rejected"} for i in range(20)],
    )
    raters = _write_run(tmp_path / "raters", {"stage": "raters", "method": "noisy-bt"}, {"alpha": 0.41}, [])
    report = {
        "alpha": 0.41,
        "agreement": 0.7,
        "raters": [
            {
                "rater": f"r-{i}",
                "items": 30,
                "agreement": 0.5 + 0.04 * i,
                "gold_accuracy": 0.9 - 0.1 * (i == 3),
                "position_bias": 0.5,
                "median_time_s": 20.0,
                "reliability": 0.8,
                "flagged": i == 3,
                "reasons": [],
            }
            for i in range(6)
        ],
    }
    (raters / "rater_report.json").write_text(json.dumps(report))
    policy = _write_run(
        tmp_path / "dpo",
        {"stage": "dpo", "train": {"lr": 1e-5}},
        {"rm_score_mean": 0.3, "win_rate_vs_ref": 0.6},
        [{"step": 1, "loss": 0.69}, {"step": 2, "loss": 0.6}],
    )
    _jsonl(
        policy / "samples.jsonl",
        [
            {"prompt": f"What is {i}+{i}? <b>bold</b>", "response": f"{2 * i}", "rm_score": 0.1 * i}
            for i in range(5)
        ],
    )
    al = _write_run(tmp_path / "al", {"stage": "active-learning"}, None, [])
    (al / "active_learning.json").write_text(
        json.dumps(
            {
                "target_accuracy": 0.7,
                "labels_to_target": {"random": 120, "uncertainty": 80},
                "strategies": {
                    "random": {
                        "labels": [40, 80, 120],
                        "accuracy_mean": [0.55, 0.63, 0.7],
                        "accuracy_std": [0.02, 0.02, 0.01],
                    },
                    "uncertainty": {
                        "labels": [40, 80, 120],
                        "accuracy_mean": [0.55, 0.7, 0.75],
                        "accuracy_std": [0.02, 0.03, 0.01],
                    },
                },
            }
        )
    )
    return [rm_a, rm_b, raters, policy, al]


def test_compare_json_lists_metrics_and_config_diff(cli, runs):
    res = cli("compare", *runs[:2], "--json")
    assert res.exit_code == 0, res
    out = res.json()
    assert [r["name"] for r in out["runs"]] == ["rm-a", "rm-b"]
    assert out["metrics"]["accuracy"] == [0.81, 0.74]
    assert out["metrics"]["accuracy_by_head.overall"] == [0.81, None]
    assert out["config_diff"] == {"train.lr": [1e-3, 5e-4]}  # output_dir is ignored, batch_size equal


def test_compare_table_and_bad_input(cli, runs, tmp_path):
    res = cli("compare", *runs[:2])
    assert res.exit_code == 0, res
    assert "train.lr" in res.stdout and "0.81" in res.stdout
    missing = cli("compare", str(tmp_path / "nope"))
    assert missing.exit_code == 2 and "no such run folder" in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = cli("compare", str(tmp_path / "empty"))
    assert empty.exit_code == 2 and "not a run folder" in empty.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metrics.json").write_text("{oops")
    broken = cli("compare", str(bad))
    assert broken.exit_code == 2 and "metrics.json:1" in broken.stderr


def ensure_chromium() -> str:
    res = subprocess.run(
        ["bash", str(ROOT / "scripts" / "ensure_chromium.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert res.returncode == 0, f"could not install chromium: {res.stderr[-2000:]}"
    return res.stdout.strip().splitlines()[-1]


def chromium(browser: str, page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}", *extra, page.resolve().as_uri()]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def console_messages(stderr: str) -> list[str]:
    """Console output and page errors that Chromium logs with --enable-logging=stderr."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def test_console_scan_catches_page_errors(tmp_path):
    """The error detector itself: a page that throws and loads a missing file must be caught."""
    browser = ensure_chromium()
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<html><body><img src="missing.png"><script>throw new Error("kaboom")</script></body></html>'
    )
    res = chromium(browser, bad, tmp_path, "--dump-dom")
    messages = console_messages(res.stderr)
    assert any("kaboom" in m for m in messages), res.stderr[-3000:]


def test_html_report_renders_in_headless_chromium(cli, runs, tmp_path):
    browser = ensure_chromium()
    out = tmp_path / "report" / "report.html"
    res = cli("compare", *runs, "--html", out, "--json")
    assert res.exit_code == 0, res
    assert res.json()["html"] == str(out)
    html = out.read_text()
    # self-contained: no scripts, no external resources of any kind
    for forbidden in ("<script", "<link", "src=", "href=", "@import", "url("):
        assert forbidden not in html, forbidden
    assert "&lt;b&gt;bold&lt;/b&gt;" in html  # sample text is escaped, not rendered as markup

    dom_run = chromium(browser, out, tmp_path, "--dump-dom")
    assert dom_run.returncode == 0, dom_run.stderr[-2000:]
    dom = dom_run.stdout
    assert console_messages(dom_run.stderr) == []
    plots = re.findall(r'<svg class="plot" data-kind="(\w+)" data-series="(\d+)" data-points="(\d+)"', dom)
    kinds = [k for k, _, p in plots if int(p) > 0]
    assert kinds.count("line") >= 5, plots  # rm-a, rm-b (loss, accuracy), dpo, active-learning, overlays
    assert kinds.count("histogram") == 2, plots  # chosen vs rejected for both RM runs
    raters = dom[dom.index(">Raters</h2>") :]
    raters = raters[: raters.index("<h2>")]
    assert raters.count("<svg") >= 3 and raters.count("<circle") + raters.count("<rect") >= 6  # rater charts
    assert "r-3" in raters
    assert all(int(p) > 0 for k, _, p in plots if k != "empty"), plots
    assert len(re.findall(r'<polyline points="[\d., ]+"', dom)) >= 10
    assert re.search(r'data-name="chosen" data-count="\d+"', dom)
    assert "held-out RM accuracy vs labels" in dom and "uncertainty" in dom
    assert "r-3" in dom and "What is 3+3?" in dom
    # a run dashboard: held-out curves over steps apart from training-batch numbers, lr and grad norm
    titles = re.findall(r'<svg class="plot"[^>]* aria-label="([^"]+)"', dom)
    for title in ("rm-a: eval (held-out): accuracy", "rm-a: eval (held-out): loss", "rm-a: training: loss",
                  "rm-a: training batches: accuracy", "rm-a: optimizer: lr", "rm-a: optimizer: grad norm",
                  "eval/accuracy across runs (held-out)"):  # fmt: skip
        assert title in titles, (title, titles)
    assert 'data-name="accuracy (training batches)"' in dom
    assert not any("rankings" in t for t in titles)  # cumulative counters are not curves
    # final metrics: a delta against the first run, the best run starred and named
    assert re.search(r'data-metric="accuracy">0\.74 <span class="delta">\(Δ −0\.07\)</span></td>', dom)
    assert re.search(r'data-metric="accuracy">0\.81 <span class="best"', dom)
    assert re.search(r'data-metric="ece">0\.05 <span class="best"', dom)  # lower is better
    assert re.search(r'data-best-stage="rm">rm: <b>rm-a</b> \(accuracy 0\.81', dom)

    shot = tmp_path / "report.png"
    shot_run = chromium(
        browser, out, tmp_path, f"--screenshot={shot}", "--window-size=1200,2400", "--hide-scrollbars"
    )
    assert shot_run.returncode == 0, shot_run.stderr[-2000:]
    assert shot.stat().st_size > 20_000  # a blank page is ~5 KB
    # to look at it: REWARDLAB_KEEP_SCREENSHOT=/tmp/report.png
    if os.environ.get("REWARDLAB_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["REWARDLAB_KEEP_SCREENSHOT"])
    assert console_messages(shot_run.stderr) == []


def test_pipeline_folder_expands_into_its_stages(cli, tmp_path):
    root = tmp_path / "pipe"
    _write_run(root / "rm", {"stage": "rm", "train": {"lr": 1e-3}}, {"accuracy": 0.7}, [])
    _write_run(root / "dpo", {"stage": "dpo", "train": {"lr": 1e-5}}, {"win_rate_vs_ref": 0.6}, [])
    (root / "report").mkdir()
    (root / "report" / "metrics.json").write_text("{}")
    (root / "manifest.json").write_text(json.dumps({"stage": "pipeline", "stages": ["rm", "dpo", "report"]}))
    res = cli("compare", root, "--json")
    assert res.exit_code == 0, res
    out = res.json()
    assert [r["name"] for r in out["runs"]] == ["rm", "dpo"]
    assert out["metrics"]["accuracy"] == [0.7, None]
    table = cli("compare", root)
    assert "no two runs of the same stage" in table.stdout
