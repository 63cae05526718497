"""Benchmark `data validate` and `data import` on 100k and 1M pairwise judgments (canonical JSONL).

Target (issue 3): 1M judgments imported and validated in <= 30 s and <= 2 GB peak RSS on a 2-core machine,
with cost growing linearly. Each run happens in its own process so its peak RSS is its own; the RSS is the
peak of the whole process tree (the importer's worker processes included), sampled every 20 ms.

Peer: Hugging Face `datasets.load_dataset("json")` on the same file, which parses with pyarrow's
multithreaded C++ JSON reader and writes an Arrow cache but checks nothing. The ratio column says what the
record-by-record validation, quarantine and dataset writing cost on top of bare parsing.

    .venv/bin/python scripts/bench_data.py                 # 100k and 1M
    .venv/bin/python scripts/bench_data.py --sizes 20000   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

TASKS = ("validate", "import", "peer:datasets.json")

CHILD = r"""
import json, sys, time
task, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
if task == "validate":
    from rewardlab.data import importing
    report = importing.run([path])
    n = report.accepted
    assert report.read == n, report.to_json()
elif task == "import":
    from rewardlab.data import importing
    report = importing.import_paths([path], out)
    n = report.accepted
    assert report.read == n, report.to_json()
else:
    from datasets import load_dataset
    n = len(load_dataset("json", data_files=path, split="train", cache_dir=out + ".hfcache"))
print(json.dumps({"seconds": time.perf_counter() - t0, "records": n}))
"""


def generate(path: Path, n: int, seed: int = 0) -> None:
    """n pairwise judgments: 1 prompt per 4 judgments, 100 raters, a third of them ties."""
    rnd = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            a, b = rnd.randint(1, 999), rnd.randint(1, 999)
            rec = {
                "id": f"j-{i:08d}",
                "prompt": f"Question {i // 4}: what is {a} plus {b}? Explain briefly.",
                "responses": [
                    f"The answer is {a + b}, since {a} + {b} = {a + b}.",
                    f"I think it is {a + b + 1}.",
                ],
                "ranks": rnd.choice([[1, 2], [2, 1], [1, 1]]),
                "rater": f"r-{rnd.randint(0, 99):03d}",
                "time_s": round(rnd.uniform(5, 90), 1),
            }
            f.write(json.dumps(rec) + "\n")


def run_child(task: str, data: Path, out: Path) -> dict:
    """Run one task in a fresh process; return its own timing, the CPU seconds of its process tree (user +
    system, worker processes included: a measure of work that other processes' load does not inflate much)
    and the peak RSS of its process tree."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, task, str(data), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        try:
            root = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while not stop.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    stdout, stderr = proc.communicate()
    stop.set()
    thread.join()
    if proc.returncode != 0:
        raise SystemExit(f"{task} on {data} failed (exit {proc.returncode}):\n{stderr[-2000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = peak / 2**20
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument(
        "--workdir", default=None, help="Where the generated files go (default: a temp folder)."
    )
    parser.add_argument("--keep", action="store_true", help="Keep the generated files and datasets.")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-data-"))
    work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    print(f"cores: {os.cpu_count()}  load average at start: {load:.2f}  workdir: {work}")

    rows, seconds = [], {}
    for size in args.sizes:
        data = work / f"judgments-{size}.jsonl"
        if not data.exists():
            t0 = time.perf_counter()
            generate(data, size)
            print(
                f"generated {size} judgments ({data.stat().st_size / 2**20:.0f} MB) in {time.perf_counter() - t0:.1f} s"
            )
        results = {}
        for task in TASKS:
            out = work / f"ds-{size}-{task.split(':')[0]}"
            results[task] = run_child(task, data, out)
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(str(out) + ".hfcache", ignore_errors=True)
        peer = results["peer:datasets.json"]["seconds"]
        for task, r in results.items():
            assert r["records"] == size, (task, r)
            seconds[(task, size)] = r["seconds"]
            rows.append(
                (
                    size,
                    task,
                    r["seconds"],
                    size / r["seconds"],
                    r["cpu_seconds"],
                    r["peak_rss_mb"],
                    r["seconds"] / peer,
                )
            )

    print()
    print(
        f"{'records':>9}  {'task':<20} {'seconds':>8} {'records/s':>11} {'CPU s':>7} {'peak RSS MB':>12} {'x peer':>7}"
    )
    for size, task, sec, rate, cpu, rss, ratio in rows:
        print(f"{size:>9}  {task:<20} {sec:>8.2f} {rate:>11,.0f} {cpu:>7.1f} {rss:>12.0f} {ratio:>7.2f}")
    if len(args.sizes) >= 2:
        small, big = min(args.sizes), max(args.sizes)
        print()
        for task in TASKS:
            ratio = seconds[(task, big)] / seconds[(task, small)]
            print(
                f"linearity {task:<20} time({big})/time({small}) = {ratio:.1f} (x{big / small:.0f} records)"
            )
    big = max(args.sizes)
    if big >= 1_000_000:
        imp = next(r for r in rows if r[0] == big and r[1] == "import")
        verdict = "meets" if imp[2] <= 30 * big / 1_000_000 and imp[5] <= 2048 else "MISSES"
        print(
            f"\ntarget (1M import <= 30 s, <= 2 GB): {verdict} ({imp[2]:.1f} s wall, {imp[4]:.1f} CPU s over "
            f"2 parser processes, {imp[5]:.0f} MB)"
        )
    print(
        f"load average at end: {os.getloadavg()[0]:.2f} (other processes share these cores; "
        f"numbers are noisy when it is above {os.cpu_count()})"
    )
    if not args.keep and not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
