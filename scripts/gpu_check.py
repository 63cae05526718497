"""GPU check: every rewardlab stage and command for a few steps on the accelerator; fails if anything ran on the CPU.

Why: everything else in the test suite runs on a CPU. This script is what a GPU machine runs once to show
that each stage builds its models on the device the one device rule gives (rewardlab/devices.py), that the
first generate input is there too, and that nothing fails; it is sized for at most 8 minutes on one H100.
No network: tiny models built from configs (``offline:tiny-llama``, ``offline:tiny-rm``) on data/sample.

    python scripts/gpu_check.py                      # every stage; writes runs/gpu-check/gpu_check.json
    python scripts/gpu_check.py --only eval-rm,score # a subset (dependencies are added: eval-policy runs sft)
    python scripts/gpu_check.py --allow-cpu --only eval-rm,score   # the CPU smoke test CI runs

Stages: rm (2 steps, a checkpoint), rm-resume (continues it), rm-lora, sft, dpo, dpo-lora, ppo-lora (with a
checkpoint), ppo-resume, grpo, rloo, rs, eval-rm, eval-policy, score, sample, and rm-fsdp / ppo-fsdp (train
rm and train ppo under ``accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 1``,
run as a child process of this script so the same hooks record it), and ppo-8b / rm-8b (issue 30: a
Llama with Llama-3.1-8B's shape and random bf16 weights, built on the GPU and saved first, then a LoRA PPO
run of 2 steps, reference = adapter disabled, value = a second adapter, the RM the same shape in bf16, and a
packed LoRA RM run of 3 steps, both with gradient checkpointing; their throughput from metrics.json goes in
the report; ``--big-shape tiny``, the default without CUDA, runs the same code at toy size). For each stage it records, through
hooks on rewardlab's model builders, ``RewardScorer`` and ``generation.generate``, the device and dtype of
every model it built (named by its builder: policy, reference, reward_model, reward_scorer) at that
model's first forward (a forward pre-hook: trainers move models after they
are built), the device of the first generate input, the wall time and ``torch.cuda.max_memory_allocated``.
It writes one JSON, prints a table, and exits 1 if a stage failed, ran a model or a generate input on
another device than ``--expect-device`` (default: cuda), or ran no model at all. ``--allow-cpu`` expects
the CPU instead (smoke test); ``--expect-device cuda`` on a CPU machine must fail (tested).

Packages. The GPU machine this was prepared for has torch, transformers, accelerate, peft, safetensors,
pandas and pyarrow, but no network and no trl, datasets or pydantic. Bring these wheels (versions as in
the CI environment, 2026-12-07; ``pip download --no-deps -d wheels <name>==<version> ...`` on a machine
with network) and install them with ``pip install --no-deps wheels/*.whl``:

    trl==1.16.0 datasets==5.2.0 dill==0.4.1 xxhash==4.1.0 multiprocess==0.70.19 fsspec==2026.9.0
    pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
    typer==0.29.2 click==8.5.1 shellingham==1.5.4 rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2
    Pygments==2.21.0 orjson==3.13.0 threadpoolctl==3.8.0 PyYAML==6.0.4

(``pydantic_core``, ``xxhash`` and ``orjson`` are compiled: take the wheel for the machine's Python and
platform.) Then run from the repository root with ``PYTHONPATH=src HF_HUB_OFFLINE=1``. The script first
checks those imports and names any missing package in one line. Status (2026-12-07): prepared and
smoke-tested on CPU only; it has not run on a GPU yet (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import functools
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

builtins_setattr = builtins.setattr
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "sample"
NEEDED = ("torch", "transformers", "accelerate", "peft", "safetensors", "trl", "datasets", "pydantic",
          "typer", "rich", "yaml", "orjson", "threadpoolctl", "pandas", "pyarrow")  # fmt: skip
LORA = "model.lora={r: 4, alpha: 8}"
STAGES = ["rm", "rm-resume", "rm-lora", "sft", "dpo", "dpo-lora", "ppo-lora", "ppo-resume", "grpo", "rloo",
          "rs", "eval-rm", "eval-policy", "score", "sample", "rm-fsdp", "ppo-fsdp", "ppo-8b", "rm-8b"]  # fmt: skip
BIG = {"ppo-8b", "rm-8b"}  # the 8B-shaped Llama (random bf16 weights): built once, before the first of them
# Llama-3.1-8B's shape (8.03B parameters); --big-shape tiny keeps the code path at toy size (CPU smoke test;
# its vocabulary just holds the tiny tokenizer's 2,000 ids: bf16 matmuls over 128k rows crawl on a CPU)
BIG_SHAPES = {
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=2048, max_position_embeddings=512, rope_theta=500000.0),
}  # fmt: skip
DEPENDS = {"rm-resume": "rm", "ppo-resume": "ppo-lora", "eval-policy": "sft"}
LAUNCHED = {"rm-fsdp", "ppo-fsdp"}  # run under `accelerate launch` with configs/accelerate/fsdp.yaml


def stage_args(stage: str, work: Path, rm: Path) -> list[str]:
    """The rewardlab command line of a stage: tiny models, data/sample, a few steps."""
    policy = ["model.name_or_path=offline:tiny-llama", f"data.train={DATA}", "train.log_every=1"]
    rm_train = ["train", "rm", ROOT / "configs/rm/tiny.yaml", f"data.train={DATA}", "train.log_every=1"]
    ppo = ["train", "ppo", ROOT / "configs/ppo/tiny.yaml", *policy, f"ppo.reward_model={rm}",
           "ppo.max_new_tokens=8", "ppo.rollout_batch_size=8", "ppo.mini_batch_size=8"]  # fmt: skip
    online = [*policy, f"online.reward_model={rm}", "train.max_steps=2", "online.max_completion_length=8",
              "online.num_generations=4", "train.batch_size=8"]  # fmt: skip
    table: dict[str, list[Any]] = {
        "rm": [*rm_train, f"output_dir={work / 'rm'}", "train.max_steps=2", "train.save_every=1"],
        "rm-resume": [
            *rm_train,
            f"output_dir={work / 'rm'}",
            "train.max_steps=3",
            "train.save_every=1",
            "train.resume=true",
        ],  # fmt: skip
        "rm-lora": [*rm_train, f"output_dir={work / 'rm-lora'}", "train.max_steps=2", LORA],
        "sft": [
            "train",
            "sft",
            ROOT / "configs/sft/tiny.yaml",
            *policy,
            f"output_dir={work / 'sft'}",
            "train.max_steps=2",
            "train.eval_every=null",
        ],  # fmt: skip
        "dpo": [
            "train",
            "dpo",
            ROOT / "configs/dpo/tiny.yaml",
            *policy,
            f"output_dir={work / 'dpo'}",
            "train.max_steps=2",
        ],  # fmt: skip
        "dpo-lora": [
            "train",
            "dpo",
            ROOT / "configs/dpo/tiny.yaml",
            *policy,
            f"output_dir={work / 'dpo-lora'}",
            "train.max_steps=2",
            LORA,
        ],  # fmt: skip
        "ppo-lora": [*ppo, f"output_dir={work / 'ppo'}", "train.max_steps=1", "train.save_every=1", LORA],
        "ppo-resume": [
            *ppo,
            f"output_dir={work / 'ppo'}",
            "train.max_steps=2",
            "train.save_every=1",
            LORA,
            "train.resume=true",
        ],  # fmt: skip
        "grpo": ["train", "grpo", ROOT / "configs/grpo/tiny.yaml", *online, f"output_dir={work / 'grpo'}"],
        "rloo": ["train", "rloo", ROOT / "configs/rloo/tiny.yaml", *online, f"output_dir={work / 'rloo'}"],
        "rs": [
            "train",
            "rs",
            ROOT / "configs/rs/tiny.yaml",
            *policy,
            f"rs.reward_model={rm}",
            "rs.rounds=1",
            "rs.num_samples=2",
            "rs.prompts_per_round=8",
            "rs.max_new_tokens=8",
            "rs.probe_prompts=4",
            "train.max_steps=2",
            "train.batch_size=8",
            f"output_dir={work / 'rs'}",
        ],  # fmt: skip
        "eval-rm": ["eval", "rm", rm, "--data", DATA, "--out", work / "eval-rm.json", "--json"],
        "eval-policy": [
            "eval",
            "policy",
            work / "sft",
            "--n",
            "8",
            "--reward-model",
            rm,
            "--max-new-tokens",
            "8",
            "--json",
        ],  # fmt: skip
        "score": [
            "score",
            rm,
            "--input",
            work / "score-in.jsonl",
            "--output",
            work / "score-out.jsonl",
            "--json",
        ],
        "sample": [
            "sample",
            ROOT / "configs/sample/tiny.yaml",
            "policy=offline:tiny-llama",
            f"prompts={DATA}",
            f"reward_models=[{rm}]",
            f"output_dir={work / 'sample'}",
            "num_prompts=8",
            "max_new_tokens=8",
            "--json",
        ],  # fmt: skip
        "rm-fsdp": [*rm_train, f"output_dir={work / 'rm-fsdp'}", "train.max_steps=2"],
        "ppo-fsdp": [*ppo, f"output_dir={work / 'ppo-fsdp'}", "train.max_steps=1"],
        # issue 30: LoRA PPO at 8B on one card: bf16 base, the reference = adapter disabled, the value a
        # second adapter, the RM (the same 8B shape) in bf16, checkpointing, chunked log-probs
        "ppo-8b": ["train", "ppo", ROOT / "configs/ppo/tiny.yaml", f"model.name_or_path={work / BIG_POLICY}",
                   f"data.train={DATA}", "train.log_every=1", f"ppo.reward_model={work / BIG_RM}",
                   "model.dtype=bfloat16", "model.lora={r: 16, alpha: 32}", "train.bf16=true",
                   "train.gradient_checkpointing=true", "ppo.value_backbone=adapter", "ppo.logprob_chunk=1024",
                   "ppo.max_new_tokens=32", "ppo.rollout_batch_size=8", "ppo.mini_batch_size=8",
                   "train.max_steps=2", f"output_dir={work / 'ppo-8b'}"],
        # a packed (padding-free) LoRA RM step on the same 8B shape
        "rm-8b": [*rm_train, f"model.name_or_path={work / BIG_POLICY}", "model.dtype=bfloat16",
                  "model.lora={r: 16, alpha: 32}", "train.bf16=true", "train.gradient_checkpointing=true",
                  "train.packing=true", "train.batch_size=8", "data.max_length=512", "train.max_steps=3",
                  "train.eval_every=null", f"output_dir={work / 'rm-8b'}"],
    }  # fmt: skip
    return [str(a) for a in table[stage]]


# ---------------------------------------------------------------- recording


class Recorder:
    """Where each model built during a stage ran (at its first forward) and the first generate input."""

    def __init__(self) -> None:
        self.models: list[dict[str, Any]] = []  # "id" is the model's id() in this process
        self.generate_input: str | None = None
        self._seen: set[int] = set()

    def watch(self, model: Any, kind: str) -> Any:
        if model is None or not hasattr(model, "register_forward_pre_hook"):
            return model
        if id(model) in self._seen:  # build_reference calls build_policy: the outer builder names it
            for row in self.models:
                if row["id"] == id(model):
                    row["kind"] = kind
            return model
        self._seen.add(id(model))
        row: dict[str, Any] = {
            "kind": kind,
            "device": None,
            "dtype": None,
            "input_device": None,
            "id": id(model),
        }
        self.models.append(row)

        def first_forward(module: Any, args: Any, kwargs: Any) -> None:
            if row["device"] is not None:
                return
            param = next(module.parameters(), None)
            row["device"] = str(param.device) if param is not None else None
            row["dtype"] = str(param.dtype).removeprefix("torch.") if param is not None else None
            tensor = next((t for t in [*args, *kwargs.values()] if hasattr(t, "device")), None)
            row["input_device"] = str(tensor.device) if tensor is not None else None

        model.register_forward_pre_hook(first_forward, with_kwargs=True)
        if callable(getattr(model, "generate", None)):  # TRL's trainers call the policy's generate directly
            original = model.generate

            def generate(*args: Any, **kwargs: Any) -> Any:
                self.saw_generate(kwargs.get("input_ids", args[0] if args else None))
                return original(*args, **kwargs)

            model.generate = generate
        return model

    def saw_generate(self, input_ids: Any) -> None:
        if self.generate_input is None and hasattr(input_ids, "device"):
            self.generate_input = str(input_ids.device)


RECORDER = Recorder()


def install_hooks() -> list[tuple[Any, str, Any]]:
    """Wrap the model builders, RewardScorer and generate (module attributes the recipes look up at call
    time); returns what was replaced, for ``remove_hooks``."""
    from rewardlab import generation, models, scoring
    from rewardlab.recipes import policy_common

    replaced: list[tuple[Any, str, Any]] = []

    def setattr(owner: Any, name: str, value: Any) -> None:  # noqa: A001 - records the original first
        replaced.append((owner, name, getattr(owner, name)))
        builtins_setattr(owner, name, value)

    def builder(name: str) -> None:
        original = getattr(models, name)

        @functools.wraps(original)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            return RECORDER.watch(original(*args, **kwargs), name.removeprefix("build_"))

        setattr(models, name, wrapped)

    for name in ("build_policy", "build_reward_model", "build_reference"):
        builder(name)
    scorer_init = scoring.RewardScorer.__init__

    def init(self: Any, model: Any, *args: Any, **kwargs: Any) -> None:
        scorer_init(self, model, *args, **kwargs)
        RECORDER.watch(model, "reward_scorer")

    setattr(scoring.RewardScorer, "__init__", init)
    for module, name in ((generation, "generate"), (generation, "generate_with_logits"),
                         (policy_common, "generate")):  # fmt: skip
        original = getattr(module, name)

        def gen(
            model: Any, tokenizer: Any, input_ids: Any, *args: Any, _original: Any = original, **kw: Any
        ) -> Any:
            RECORDER.saw_generate(input_ids)
            return _original(model, tokenizer, input_ids, *args, **kw)

        setattr(module, name, gen)
    return replaced


def remove_hooks(replaced: list[tuple[Any, str, Any]]) -> None:
    for owner, name, original in reversed(replaced):
        builtins_setattr(owner, name, original)


def problems_of(models: list[dict[str, Any]], generate_input: str | None, expect: str) -> list[str]:
    """What ran elsewhere than on ``expect`` (a device type: cuda, cpu, mps, meta)."""
    out = []
    used = [m for m in models if m["device"] is not None]
    if not used:
        out.append("no model ran a forward pass")
    for m in used:
        for key in ("device", "input_device"):
            if m[key] is not None and m[key].split(":")[0] != expect:
                out.append(f"{m['kind']} {key.replace('_', ' ')} {m[key]}, expected {expect}")
    if generate_input is not None and generate_input.split(":")[0] != expect:
        out.append(f"first generate input on {generate_input}, expected {expect}")
    return out


# ---------------------------------------------------------------- running


def run_in_process(args: list[str]) -> tuple[int, str]:
    """The rewardlab CLI in this process (hooks see it); returns (exit code, output tail)."""
    from typer.testing import CliRunner

    from rewardlab.cli import app

    res = CliRunner().invoke(app, args, catch_exceptions=True)
    tail = (res.output or "")[-3000:]
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        import traceback

        tail += "".join(traceback.format_exception(res.exception))[-3000:]
    return res.exit_code, tail


def child_main(stage: str, args: list[str], out: Path) -> int:
    """Inside `accelerate launch`: run one stage with the hooks and write what they saw to ``out``."""
    sys.path.insert(0, str(ROOT / "src"))
    install_hooks()
    code, tail = run_in_process(args)
    memory = _max_memory()
    out.write_text(json.dumps({"exit_code": code, "tail": tail, "models": RECORDER.models,
                               "generate_input": RECORDER.generate_input, "max_memory_mb": memory}))  # fmt: skip
    return code


def run_launched(stage: str, args: list[str], work: Path) -> dict[str, Any]:
    record = work / f"{stage}.child.json"
    record.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "configs/accelerate/fsdp.yaml"), "--num_processes", "1", "--num_machines", "1",
           __file__, "--child", stage, "--child-out", str(record), "--", *args]  # fmt: skip
    env = dict(os.environ)
    if not torch_cuda():  # the smoke test: accelerate runs the FSDP config as one plain process (it warns)
        env["ACCELERATE_USE_CPU"] = "true"
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
    if record.is_file():
        got = json.loads(record.read_text())
        got["tail"] = (got.get("tail") or "") + done.stderr[-2000:]
        return got
    return {"exit_code": done.returncode or 1, "tail": (done.stdout + done.stderr)[-4000:], "models": [],
            "generate_input": None, "max_memory_mb": None}  # fmt: skip


def torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _max_memory() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


BIG_POLICY, BIG_RM = "llama-8b-shape", "llama-8b-shape-rm"


def prepare_big(work: Path, shape: str) -> dict[str, Any]:
    """The 8B-shaped Llama with random bf16 weights, built straight on the GPU (CPU: wherever torch is), and
    saved twice: as a causal LM (policy; ``rm-8b`` adds its own head) and as a sequence classifier (the RM
    ``ppo-8b`` scores with), with the tiny Llama's tokenizer (its ids are valid rows of the 128k vocabulary).
    Returns the build's numbers for the report."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    from rewardlab import models

    tokenizer = models.load_tokenizer("offline:tiny-llama")
    started = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = LlamaConfig(**BIG_SHAPES[shape], bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=False, num_labels=1, dtype="bfloat16")  # fmt: skip
    torch.manual_seed(0)
    with torch.device(device):
        policy = LlamaForCausalLM(config).to(torch.bfloat16)
    params = sum(p.numel() for p in policy.parameters())
    policy.save_pretrained(work / BIG_POLICY, safe_serialization=True)
    tokenizer.save_pretrained(work / BIG_POLICY)
    with torch.device("meta"):
        rm = LlamaForSequenceClassification(config)
    rm.model = policy.model  # the same backbone, a new head
    with torch.device(device):
        rm.score = torch.nn.Linear(config.hidden_size, 1, bias=False, dtype=torch.bfloat16)
    torch.nn.init.normal_(rm.score.weight, std=0.02)
    rm.config.reward_mean, rm.config.reward_std = 0.0, 1.0
    rm.save_pretrained(work / BIG_RM, safe_serialization=True)
    tokenizer.save_pretrained(work / BIG_RM)
    del policy, rm
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {"shape": shape, "parameters": params, "build_and_save_s": round(time.perf_counter() - started, 1)}


def run_metrics(stage: str, work: Path) -> dict[str, Any]:
    """Step time and throughput of the 8B stages, from their run's metrics.json."""
    keys = (
        "steps",
        "episodes_per_s",
        "tokens_per_s",
        "generate_time_share",
        "sequences_per_s",
        "train_time_s",
    )
    path = work / stage / "metrics.json"
    if stage not in BIG or not path.is_file():
        return {}
    got = json.loads(path.read_text())
    return {"run_metrics": {k: got[k] for k in keys if k in got}}


def prepare(work: Path) -> Path:
    """An untrained tiny RM (enough for every consumer's mechanics) and the score input file."""
    from rewardlab import models

    rm = work / "rm-untrained" / "model"
    if not (rm / "config.json").is_file():
        models.save_model(
            models.build_reward_model("offline:tiny-rm"), models.load_tokenizer("offline:tiny-rm"), rm
        )
    rows = [
        {"prompt": "What is 2 + 3?", "responses": ["5", "It is six."]},
        {"prompt": "Hi!", "response": "Hello."},
    ]
    (work / "score-in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rm


def selected(only: str | None) -> list[str]:
    if not only:
        return list(STAGES)
    wanted = [s.strip() for s in only.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in STAGES]
    if unknown:
        raise SystemExit(f"--only: unknown stage(s) {', '.join(unknown)} (known: {', '.join(STAGES)})")
    for stage in list(wanted):
        dep = DEPENDS.get(stage)
        while dep and dep not in wanted:
            wanted.append(dep)
            dep = DEPENDS.get(dep)
    return [s for s in STAGES if s in wanted]


def check_imports() -> None:
    missing = []
    for name in NEEDED:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise SystemExit(
            f"missing packages: {', '.join(missing)} (see this script's docstring for the wheels)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="Comma-separated stages (default: all): " + ", ".join(STAGES))
    parser.add_argument("--out", default=str(ROOT / "runs" / "gpu-check"), help="Work folder and JSON.")
    parser.add_argument("--expect-device", default=None, help="Device type every model must run on (cuda).")
    parser.add_argument("--allow-cpu", action="store_true", help="Expect the CPU (smoke test without a GPU).")
    parser.add_argument("--big-shape", choices=sorted(BIG_SHAPES), default=None,
                        help="Shape of the ppo-8b / rm-8b model (default: 8b on CUDA, tiny elsewhere).")  # fmt: skip
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if opts.child:
        return child_main(opts.child, opts.rest, Path(opts.child_out))
    check_imports()
    import torch

    expect = opts.expect_device or ("cpu" if opts.allow_cpu else "cuda")
    work = Path(opts.out)
    work.mkdir(parents=True, exist_ok=True)
    rm = prepare(work)
    stages = selected(opts.only)
    big = None
    if BIG & set(stages):
        big = prepare_big(work, opts.big_shape or ("8b" if torch.cuda.is_available() else "tiny"))
    hooks = install_hooks()
    try:
        results = run_stages(stages, work, rm, expect)
    finally:
        remove_hooks(hooks)
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "expect_device": expect,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "ok": all(r["ok"] for r in results),
        "big_model": big,
        "stages": results,
    }
    (work / "gpu_check.json").write_text(json.dumps(report, indent=1))
    print_table(report)
    print(f"written: {work / 'gpu_check.json'}")
    return 0 if report["ok"] else 1


def run_stages(stages: list[str], work: Path, rm: Path, expect: str) -> list[dict[str, Any]]:
    import torch

    results = []
    for stage in stages:
        args = stage_args(stage, work, rm)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        if stage in LAUNCHED:
            got = run_launched(stage, args, work)
        else:
            RECORDER.models, RECORDER.generate_input, RECORDER._seen = [], None, set()
            with contextlib.redirect_stdout(sys.stderr):
                code, tail = run_in_process(args)
            got = {"exit_code": code, "tail": tail, "models": RECORDER.models,
                   "generate_input": RECORDER.generate_input, "max_memory_mb": _max_memory()}  # fmt: skip
        wall = round(time.perf_counter() - start, 2)
        problems = [] if got["exit_code"] == 0 else [f"exit code {got['exit_code']}"]
        problems += problems_of(got["models"], got["generate_input"], expect)
        results.append({"stage": stage, "ok": not problems, "problems": problems, "wall_s": wall,
                        "max_memory_mb": got["max_memory_mb"], "models": got["models"],
                        "generate_input": got["generate_input"], **run_metrics(stage, work),
                        **({"tail": got["tail"]} if problems else {})})  # fmt: skip
    return results


def print_table(report: dict[str, Any]) -> None:
    print(
        f"gpu_check {report['date']} on {report['device']} (torch {report['torch']}), expect {report['expect_device']}"
    )
    print(
        f"{'stage':12s} {'ok':4s} {'wall s':>7s} {'max MiB':>8s}  models (device/dtype), generate input; problems"
    )
    for r in report["stages"]:
        if r.get("skipped"):
            print(f"{r['stage']:12s} {'skip':4s} {'':>7s} {'':>8s}  {r['skipped']}")
            continue
        models = ", ".join(f"{m['kind']}={m['device']}/{m['dtype']}" for m in r["models"] if m["device"])
        mem = "-" if r["max_memory_mb"] is None else f"{r['max_memory_mb']:.0f}"
        print(f"{r['stage']:12s} {'yes' if r['ok'] else 'NO':4s} {r['wall_s']:7.1f} {mem:>8s}  {models}; "
              f"gen {r['generate_input'] or '-'}; {'; '.join(r['problems']) or '-'}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
