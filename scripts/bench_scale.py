"""Cost growth with data size: simulate -> export -> import -> aggregate -> train a tiny RM, at 100k and 1M judgments.

    .venv/bin/python scripts/bench_scale.py                        # 100k and 1M judgments
    .venv/bin/python scripts/bench_scale.py --sizes 100000 --keep /tmp/scale   # keep the folders

Every stage runs in a fresh process, so its seconds, CPU seconds and peak RSS are its own (os.wait4 on the
child); all but the first are the real CLI (`rewardlab data export|data import|raters aggregate|train rm`).
The campaign comes from scripts/bench_raters.py's generator (pairwise, overlap 3, ~500 judgments per rater:
70% careful, 20% random clickers, 10% position-biased; 2% gold), because `rewardlab simulate` draws distinct
prompts from six task families that hold ~30k of them, fewer than the 333k a 1M-judgment campaign needs. The RM trains for a capped number of steps
(--rm-steps) and evaluates on a capped held-out split (--rm-eval-groups), so its row shows how the
data-dependent parts (reading, tokenizing, batching) grow, not how long an epoch takes.

The last table divides each stage's cost at the largest size by its cost at the smallest: 10x the data
should cost <= ~10x (linear) for every stage; a larger ratio points at a super-linear step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "rewardlab.cli"]


def run_stage(args: list[str], log: Path) -> dict:
    """Run one stage as a child process (the CLI, or the generator when ``args[0]`` is ``-c``); return wall
    seconds, CPU seconds, peak RSS and its --json."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    with open(log, "w") as err:
        cmd = [sys.executable, *args] if args[0] == "-c" else [*CLI, *args]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, cwd=ROOT, text=True)
        out = proc.stdout.read() if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"stage failed: {' '.join(args)}\n{log.read_text()[-3000:]}")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return {
        "seconds": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # KiB on Linux; includes its own children (parser processes)
        "json": json.loads(lines[-1]) if lines else {},
    }


def stages(size: int, work: Path, rm_steps: int, rm_eval_groups: int) -> list[tuple[str, list[str]]]:
    sim, export, ds, agg = work / "sim", work / "export.jsonl", work / "ds", work / "agg"
    generate = (
        f"import sys; sys.path.insert(0, 'scripts'); from pathlib import Path; "
        f"from bench_raters import generate; generate({size}, Path({str(sim)!r}))"
    )
    return [
        ("simulate", ["-c", generate]),
        ("export", ["data", "export", str(sim), "--to", "canonical", "--out", str(export)]),
        ("import", ["data", "import", str(export), "--out", str(ds), "--json"]),
        ("aggregate", ["raters", "aggregate", str(ds), "--out", str(agg), "--json"]),
        ("train rm", ["train", "rm", "configs/rm/tiny.yaml", f"data.train={agg}", f"output_dir={work / 'rm'}",
                      f"train.max_steps={rm_steps}", f"data.eval_fraction={rm_eval_groups / (size / 3):.6f}",
                      "heads=[overall]", "tracking.backend=none", "--json"]),
    ]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000", help="judgments per campaign, comma-separated")
    ap.add_argument("--rm-steps", type=int, default=50, help="optimizer steps of the tiny RM")
    ap.add_argument("--rm-eval-groups", type=int, default=2000, help="held-out groups the RM evaluates on")
    ap.add_argument("--keep", default=None, help="write the folders here and keep them")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[int, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.keep or tmp)
        for size in sizes:
            work = base / f"scale-{size}"
            work.mkdir(parents=True, exist_ok=True)
            results[size] = {}
            for name, cli_args in stages(size, work, args.rm_steps, args.rm_eval_groups):
                res = run_stage(cli_args, work / f"{name.replace(' ', '_')}.log")
                results[size][name] = res
                print(f"{size:>9,} {name:<10} {res['seconds']:>7.1f} s  {res['cpu_s']:>7.1f} CPU-s  "
                      f"{res['peak_rss_mb']:>6.0f} MB  {json.dumps(res['json'])[:160]}", file=sys.stderr)  # fmt: skip
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (2 cores; wall seconds grow with load)\n")
    print(f"{'judgments':>10} | {'stage':<10} | {'wall s':>7} | {'CPU s':>7} | {'peak RSS MB':>11} | note")
    print("-" * 80)
    for size, by_stage in results.items():
        for name, res in by_stage.items():
            note = ""
            if name == "import":
                note = f"{res['json'].get('accepted', '?'):,} records" if res["json"] else ""
            if name == "aggregate":
                note = f"{res['json'].get('groups', '?'):,} groups, {res['json'].get('judgments_excluded', '?'):,} excluded"
            if name == "train rm":
                note = f"{args.rm_steps} steps, acc {res['json'].get('accuracy', float('nan')):.3f}"
            print(f"{size:>10,} | {name:<10} | {res['seconds']:>7.1f} | {res['cpu_s']:>7.1f} | "
                  f"{res['peak_rss_mb']:>11.0f} | {note}")  # fmt: skip
    if len(sizes) > 1:
        lo, hi = min(sizes), max(sizes)
        print(f"\ngrowth from {lo:,} to {hi:,} judgments ({hi / lo:.0f}x the data)")
        print(f"{'stage':<10} | {'wall':>7} | {'CPU':>7} | {'peak RSS':>8}")
        print("-" * 42)
        for name in results[lo]:
            a, b = results[lo][name], results[hi][name]
            print(f"{name:<10} | {b['seconds'] / a['seconds']:>6.1f}x | {b['cpu_s'] / max(a['cpu_s'], 1e-9):>6.1f}x | "
                  f"{b['peak_rss_mb'] / a['peak_rss_mb']:>7.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
