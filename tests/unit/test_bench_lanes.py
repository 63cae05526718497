"""scripts/bench_loop_real.py runs the loop's stages as subprocesses on lanes: a stage starts only once what it
needs has finished, a failed stage skips those that need it and no others, and two lanes run two at once."""

from __future__ import annotations

from pathlib import Path


def test_stages_run_in_dependency_order_and_a_failure_skips_only_its_dependents(
    tmp_path: Path, script
) -> None:  # noqa: ANN001
    bench = script("bench_loop_real")
    ok = ["--help"]
    bad = ["train", "rm", tmp_path / "missing.yaml"]  # a usage error: exit 2
    stages = [
        bench.Stage("first", ok),
        bench.Stage("broken", bad),
        bench.Stage("after-first", ok, ("first",)),
        bench.Stage("after-broken", ok, ("broken",)),
    ]
    order: list[str] = []

    def watch(stage, finished, running) -> bool:  # noqa: ANN001
        # the lanes are full when a third stage asks; a stage's needs are finished when it starts
        assert len(running) < 2
        assert all(n in finished for n in stage.needs)
        order.append(stage.name)
        return True

    timings = bench.run_stages(stages, 2, tmp_path / "logs", watch)
    assert timings["first"]["ok"] and timings["after-first"]["ok"]
    assert timings["broken"] == {"seconds": timings["broken"]["seconds"], "ok": False}
    assert timings["after-broken"]["ok"] is False and "after-broken" not in order  # skipped, never started
    assert order.index("after-first") > order.index("first")
    assert (tmp_path / "logs" / "broken.log").read_text().strip()  # the failure's output is kept
