"""`rewardlab export rm RUN_DIR --head NAME --out DIR`: one head of a multi-head RM as a one-output folder.

Why: TRL loads reward models with ``AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)``
(RewardTrainer, ``reward_funcs=path`` in GRPO / RLOO). A rewardlab RM with rubric heads has N outputs and
fails there with a size mismatch. The export keeps the whole network and only the chosen row of the score
layer, so the exported folder scores exactly like that head of the original (checked before saving).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import typer

from rewardlab.commands.apps import emit_json, export_app, fail, handle_errors
from rewardlab.errors import UserError

PROBE = ("How do I reset my router?", "Unplug it for 30 seconds, then plug it back in.")
TOLERANCE = 1e-5  # float32: the sliced head computes the same dot product as the full one


def score_head(model: Any, num_labels: int) -> tuple[str, Any]:
    """The output layer: the last ``nn.Linear`` whose ``out_features`` is ``num_labels`` (``score`` for
    decoders, ``classifier`` for BERT, ``classifier.out_proj`` for RoBERTa)."""
    import torch

    found = None
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module.out_features == num_labels:
            found = (name, module)
    if found is None:
        raise UserError(f"no output layer with {num_labels} outputs in this model; cannot export a head")
    return found


def _per_head(value: Any, index: int) -> Any:
    return value[index] if isinstance(value, list) and len(value) > index else None


def export_rm_head(run_dir: str | Path, head: str, out: str | Path) -> dict[str, Any]:
    """Write the one-output folder for ``head`` and return what was exported (also the --json object)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rewardlab import cards, models
    from rewardlab.scoring import RewardScorer, resolve_model_dir

    folder = resolve_model_dir(run_dir)
    scorer = RewardScorer.from_path(folder)
    heads = list(scorer.heads)
    if head not in heads:
        raise UserError(f"{folder}: no head '{head}' (heads: {', '.join(heads)})")
    index = heads.index(head)
    model, tokenizer = scorer.model, scorer.tokenizer
    pooling = getattr(model.config, "rewardlab_pooling", None)
    if pooling not in (None, models.native_pooling(model.config)):
        raise UserError(
            f"{folder}: the RM pools '{pooling}', which AutoModelForSequenceClassification (and so TRL) "
            f"cannot apply: an exported head would score differently; train it with model.pooling="
            f"{models.native_pooling(model.config)} to export it"
        )
    probes = ([PROBE[0], PROBE[0]], [PROBE[1], "Unplug it."])  # two lengths: the check sees padding too
    before = scorer.score(*probes)[:, index]
    pad_added = None
    if not models.native_matches_mask(model.config):
        pad_added = give_own_pad(model, tokenizer)

    name, layer = score_head(model, len(heads))
    with torch.no_grad():
        layer.weight = torch.nn.Parameter(layer.weight[index : index + 1].clone())
        if layer.bias is not None:
            layer.bias = torch.nn.Parameter(layer.bias[index : index + 1].clone())
    layer.out_features = 1
    config = model.config
    config.num_labels = 1
    config.id2label = {0: head}
    config.label2id = {head: 0}
    config.rewardlab_heads = [head]
    config.rewardlab_exported_head = {"name": head, "index": index, "from": str(folder), "layer": name}
    means, stds = getattr(config, "reward_mean_per_head", None), getattr(config, "reward_std_per_head", None)
    config.reward_mean, config.reward_std = _per_head(means, index), _per_head(stds, index)
    config.reward_mean_per_head = [config.reward_mean] if config.reward_mean is not None else None
    config.reward_std_per_head = [config.reward_std] if config.reward_std is not None else None
    if index != 0:  # the tie model and threshold were fitted on head 0 (overall) only
        config.rewardlab_tie_model = None
        config.rewardlab_tie_threshold = None

    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))

    # Load it the way TRL does and check it scores like the head did; never leave a wrong folder behind.
    trl_model = AutoModelForSequenceClassification.from_pretrained(
        str(tmp), num_labels=1, **models.load_kwargs(False)
    ).eval()
    plain = RewardScorer(trl_model, AutoTokenizer.from_pretrained(str(tmp)), scorer.max_length)
    after_all = plain.score(*probes)[:, 0]
    after = float(after_all[0])
    if float(abs(after_all - before).max()) > TOLERANCE:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"exported head scores {after} where the original scored {before}")

    source_card = cards._local_card_data(folder)
    cfg = _run_config(folder)
    metrics = _run_metrics(folder)
    kept = {k: v for k, v in metrics.items() if k not in ("accuracy_by_head",)}
    head_acc = (metrics.get("accuracy_by_head") or {}).get(head)
    if head != heads[0]:  # the headline accuracy is head 0's; this folder's is its own head's
        kept = {"accuracy": head_acc} if head_acc is not None else {}
    note = (
        f"**Exported head:** `{head}` (output {index} of {len(heads)}: {', '.join(heads)}) of `{folder}`, "
        "as a one-output folder (`num_labels=1`) that TRL's RewardTrainer and `reward_funcs=path` in "
        "GRPO / RLOO load directly. It scores exactly like that head of the original."
    )
    if pad_added:
        note += (
            f" The original tokenizer padded with its eos token, which transformers' last-token pooling "
            f"skips (it would read the token before the end of the answer); this folder's tokenizer pads "
            f"with a token of its own, `{pad_added}`, which no text contains, so plain "
            "`AutoModelForSequenceClassification` reads the last real token as rewardlab does."
        )
    if cfg is None:
        cfg = {"model": {"name_or_path": source_card.get("base_model")}}
    card = cards.build_card(
        "rm", cfg, kept, name=out.name, heads=[head], notes=[note], extra={"exported from": str(folder)}
    )
    card.save(tmp / "README.md")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return {
        "out": str(out),
        "head": head,
        "index": index,
        "heads": heads,
        "source": str(folder),
        "layer": name,
        "probe_score": after,
        "pad_token_added": pad_added,
    }


EXPORT_PAD = "<|rewardlab_pad|>"


def give_own_pad(model: Any, tokenizer: Any) -> str:
    """Give the tokenizer a pad token that no text carries (one new embedding row, only ever masked), so
    transformers' pad-based last-token pooling finds the same token as rewardlab's mask pooling. The new
    row cannot change a score: right padding sits after the last real token and is masked out."""
    tokenizer.add_special_tokens({"pad_token": EXPORT_PAD})
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model.config.pad_token_id = tokenizer.pad_token_id
    return EXPORT_PAD


def _run_config(model_dir: Path) -> dict[str, Any] | None:
    """The run's resolved config (run/config.yaml beside model/), for the card's base model and settings."""
    import yaml

    path = model_dir.parent / "config.yaml"
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def _run_metrics(model_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((model_dir.parent / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


@export_app.command("rm")
@handle_errors
def export_rm(
    run_dir: str = typer.Argument(..., help="An RM run folder (or its model/ folder)."),
    head: str = typer.Option(..., "--head", help="The head to export (e.g. overall)."),
    out: str = typer.Option(..., "--out", help="The folder to write (a one-output HF model folder)."),
    as_json: bool = typer.Option(False, "--json", help="Print what was exported as one JSON object."),
) -> None:
    """Export one head of a reward model as a num_labels=1 folder that TRL loads as a reward model."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if Path(out).resolve() == Path(run_dir).resolve():
        fail("--out must differ from the run folder")
    result = export_rm_head(run_dir, head, out)
    if as_json:
        emit_json(result)
    else:
        print(
            f"exported head '{head}' (output {result['index']} of {len(result['heads'])}) to {result['out']}",
            file=sys.stderr,
        )
