"""The run folder contract (docs/design.md, "Run folder"): config.yaml, manifest.json, metrics, model/, checkpoints/.

Why atomic writes: a killed run must never leave a checkpoint that looks complete. Every checkpoint is
written into ``<name>.tmp`` and renamed; a ``COMPLETE`` marker inside is the last file written, and the
first one removed before a checkpoint is deleted. Also here: the writability probe and the one-line error
for a full or unwritable disk, and the stop on a non-finite loss (both name the run folder's paths).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import platform
import secrets
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from rewardlab.config import fingerprint
from rewardlab.errors import UserError
from rewardlab.redact import redact, redact_argv

PACKAGES = (
    "rewardlab",
    "torch",
    "transformers",
    "trl",
    "datasets",
    "accelerate",
    "peft",
    "crowd-kit",
    "wandb",
)


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_sha() -> str | None:
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON to a temporary name unique to this process and call, then rename it into place: two
    writers (processes of one launch, a pipeline and an eval) never interleave or remove each other's file."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=2, default=str))
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def is_main_process() -> bool:
    """Global rank 0 under torchrun / accelerate launch (``RANK``), or a single process: the one that
    writes the run folder (config, manifest, metrics, model)."""
    return int(os.environ.get("RANK", "0")) == 0


def prepare_run(cfg, extra_manifest: dict[str, Any] | None = None, run_dir: str | Path | None = None) -> Path:
    """Create the run folder, write the resolved config.yaml and manifest.json; return the folder.

    Secrets never land here: secret-named config values and the values of secret environment variables are
    masked as *** in config.yaml, manifest.json and the recorded command line (rewardlab/redact.py).
    On a non-main process of a multi-process launch it writes nothing and returns the folder.
    """
    out = Path(run_dir or cfg.output_dir)
    if not is_main_process():
        return out
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(redact(cfg.model_dump(mode="json")), sort_keys=False))
    update_manifest(
        out,
        {
            "stage": getattr(cfg, "stage", None),
            "config_fingerprint": fingerprint(cfg),
            "packages": package_versions(),
            "git_sha": git_sha(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "command": " ".join(redact_argv(sys.argv)),
            **(extra_manifest or {}),
        },
    )
    return out


def update_manifest(run_dir: str | Path, fields: dict[str, Any]) -> dict[str, Any]:
    path = Path(run_dir) / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {}
    manifest.update(redact(fields))
    write_json_atomic(path, manifest)
    return manifest


def write_metrics(run_dir: str | Path, metrics: dict[str, Any]) -> None:
    """``<run>/metrics.json``, from the main process only (a no-op on the others)."""
    if is_main_process():
        write_json_atomic(Path(run_dir) / "metrics.json", metrics)


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:08d}"


def begin_checkpoint(run_dir: str | Path, step: int) -> Path:
    """A fresh temporary folder to write a checkpoint into; pass it to ``commit_checkpoint``."""
    tmp = checkpoint_dir(run_dir, step).with_suffix(".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def commit_checkpoint(tmp: Path, keep: int = 2) -> Path:
    """Mark ``tmp`` COMPLETE, rename it to its final name, and delete all but the ``keep`` newest.

    A folder being replaced or deleted loses its COMPLETE marker first (or is renamed away in one step), so
    a kill inside ``rmtree`` never leaves a half-deleted checkpoint that still looks complete.
    """
    (tmp / "COMPLETE").write_text("ok\n")
    final = tmp.with_suffix("")
    if final.exists():
        old = final.with_suffix(".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        shutil.rmtree(old)
    os.replace(tmp, final)
    for stale in complete_checkpoints(final.parent)[:-keep]:
        remove_checkpoint(stale)
    return final


def remove_checkpoint(folder: Path) -> None:
    """Delete a checkpoint folder, its COMPLETE marker first."""
    with contextlib.suppress(FileNotFoundError):
        (folder / "COMPLETE").unlink()
    shutil.rmtree(folder, ignore_errors=True)


def complete_checkpoints(root: Path) -> list[Path]:
    """``step-N`` folders with their COMPLETE marker, oldest first (``.tmp``/``.old`` never count)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if p.suffix == "" and (p / "COMPLETE").is_file())


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint (ignores half-written ``.tmp`` folders)."""
    done = complete_checkpoints(Path(run_dir) / "checkpoints")
    return done[-1] if done else None


def trim_metrics_log(run_dir: str | Path, step: int) -> None:
    """On resume: drop metrics.jsonl rows after the checkpoint's step (the resumed run logs them again),
    and a row torn by the kill (half a line of JSON)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and row.get("step", 0) <= step:
            keep.append(line)
    path.write_text("".join(line + "\n" for line in keep))


# ---------------------------------------------------------------- disk errors

# errno values that mean "this folder cannot take our files": reported as one line, exit 2 (not a crash)
WRITE_ERRNOS = {
    errno.ENOSPC: "No space left on device",
    errno.EDQUOT: "Disk quota exceeded",
    errno.EACCES: "Permission denied",
    errno.EPERM: "Operation not permitted",
    errno.EROFS: "Read-only file system",
    errno.ENOTDIR: "Not a directory",
    errno.EISDIR: "Is a directory",
}


# The run folder this process last probed: the path named when a failed write() reports no file name
# (commands/apps.py handle_errors, for saves made inside libraries such as a TRL trainer's checkpoints).
_last_run_dir: Path | None = None


def last_run_dir() -> Path | None:
    return _last_run_dir


class WriteError(UserError):
    """A save failed because of the disk, not the code: ``cannot write <path>: <reason>``."""

    def __init__(self, path: str | Path, err: int):
        super().__init__(f"cannot write {path}: {WRITE_ERRNOS.get(err) or os.strerror(err)}")
        self.path, self.errno = str(path), err


def check_writable(output_dir: str | Path) -> Path:
    """Create the run folder and write/remove a probe file in it, before any model is loaded.

    Why: a run on a full or read-only disk should fail in a second with one clear line, not after an
    hour of training when the first checkpoint is written. Each process uses its own probe name.
    """
    global _last_run_dir
    out = Path(output_dir)
    _last_run_dir = out
    probe = out / f".write-probe-{os.getpid()}"
    with writing(out):
        if out.exists() and not out.is_dir():
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(out))
        out.mkdir(parents=True, exist_ok=True)
        with probe.open("w") as fh:
            fh.write("rewardlab write probe\n")
            fh.flush()
            os.fsync(fh.fileno())
        probe.unlink()
    return out


@contextlib.contextmanager
def writing(path: str | Path):
    """Turn a disk-full / permission / not-a-directory OSError raised inside into a ``WriteError``.

    The path named is the file the OS reported, else ``path`` (a failed ``write()`` names no file).
    """
    try:
        yield
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        raise WriteError(exc.filename or path, exc.errno) from exc


# ---------------------------------------------------------------- non-finite losses


class NonFiniteError(UserError):
    """A loss, reward or gradient norm that is nan or inf: the run stops before the optimizer step."""


def stop_on_nonfinite(stage: str, what: str, value: float, step: int, last_checkpoint: Any) -> None:
    """Raise ``NonFiniteError`` when ``value`` is nan/inf. The message names the step and the newest
    complete checkpoint (the one to resume from, perhaps with a lower ``train.lr``); callers pass it, or a
    function finding it (looked up only on failure: this runs every step), because our loops (``step-N``)
    and TRL (``checkpoint-N``) name checkpoints differently."""
    if math.isfinite(value):
        return
    if callable(last_checkpoint):
        last_checkpoint = last_checkpoint()
    where = (
        str(last_checkpoint) if last_checkpoint else "none (no checkpoint written yet; see train.save_every)"
    )
    raise NonFiniteError(
        f"train {stage}: {what} is {value} at step {step}; stopped; last good checkpoint: {where}"
    )


def first_nonfinite_weight(named_parameters: Any) -> str | None:
    """The name of the first parameter holding nan/inf, else None: checked before every save so no
    checkpoint or model is written from diverged weights (e.g. an lr so high the update overflows). All
    parameters, not only trainable ones: a merged LoRA model has none left that require grad."""
    import torch

    for name, param in named_parameters:
        if not bool(torch.isfinite(param).all()):
            return name
    return None


def clear_stale_checkpoints(run_dir: str | Path) -> int:
    """Remove an earlier run's checkpoints when a fresh run (``train.resume=false``) starts in its folder.

    Why: rotation keeps the highest steps and resume takes the newest, so an old run's step-100 would
    outlive this run's step-2 and a later ``resume=true`` would continue the wrong run. Returns how many
    checkpoint folders were removed (the caller says so on stderr); call on the main process only.
    """
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return 0
    old = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(("step-", "checkpoint-"))]
    for folder in old:
        remove_checkpoint(folder)
    if old:
        print(
            f"removed {len(old)} checkpoint folder(s) of an earlier run from {root} (train.resume=false)",
            file=sys.stderr,
        )
    return len(old)


# ---------------------------------------------------------------- the checkpoint protocol (rm, ppo)
#
# One layout for every loop of ours: `step-N/` holds the stage's weights (written by the stage), plus
#   optimizer.pt, scheduler.pt     torch state dicts, read back with weights_only=True
#   rng_state_<rank>.pt            every RNG a process draws from: torch CPU and CUDA, Python, NumPy
#   trainer_state.json             step, world_size, config_fingerprint, and the stage's own counters
# One rule for a changed process count: refused (the data order and RNG streams are per process).
# One rotation: the newest `keep` complete checkpoints stay.

STATE_FILE = "trainer_state.json"


def rng_state() -> dict[str, Any]:
    """Every RNG state of this process, as tensors and plain containers (loadable with weights_only=True)."""
    import random

    import numpy as np
    import torch

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import random

    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        n = state["numpy"]
        keys = n["keys"].numpy().astype(np.uint32)
        np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    accelerator: Any,
    *,
    optimizer: Any,
    scheduler: Any,
    write_weights: Any,
    state: dict[str, Any],
    config_fingerprint: str,
    keep: int = 2,
    write_shards: Any = None,
) -> Path:
    """Write one checkpoint by the protocol above: into ``step-N.tmp`` on every process, then marked COMPLETE
    and renamed by the main process once all have finished. ``write_weights(folder)`` runs on the main
    process only and writes the stage's weights; ``state`` holds the stage's JSON counters.
    ``write_shards(folder)`` runs on EVERY process (sharded engines: each writes its shard of weights and
    optimizer, rewardlab.engines.save_state); ``optimizer=None`` then leaves optimizer.pt out."""
    import torch

    tmp = checkpoint_dir(run_dir, step).with_suffix(".tmp")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        begin_checkpoint(run_dir, step)
    accelerator.wait_for_everyone()
    torch.save(rng_state(), tmp / f"rng_state_{accelerator.process_index}.pt")
    if write_shards is not None:
        write_shards(tmp)
    if accelerator.is_main_process:
        write_weights(tmp)
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        info = {
            "step": step,
            "world_size": accelerator.num_processes,
            "config_fingerprint": config_fingerprint,
            **state,
        }
        (tmp / STATE_FILE).write_text(json.dumps(info, indent=1))
    accelerator.wait_for_everyone()
    final = tmp.with_suffix("")
    if accelerator.is_main_process:
        commit_checkpoint(tmp, keep=keep)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(
    ckpt: Path, accelerator: Any, *, optimizer: Any, scheduler: Any, config_fingerprint: str
) -> dict[str, Any]:
    """Restore optimizer, scheduler and this process's RNG from a checkpoint ``save_checkpoint`` wrote and
    return its JSON state (``step`` and the stage's counters); the stage loads its own weights. A checkpoint
    written by another number of processes is refused: each process's data share and RNG stream differ."""
    import torch

    path = ckpt / STATE_FILE
    if not path.is_file():
        raise UserError(
            f"{ckpt}: no {STATE_FILE} (written by an older rewardlab?); start afresh (train.resume=false)"
        )
    state = json.loads(path.read_text())
    if state.get("config_fingerprint") != config_fingerprint:
        print(f"warning: {ckpt}: the config differs from the checkpointed run's", file=sys.stderr)
    if state.get("world_size") != accelerator.num_processes:
        raise UserError(
            f"{ckpt}: written by {state.get('world_size')} process(es), resumed with {accelerator.num_processes}; "
            "resume with the same number of processes"
        )
    # Our own files, read with torch's safe unpickler (weights_only=True: tensors and plain containers only,
    # never arbitrary objects), so they need no model.allow_pickle; weights are safetensors.
    # map_location: tensors saved from cuda:0 load onto this process's own device (under DDP every rank
    # would otherwise put its optimizer state on the first GPU); RNG states must be CPU tensors.
    here = torch.device(getattr(accelerator, "device", "cpu"))
    here = "cpu" if here.type == "cpu" else here  # torch.load cannot restore onto "cpu:0" (MULTI_CPU's name)
    if optimizer is not None:  # None: a sharded engine's optimizer, restored with its weights
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True, map_location=here))
    scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=True, map_location="cpu"))
    rng_file = ckpt / f"rng_state_{accelerator.process_index}.pt"
    if not rng_file.is_file():
        raise UserError(f"{ckpt}: no {rng_file.name}")
    set_rng_state(torch.load(rng_file, weights_only=True, map_location="cpu"))
    return state


def resume_fingerprint(cfg: Any) -> str:
    """The config's fingerprint with train.resume ignored (a resumed run is the same run)."""
    return fingerprint(cfg.model_copy(update={"train": cfg.train.model_copy(update={"resume": False})}))
