"""One small tracking interface: metrics.jsonl always, plus wandb, trackio or tensorboard when asked.

Why always JSONL: the run folder must be comparable (``rewardlab compare``) and scriptable with no
service at all. wandb runs online only when a key is configured; otherwise it runs offline and we print
the ``wandb sync`` command, so a missing key never hangs or fails a run. trackio (TRL's recommended local
dashboard) and tensorboard need no account and no network: trackio keeps every run of a project in one
local database (``trackio show``), tensorboard writes event files under ``<run>/tensorboard``.

Steps: wandb refuses a step lower than one it has seen (a table logged first would move it to 1 and drop
a later ``step=0``). We log our step as the ``step`` metric and make it every metric's x-axis
(``define_metric``), so wandb's own counter never decides what is kept. The run's ``job_type`` is its stage.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any


def _clean(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def wandb_has_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


class Tracker:
    """Logs step metrics to ``<run>/metrics.jsonl`` and, optionally, to wandb."""

    def __init__(
        self,
        run_dir: str | Path,
        backend: str = "jsonl",
        config: dict | None = None,
        project: str = "rewardlab",
        entity: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
        name: str | None = None,
        resume: bool = False,
        job_type: str | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "metrics.jsonl"
        self._file = self.path.open("a" if resume else "w", encoding="utf-8")
        self.wandb_run = None
        self.trackio_run = None
        self.tb_writer = None
        self.backend = backend
        self._last_step = 0
        config = config or {}
        job_type = job_type or (config.get("stage") if isinstance(config, dict) else None) or None
        if backend == "wandb":
            self._start_wandb(config, project, entity, group, tags or [], name, job_type)
        elif backend == "trackio":
            self._start_trackio(config, project, group, name, job_type)
        elif backend == "tensorboard":
            self._start_tensorboard(config, job_type)

    def _start_trackio(self, config, project, group, name, job_type) -> None:
        try:
            import trackio
        except ImportError:
            from rewardlab.errors import UserError

            raise UserError(
                "tracking.backend trackio needs the trackio package: pip install trackio"
            ) from None
        from rewardlab.redact import redact

        with contextlib.redirect_stdout(sys.stderr):  # trackio prints; stdout belongs to --json
            self.trackio_run = trackio.init(
                project=project,
                name=redact(name or self.run_dir.name),
                group=group or job_type,
                config=redact({**config, "job_type": job_type}),
                resume="allow",
                embed=False,
                auto_log_gpu=False,
                auto_log_cpu=False,
            )

    def _start_tensorboard(self, config, job_type) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            from rewardlab.errors import UserError

            raise UserError(
                "tracking.backend tensorboard needs the tensorboard package: pip install tensorboard"
            ) from None
        from rewardlab.redact import redact

        self.tb_writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))
        self.tb_writer.add_text(
            "config", "```json\n" + json.dumps(redact(config), indent=1, default=str) + "\n```"
        )
        if job_type:
            self.tb_writer.add_text("job_type", job_type)

    def _start_wandb(self, config, project, entity, group, tags, name, job_type=None) -> None:
        import wandb

        from rewardlab.redact import redact, redact_argv

        mode = os.environ.get("WANDB_MODE") or ("online" if wandb_has_key() else "offline")
        # wandb records sys.argv in the run metadata (offline .wandb file and the web UI): give it the
        # redacted command line while it starts, as manifest.json gets. The config payload is redacted too.
        argv = sys.argv
        sys.argv = redact_argv(argv)
        try:
            self.wandb_run = wandb.init(
                project=project,
                entity=entity,
                group=group,
                tags=redact(tags),
                name=redact(name or self.run_dir.name),
                config=redact(config),
                job_type=job_type,
                dir=str(self.run_dir),
                mode=mode,
                reinit="finish_previous",
                settings=wandb.Settings(silent=True, init_timeout=60),
            )
        finally:
            sys.argv = argv
        self.wandb_run.define_metric("step")
        self.wandb_run.define_metric("*", step_metric="step")

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        row = {k: _clean(v) for k, v in metrics.items()}
        if step is not None:
            row = {"step": step, **row}
        row.setdefault("time", round(time.time(), 3))
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if step is not None:
            self._last_step = step
        numbers = {k: v for k, v in row.items() if k not in ("step", "time") and _is_number(v)}
        at = self._last_step if step is None else step
        if self.wandb_run is not None:
            self.wandb_run.log({**{k: v for k, v in row.items() if k not in ("step", "time")}, "step": at})
        if self.trackio_run is not None and numbers:
            with contextlib.redirect_stdout(sys.stderr):
                self.trackio_run.log(numbers, step=at)
        if self.tb_writer is not None:
            for k, v in numbers.items():
                self.tb_writer.add_scalar(k, v, global_step=at)

    def log_table(self, name: str, rows: list[dict[str, Any]]) -> None:
        """A table (policy samples, rater stats): a wandb Table, and ``<run>/<name>.jsonl`` locally."""
        with (self.run_dir / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, default=str) + "\n")
        if self.wandb_run is not None and rows:
            import wandb

            cols = list(rows[0])
            table = wandb.Table(columns=cols, data=[[str(r.get(c)) for c in cols] for r in rows])
            self.wandb_run.log({name: table, "step": self._last_step})
        if self.tb_writer is not None and rows:
            cols = list(rows[0])
            lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            lines += [
                "| " + " | ".join(str(r.get(c)).replace("|", "/")[:300] for c in cols) + " |"
                for r in rows[:50]
            ]
            self.tb_writer.add_text(name, "\n".join(lines), global_step=self._last_step)

    def summary(self, metrics: dict[str, Any]) -> None:
        if self.wandb_run is not None:
            for k, v in metrics.items():
                if isinstance(_clean(v), (int, float, str)):
                    self.wandb_run.summary[k] = _clean(v)

    def finish(self) -> None:
        self._file.close()
        if self.trackio_run is not None:
            from trackio import context_vars

            with contextlib.redirect_stdout(sys.stderr):
                self.trackio_run.finish()
            if context_vars.current_run.get() is self.trackio_run:  # else trackio's atexit finishes it again
                context_vars.current_run.set(None)
            self.trackio_run = None
        if self.tb_writer is not None:
            self.tb_writer.close()
            self.tb_writer = None
        if self.wandb_run is not None:
            offline = self.wandb_run.settings.mode == "offline"
            run_dir = getattr(self.wandb_run.settings, "sync_dir", None)
            self.wandb_run.finish()
            if offline and run_dir:
                print(f"wandb: offline run saved; upload with: wandb sync {run_dir}", file=sys.stderr)
            self.wandb_run = None


class NullTracker:
    """What the non-main processes of a multi-process run get: the Tracker's methods, doing nothing.

    Why: every process running a stage would otherwise open the same metrics.jsonl (rows written N times,
    or truncated by a late starter) and start N wandb/trackio runs for one training run."""

    backend = "none"

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        pass

    def log_table(self, name: str, rows: list[dict[str, Any]]) -> None:
        pass

    def summary(self, metrics: dict[str, Any]) -> None:
        pass

    def finish(self) -> None:
        pass


def is_main_process() -> bool:
    """Global rank 0 (``RANK`` from torchrun / accelerate launch), or a plain single process. Read from the
    launcher's environment, so it works before accelerate or the process group starts."""
    return int(os.environ.get("RANK", "0")) == 0


def open_tracker(
    tracking_cfg,
    run_dir: str | Path,
    config: dict | None = None,
    resume: bool = False,
    main: bool | None = None,
) -> Tracker | NullTracker:
    """Build a Tracker from a ``TrackingConfig`` section; a ``NullTracker`` on a non-main process
    (``main`` None: ``is_main_process()``)."""
    if not (is_main_process() if main is None else main):
        return NullTracker()
    return Tracker(
        run_dir,
        backend=tracking_cfg.backend,
        config=config,
        project=tracking_cfg.project,
        entity=tracking_cfg.entity,
        group=tracking_cfg.group,
        tags=list(tracking_cfg.tags),
        name=tracking_cfg.run_name,
        resume=resume,
    )
