"""`rewardlab pipeline`: run the stages a pipeline config names, in order, each in its own run folder.

Layout: ``<output_dir>/<name>/<stage>/`` per stage plus the pipeline's own config.yaml, manifest.json and
summary.json in ``<output_dir>/<name>/``. Each stage's config is a YAML path or an inline mapping (with an
optional ``base: path``), merged with the wiring the pipeline sets: data paths from the previous stages'
outputs, ``output_dir``, tracking group (the pipeline name) and tags. Wiring wins over a stage file's own
paths; a value written ``"@<stage>"`` in a stage mapping names another stage's output and wins over wiring
(e.g. ``sample: {policy: "@dpo"}``).

Skipping: a stage is skipped when its ``STAGE_COMPLETE`` marker holds the same config fingerprint and the
same input fingerprints (outputs of the stages it reads) and its outputs are there. An interrupted stage
(``STAGE_STARTED`` with the same fingerprints, no complete marker) resumes: train stages with
``train.resume=true`` from their newest complete checkpoint (rs, whose rounds are short, starts again); a
stage whose config changed starts afresh.

Stages call the other recipes in-process (``recipes.rm.run(cfg)`` etc.), not subprocesses.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rewardlab import config as cfglib
from rewardlab.errors import UserError
from rewardlab.recipes.pipeline_state import (  # noqa: F401  (re-exported: scripts import them from here)
    DATA_STAGES,
    MARKER,
    POLICY_STAGES,
    RESUMABLE,
    STAGES,
    STARTED,
    TRAIN_STAGES,
    Context,
    Output,
    stage_raw,
    tracking_for,
)

# ---------------------------------------------------------------- stage configs


def split_refs(
    raw: dict[str, Any], ctx: Context, stage: str, inputs: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings without ``@stage`` references, the references resolved to output paths); a referenced
    stage becomes an input of this one."""
    plain: dict[str, Any] = {}
    refs: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            p, r = split_refs(value, ctx, stage, inputs)
            plain[key] = p
            if r:
                refs[key] = r
        elif isinstance(value, list) and _is_ref(value):
            refs[key] = [resolve_ref(v, ctx, stage, inputs) if _is_ref(v) else v for v in value]
        elif _is_ref(value):
            refs[key] = resolve_ref(value, ctx, stage, inputs)
        else:
            plain[key] = value
    return plain, refs


def resolve_ref(ref: str, ctx: Context, stage: str, inputs: dict[str, str]) -> str:
    out = ctx.outputs.get(ref[1:])
    if out is None:
        raise UserError(f"pipeline: stage '{stage}' refers to '{ref}', which has not run before it")
    inputs[out.stage] = out.fingerprint
    return str(out.model or out.data or out.run_dir)


def _need(out: Output | None, stage: str, what: str) -> Output:
    if out is None:
        raise UserError(f"pipeline: stage '{stage}' needs {what} from an earlier stage; add it to 'stages'")
    return out


def wiring(
    stage: str, ctx: Context, raw: dict[str, Any], run_dir: Path
) -> tuple[dict[str, Any], dict[str, str]]:
    """(config keys the pipeline sets for ``stage``, input fingerprints it depends on). ``raw`` is the stage's
    own settings, ``@stage`` references included: a wired value a reference replaces is not an input."""
    inputs: dict[str, str] = {}

    def use(out: Output | None) -> Output | None:
        if out is not None:
            inputs[out.stage] = out.fingerprint
        return out

    track = {"tracking": tracking_for(ctx, stage, raw)}
    if stage == "simulate":
        return {"out": str(run_dir / "data")}, inputs
    if stage == "data":
        return {"out": str(run_dir / "data"), "quarantine": str(run_dir / "quarantine.jsonl")}, inputs
    if stage == "raters":
        use(_need(ctx.source, stage, "a dataset (simulate or data)"))
        return {}, inputs
    if stage == "rate":
        use(_need(ctx.outputs.get("sample"), stage, "a batch (sample)"))
        seed = int(raw.get("seed", 0)) + 1  # new judgments, not a replay of round one
        return {"out": str(run_dir / "data"), "seed": seed, "sweep": None}, inputs
    if stage in TRAIN_STAGES:
        labels = use(_need(ctx.labels, stage, "a dataset (simulate, data or raters)"))
        wired: dict[str, Any] = {"output_dir": str(run_dir), "data": {"train": str(labels.data)}, **track}
        sft = use(ctx.outputs.get("sft")) if stage in ("dpo", "ppo", "rs") else None
        if sft is not None:
            wired["model"] = {"name_or_path": str(sft.model)}
        if stage in ("ppo", "rs"):  # the section holding reward_model is named after the stage
            rm = use(ctx.outputs.get("rm"))
            if rm is not None:
                wired[stage] = {"reward_model": str(rm.model)}
        return wired, inputs
    if stage == "sample":
        wired = {"output_dir": str(run_dir), "batch_name": f"{ctx.cfg.name}-next", **track}
        source = use(ctx.source)
        if source is not None:
            wired["prompts"] = str(source.data)
        # sample: {policy: "@ppo"} does not depend on a later rs: rerunning rs must not resample the batch
        policy = None if _is_ref(raw.get("policy")) else use(ctx.last(*POLICY_STAGES))
        if policy is not None:
            wired["policy"] = str(policy.model)
        rm = use(ctx.outputs.get("rm"))
        if rm is not None:
            wired["reward_models"] = [str(rm.model)]
        return wired, inputs
    if stage in ("eval", "report"):
        for name in ctx.cfg.stages:
            if name == stage:
                break
            use(ctx.outputs.get(name))
        return {}, inputs
    raise UserError(f"pipeline: unknown stage '{stage}' (one of {', '.join(STAGES)})")


def stage_config(stage: str, ctx: Context, run_dir: Path) -> tuple[Any, dict[str, str]]:
    """The validated config of a stage (own settings < wiring < @references) and its input fingerprints."""
    raw = stage_raw(ctx.cfg, stage)
    ref_inputs: dict[str, str] = {}
    plain, refs = split_refs(raw, ctx, stage, ref_inputs)
    wired, inputs = wiring(stage, ctx, raw, run_dir)
    inputs.update(ref_inputs)
    if stage in ("eval", "report"):
        return ctx.cfg.eval if stage == "eval" else None, inputs
    merged = cfglib.deep_merge(cfglib.deep_merge(plain, wired), refs)
    schema_stage = "simulate" if stage == "rate" else stage
    merged.pop("stage", None)
    try:
        cfg = cfglib.load(None, [], stage=schema_stage, base=merged)
    except cfglib.ConfigError as err:
        raise UserError(f"pipeline stage '{stage}': {str(err).replace('<overrides>: ', '')}") from None
    return cfg, inputs


def config_fingerprint(cfg: Any, inputs: dict[str, str]) -> str:
    """Fingerprint of a stage's resolved config (``train.resume`` left out: resuming is not a change)."""
    if cfg is None:
        body: dict[str, Any] = {}
    else:
        body = cfg.model_dump(mode="json")
        if isinstance(body.get("train"), dict):
            body["train"].pop("resume", None)
    blob = json.dumps({"config": body, "inputs": inputs}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# ---------------------------------------------------------------- markers and fingerprints


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def file_digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def expected_outputs(stage: str, run_dir: Path) -> list[Path]:
    if stage in DATA_STAGES:
        return [run_dir / "data" / "rewardlab.json"]
    if stage in TRAIN_STAGES:
        return [run_dir / "model" / "config.json", run_dir / "metrics.json"]
    if stage == "sample":
        return [run_dir / "batch.jsonl", run_dir / "metrics.json"]
    if stage == "eval":
        return [run_dir / "metrics.json"]
    return [run_dir / "report.html"]


def output_fingerprint(stage: str, run_dir: Path) -> str:
    """What downstream stages compare: the dataset fingerprint, the weights, the batch, the metrics."""
    if stage in DATA_STAGES:
        return str(json.loads((run_dir / "data" / "rewardlab.json").read_text())["fingerprint"])
    if stage in TRAIN_STAGES:
        model = run_dir / "model"
        return file_digest(sorted(model.glob("*.safetensors")) + [model / "config.json"])
    if stage == "sample":
        return file_digest([run_dir / "batch.jsonl"])
    if stage == "eval":
        return file_digest([run_dir / "metrics.json"])
    return "report"


def make_output(stage: str, run_dir: Path, fingerprint: str, metrics: dict[str, Any]) -> Output:
    return Output(
        stage=stage,
        run_dir=run_dir,
        fingerprint=fingerprint,
        data=run_dir / "data" if stage in DATA_STAGES else None,
        model=run_dir / "model" if stage in TRAIN_STAGES else None,
        metrics=metrics,
    )


def is_complete(stage: str, run_dir: Path, fp: str) -> bool:
    marker = read_json(run_dir / MARKER)
    if not marker or marker.get("fingerprint") != fp:
        return False
    return all(p.exists() for p in expected_outputs(stage, run_dir))


def prepare_stage_dir(stage: str, cfg: Any, run_dir: Path, fp: str, fresh: bool = False) -> str:
    """Start or resume: 'resume' when an interrupted run of the same config left checkpoints, else 'run'
    (the folder is cleared first when it holds the work of another config, or when ``fresh``)."""
    from rewardlab import runs
    from rewardlab.recipes import policy_common as pc

    started = read_json(run_dir / STARTED)
    same = not fresh and started is not None and started.get("fingerprint") == fp
    # Only a COMPLETE checkpoint counts: a lone half-written .tmp folder would make resume fail.
    has_ckpt = (
        runs.latest_checkpoint(run_dir) is not None or pc.latest_trainer_checkpoint(run_dir) is not None
    )
    if same and stage in RESUMABLE and has_ckpt:
        cfg.train.resume = True
        (run_dir / MARKER).unlink(missing_ok=True)
        return "resume"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    (run_dir / STARTED).write_text(json.dumps({"fingerprint": fp, "started": time.time()}))
    return "run"


# ---------------------------------------------------------------- the stages


def run_simulate(cfg: Any, run_dir: Path, ctx: Context) -> dict[str, Any]:
    from rewardlab import runs
    from rewardlab.data.simulate import simulate_campaign, write_campaign

    runs.prepare_run(cfg, {"pipeline": ctx.cfg.name}, run_dir=run_dir)
    records, truth = simulate_campaign(cfg)
    info = write_campaign(records, truth, cfg.out)
    metrics = {
        "records": len(records),
        "prompts": info.get("prompts"),
        "raters": info.get("raters"),
        "gold": info.get("gold_items"),
        "fingerprint": info["fingerprint"],
    }
    runs.write_metrics(run_dir, metrics)
    return metrics


def run_data(cfg: Any, run_dir: Path, ctx: Context) -> dict[str, Any]:
    from rewardlab import runs
    from rewardlab.data.importing import import_paths
    from rewardlab.raters import pseudonym

    if not cfg.inputs:
        raise UserError("pipeline stage 'data': 'inputs' lists no files to import")
    runs.prepare_run(cfg, {"pipeline": ctx.cfg.name}, run_dir=run_dir)
    kwargs = {"fmt": cfg.format, "quarantine": cfg.quarantine, "strict": cfg.strict}
    if cfg.pseudonymize:
        report = pseudonym.import_paths(cfg.inputs, cfg.out, salt_file=cfg.salt_file, **kwargs)
    else:
        report = import_paths(cfg.inputs, cfg.out, **kwargs)
    metrics = {k: v for k, v in report.to_json().items() if k != "files"}
    runs.write_metrics(run_dir, metrics)
    if not (Path(cfg.out) / "rewardlab.json").is_file():
        raise UserError(f"pipeline stage 'data': the import wrote no dataset (see {cfg.quarantine})")
    return metrics


def run_raters(cfg: Any, run_dir: Path, ctx: Context) -> dict[str, Any]:
    """Rater report (rater_report.json, rater stats table) and aggregation into run_dir/data."""
    from rewardlab import runs
    from rewardlab.raters import quality
    from rewardlab.raters.aggregate import aggregate_dataset
    from rewardlab.raters.pseudonym import raters_input
    from rewardlab.raters.table import from_dataset
    from rewardlab.tracking import open_tracker

    shown = ctx.source.data
    # raters.pseudonymize: report and merge a pseudonymized copy; no raw id reaches this stage's outputs.
    with raters_input(shown, cfg, outputs=[run_dir]) as (source, cfg):
        runs.prepare_run(cfg, {"pipeline": ctx.cfg.name, "dataset": str(shown)}, run_dir=run_dir)
        tracker = open_tracker(_tracking_cfg(ctx, "raters"), run_dir, cfg.model_dump(mode="json"))
        report = quality.build_report(from_dataset(source), cfg)
        report["dataset"] = str(shown)
        (run_dir / "rater_report.json").write_text(json.dumps(report, indent=1, default=str))
        _rater_html(report, run_dir)
        summary = aggregate_dataset(source, run_dir / "data", cfg, report=report)  # report not recomputed
    tracker.log_table("rater_stats", report["raters"])
    metrics = {
        "alpha": report.get("alpha"),
        "agreement": report.get("agreement"),
        "raters": len(report["raters"]),
        "flagged": sum(1 for r in report["raters"] if r.get("flagged")),
        **{k: v for k, v in summary.items() if isinstance(v, (int, float, str, list)) and k != "out"},
    }
    tracker.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=0)
    tracker.summary(metrics)
    tracker.finish()
    runs.write_metrics(run_dir, metrics)
    return metrics


def _rater_html(report: dict[str, Any], run_dir: Path) -> None:
    """The raters helper's own HTML page for the report, when its module is there."""
    try:
        from rewardlab.raters.report_html import render_report_html
    except ImportError:
        return
    (run_dir / "rater_report.html").write_text(render_report_html(report), encoding="utf-8")


def _tracking_cfg(ctx: Context, stage: str) -> Any:
    return cfglib.TrackingConfig.model_validate(tracking_for(ctx, stage, {}))


def run_train(stage: str) -> Callable[[Any, Path, Context], dict[str, Any]]:
    def runner(cfg: Any, run_dir: Path, ctx: Context) -> dict[str, Any]:
        from rewardlab.models import check_quantization

        check_quantization(cfg.model.quantization, cfg.model.lora)  # before the stage's data or models
        if stage == "rm":
            from rewardlab.recipes import rm as recipe
        elif stage == "sft":
            from rewardlab.recipes import sft as recipe
        elif stage == "dpo":
            from rewardlab.recipes import dpo as recipe
        elif stage == "rs":
            from rewardlab.recipes import rs as recipe
        else:
            from rewardlab.recipes import ppo as recipe
        return recipe.run(cfg)

    return runner


def run_sample(cfg: Any, run_dir: Path, ctx: Context) -> dict[str, Any]:
    from rewardlab.recipes import sample

    return sample.run(cfg)


def run_rate(cfg: Any, run_dir: Path, ctx: Context) -> dict[str, Any]:
    """The simulated rater pool judges the sampled batch: the next round's dataset."""
    from rewardlab import runs
    from rewardlab.data.simulate import rate_batch, read_batch, write_campaign

    batch = ctx.outputs["sample"].run_dir / "batch.jsonl"
    runs.prepare_run(cfg, {"pipeline": ctx.cfg.name, "batch": str(batch)}, run_dir=run_dir)
    items, skipped, _ = read_batch(batch)
    if not items:
        raise UserError(f"{batch}: no item has 2 distinct non-empty responses ({len(skipped)} skipped)")
    records, truth = rate_batch(items, cfg, cfg.seed)
    truth["batch"] = str(batch)
    info = write_campaign(records, truth, cfg.out, batch=str(batch))
    metrics = {
        "items": len(items),
        "skipped": len(skipped),
        "judgments": len(records),
        "fingerprint": info["fingerprint"],
    }
    runs.write_metrics(run_dir, metrics)
    return metrics


def run_eval(opts: Any, run_dir: Path, ctx: Context) -> dict[str, Any]:
    from rewardlab.recipes import pipeline_eval

    return pipeline_eval.run(opts, run_dir, ctx)


def run_report(_: Any, run_dir: Path, ctx: Context) -> dict[str, Any]:
    from rewardlab.report.compare import collect_runs
    from rewardlab.report.html import write_report

    dirs = [o.run_dir for s, o in ctx.outputs.items() if s != "report"]
    extra = [Path(p) for p in ctx.cfg.report_include if Path(p).exists()]
    found = collect_runs([*dirs, *extra])
    path = write_report(found, run_dir / "report.html", title=f"rewardlab pipeline {ctx.cfg.name}")
    metrics = {"report": str(path), "runs": len(found)}
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


RUNNERS: dict[str, Callable[[Any, Path, Context], dict[str, Any]]] = {
    "simulate": run_simulate,
    "data": run_data,
    "raters": run_raters,
    "rm": run_train("rm"),
    "sft": run_train("sft"),
    "dpo": run_train("dpo"),
    "ppo": run_train("ppo"),
    "rs": run_train("rs"),
    "eval": run_eval,
    "sample": run_sample,
    "rate": run_rate,
    "report": run_report,
}


# ---------------------------------------------------------------- the pipeline


def check_stages(stages: list[str]) -> None:
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise UserError(f"pipeline: unknown stage '{unknown[0]}' in 'stages' (one of {', '.join(STAGES)})")
    dup = [s for s in stages if stages.count(s) > 1]
    if dup:
        raise UserError(f"pipeline: stage '{dup[0]}' is listed twice in 'stages'")
    if not stages:
        raise UserError("pipeline: 'stages' is empty")


DATASET = (("simulate", "data", "raters"), "a dataset (simulate, data or raters)", False)
REWARD_MODEL = (("rm",), "a reward model (rm)", True)
# stage -> what it needs: (stages any one of which provides it, what it is, whether the stage's own
# ``<stage>.reward_model`` may stand in for the rm stage). A policy stage scored by an RM takes the
# pipeline's rm, or the reward model its own section names (checked to be one before any stage runs);
# never the schema's default path, which would load whatever RM sits there.
NEEDS: dict[str, tuple[tuple[tuple[str, ...], str, bool], ...]] = {
    "raters": ((("simulate", "data"), "a dataset (simulate or data)", False),),
    "rm": (DATASET,),
    "sft": (DATASET,),
    "dpo": (DATASET,),
    "ppo": (DATASET, REWARD_MODEL),
    "rs": (DATASET, REWARD_MODEL),
    "rate": ((("sample",), "a batch (sample)", False),),
}


def check_own_reward_model(cfg: Any, stage: str, what: str) -> None:
    """No rm stage before ``stage``: its own ``<stage>.reward_model`` must name a reward model folder (or an
    ``@stage``)."""
    from rewardlab.scoring import resolve_model_dir

    section = stage_raw(cfg, stage).get(stage)
    path = section.get("reward_model") if isinstance(section, dict) else None
    key = f"{stage}.reward_model"
    if path is None:
        raise UserError(
            f"pipeline: stage '{stage}' needs {what} from an earlier stage; add it to 'stages' "
            f"or set '{stage}.{key}'"
        )
    if _is_ref(path):
        return
    try:
        resolve_model_dir(str(path))
    except UserError as err:
        raise UserError(f"pipeline stage '{stage}': {key}: {err} (and no rm stage runs before it)") from None


def validate_plan(cfg: Any) -> None:
    """Fail before any work: unknown or repeated stages, a stage missing its input, a bad key in a stage."""
    stages = list(cfg.stages)
    check_stages(stages)
    for n, stage in enumerate(stages):
        for sources, what, own_reward_model in NEEDS.get(stage, ()):
            if any(s in stages[:n] for s in sources):
                continue
            if not own_reward_model:
                raise UserError(
                    f"pipeline: stage '{stage}' needs {what} from an earlier stage; add it to 'stages'"
                )
            check_own_reward_model(cfg, stage, what)
        if stage in ("eval", "report"):
            continue
        plain = _without_refs(stage_raw(cfg, stage))
        plain.pop("stage", None)
        try:
            cfglib.load(None, [], stage="simulate" if stage == "rate" else stage, base=plain)
        except cfglib.ConfigError as err:
            raise UserError(f"pipeline stage '{stage}': {str(err).replace('<overrides>: ', '')}") from None


def _is_ref(value: Any) -> bool:
    if isinstance(value, list):
        return any(_is_ref(v) for v in value)
    return isinstance(value, str) and value.startswith("@")


def _without_refs(raw: dict[str, Any]) -> dict[str, Any]:
    """A stage's own settings minus ``@stage`` references (those exist only once earlier stages ran)."""
    return {k: _without_refs(v) if isinstance(v, dict) else v for k, v in raw.items() if not _is_ref(v)}


def run(cfg: Any, echo: Callable[[str], None] = print, force: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run (or skip) every stage; returns the summary also written to ``<root>/summary.json``."""
    from rewardlab import devices, runs
    from rewardlab.raters.pseudonym import pipeline_config

    validate_plan(cfg)
    devices.resolve_device(cfg.eval.device, "eval.device")  # a missing device: refused before any stage runs
    devices.use_tf32()  # the stages' float32 matmuls on CUDA in TF32, as under `rewardlab train`
    cfg = pipeline_config(cfg)  # raters.pseudonymize: no real rater id in any config.yaml
    root = Path(cfg.output_dir) / cfg.name
    root.mkdir(parents=True, exist_ok=True)
    runs.prepare_run(
        cfg, {"stage": "pipeline", "pipeline": cfg.name, "stages": list(cfg.stages)}, run_dir=root
    )
    ctx = Context(cfg=cfg, root=root)
    rows = []
    width = max(len(s) for s in cfg.stages)
    for n, stage in enumerate(cfg.stages, 1):
        run_dir = root / stage
        stage_cfg, inputs = stage_config(stage, ctx, run_dir)
        fp = config_fingerprint(stage_cfg, inputs)
        label = f"[{n}/{len(cfg.stages)}] {stage:<{width}}"
        if stage not in force and is_complete(stage, run_dir, fp):
            marker = read_json(run_dir / MARKER) or {}
            ctx.outputs[stage] = make_output(
                stage, run_dir, marker["output_fingerprint"], marker.get("metrics", {})
            )
            echo(f"{label}  skip (unchanged, complete: {run_dir})")
            rows.append(
                {
                    "stage": stage,
                    "status": "skip",
                    "seconds": 0.0,
                    "run_dir": str(run_dir),
                    "fingerprint": fp,
                    "metrics": marker.get("metrics", {}),
                }
            )
            continue
        mode = prepare_stage_dir(stage, stage_cfg, run_dir, fp, fresh=stage in force)
        echo(f"{label}  {mode} -> {run_dir}")
        start = time.time()
        with contextlib.redirect_stdout(sys.stderr):  # libraries print to stdout; keep it for our lines
            metrics = RUNNERS[stage](stage_cfg, run_dir, ctx) or {}
        seconds = round(time.time() - start, 1)
        out_fp = output_fingerprint(stage, run_dir)
        marker = {
            "stage": stage,
            "fingerprint": fp,
            "inputs": inputs,
            "output_fingerprint": out_fp,
            "seconds": seconds,
            "finished": time.time(),
            "metrics": _small(metrics),
        }
        runs.write_json_atomic(run_dir / MARKER, marker)
        ctx.outputs[stage] = make_output(stage, run_dir, out_fp, metrics)
        echo(f"{label}  done in {seconds:.1f} s{headline(stage, metrics)}")
        rows.append(
            {
                "stage": stage,
                "status": mode,
                "seconds": seconds,
                "run_dir": str(run_dir),
                "fingerprint": fp,
                "metrics": _small(metrics),
            }
        )
    summary = {"pipeline": cfg.name, "dir": str(root), "stages": rows}
    if "report" in ctx.outputs:
        summary["report"] = str(ctx.outputs["report"].run_dir / "report.html")
    runs.write_json_atomic(root / "summary.json", summary)
    return summary


def _small(metrics: dict[str, Any]) -> dict[str, Any]:
    """Scalars only (the marker and summary stay small and JSON-clean)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}


HEADLINES = {
    "simulate": ("records", "prompts", "raters"),
    "data": ("accepted", "quarantined"),
    "raters": ("alpha", "agreement", "flagged", "judgments_excluded"),
    "rm": ("accuracy", "n_pairs", "ece"),
    "sft": ("train_loss",),
    "dpo": ("win_rate_vs_ref", "rm_score_mean", "truth_score_mean", "train_loss"),
    "ppo": (
        "train_rm_score_start",
        "train_rm_score_end",
        "train_kl_end",
        "win_rate_vs_ref",
        "truth_score_mean",
    ),
    "rs": ("train_rm_score_start", "train_rm_score_end", "stop_rate_end", "steps"),
    "eval": (
        "rm_truth_accuracy",
        # the policies side by side on the same held-out prompts, scored by the simulator's truth
        "sft.truth_score_mean",
        "dpo.truth_score_mean",
        "ppo.truth_score_mean",
        "rs.truth_score_mean",
        # what PPO optimised, on held-out prompts, paired per prompt against its start: clear when > 2 se
        "ppo.rm_gain",
        "ppo.rm_gain_se",
    ),
    "sample": ("selected", "candidates", "selection_score_mean"),
    "rate": ("items", "judgments"),
    "report": ("report",),
}


def headline(stage: str, metrics: dict[str, Any]) -> str:
    parts = []
    for key in HEADLINES.get(stage, ()):
        value = metrics.get(key)
        if value is None:
            continue
        parts.append(f"{key}={value:.3f}" if isinstance(value, float) else f"{key}={value}")
    return (": " + ", ".join(parts)) if parts else ""
