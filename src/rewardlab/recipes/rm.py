"""`rewardlab train rm`: a reward model from rankings, read top to bottom.

Why a plain torch loop and not TRL's RewardTrainer: RewardTrainer takes pairs only (no K-wise rankings, no
ties, one head) and expands a K=4 ranking into 6 pairs = 12 forwards where 4 suffice. Here each comparison
group (prompt + K responses) is one training element: its K responses are encoded once per step and every
pair the ranking implies is formed inside the loss (InstructGPT). accelerate's Accelerator gives the
device and DDP, so the same file runs on one CPU, under `accelerate launch` on 2 CPU processes, or on GPUs.

Steps: 1. data (records, split by prompt) -> 2. encoding (left truncation of prompts, counted) ->
3. labels per head (pairs with soft label, tie flag, margin; record weights) -> 4. model, optimizer,
schedule -> 5. length-grouped batches, resumable by step -> 6. the loop (grad accumulation, clipping,
eval and checkpoints every N steps) -> 7. reward statistics, tie threshold, final eval, save a plain HF
folder with a model card.
"""

from __future__ import annotations

import functools
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab import cards, engines, models, runs
from rewardlab.config import RMConfig
from rewardlab.data.dataset import (
    dataset_meta,
    is_dataset_dir,
    iter_records,
    load_dataset,
    set_aside_gold,
    split_by_prompt,
)
from rewardlab.data.schema import normalize_strength
from rewardlab.errors import UserError
from rewardlab.eval.rm import evaluate_rewards, head_pairs
from rewardlab.param_groups import layerwise_param_groups
from rewardlab.recipes import policy_common as pc
from rewardlab.scoring import RewardScorer, encode_conversations, pad_batch

# ---------------------------------------------------------------- 1. data


def read_dataset(path: str, fmt: str = "auto"):
    """A dataset folder -> ``datasets.Dataset``. A file is imported through the data importer."""
    p = Path(path)
    if is_dataset_dir(p):
        return load_dataset(p), dataset_meta(p)
    if p.is_file():
        return _import_file(p, fmt)
    raise UserError(
        f"{path}: not a dataset folder or a file (create one with `rewardlab data import` or `simulate`)"
    )


def _import_file(path: Path, fmt: str):
    """Import a rater export or canonical file on the fly; rejected rows go to the quarantine file and
    are reported on stderr (never dropped silently)."""
    from rewardlab.data import importing

    out, report = importing.as_dataset(path, fmt=fmt)
    meta = dataset_meta(out)
    if report is not None:
        meta = {**meta, "import": {k: v for k, v in report.to_json().items() if k != "files"}}
        if report.quarantined:
            print(f"{path}: {report.summary()}; quarantine: {report.quarantine}", file=sys.stderr)
    if not is_dataset_dir(out):
        raise UserError(f"{path}: no record could be imported ({report.summary() if report else ''})")
    return load_dataset(out), meta


def load_records(cfg: RMConfig) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Train and eval records plus lineage: ``data.eval`` when set, else a split of train by prompt."""
    if not cfg.data.train:
        raise UserError(
            "data.train is not set: give a dataset folder (from `rewardlab data import` or `simulate`)"
        )
    train_ds, train_meta = read_dataset(cfg.data.train, cfg.data.format)
    info: dict[str, Any] = {
        "train": cfg.data.train,
        "train_fingerprint": train_meta.get("fingerprint"),
        "train_meta": {k: v for k, v in train_meta.items() if k not in ("records",)},
    }
    if cfg.data.eval:
        eval_ds, eval_meta = read_dataset(cfg.data.eval, cfg.data.format)
        info.update(eval=cfg.data.eval, eval_fingerprint=eval_meta.get("fingerprint"))
    else:
        train_ds, eval_ds = split_by_prompt(train_ds, cfg.data.eval_fraction, cfg.data.split_seed)
        info.update(eval=None, eval_fraction=cfg.data.eval_fraction, split_seed=cfg.data.split_seed)
    train, n_gold_train = set_aside_gold(list(iter_records(train_ds)), cfg.data.use_gold)
    held, n_gold_eval = set_aside_gold(list(iter_records(eval_ds)), cfg.data.use_gold)
    info["gold_set_aside"] = {"train": n_gold_train, "eval": n_gold_eval}
    if not train:
        raise UserError(f"{cfg.data.train}: no training records (after the eval split)")
    return train, held, info


# ---------------------------------------------------------------- 2. encoding, 3. labels


class PairCol(IntEnum):
    """The columns of a pair row (float64), named once here: a Group's rows hold the columns before GROUP,
    collate appends GROUP (the group's index in the batch). Add a field before GROUP and every reader
    follows."""

    BETTER = 0  # response index of the better answer (within the group; flat within a batch)
    WORSE = 1
    TIE = 2  # 1.0 for a tied pair
    P = 3  # soft label: P(better beats worse)
    MARGIN = 4
    GROUP = 5


GROUP_COLS = int(PairCol.GROUP)  # columns of a Group's pair rows
BATCH_COLS = GROUP_COLS + 1  # columns of a Batch's pair rows


@dataclass
class Group:
    """One training element: a prompt's K encoded responses and the pairs each head learns from."""

    ids: list[np.ndarray]  # int32 token ids per response
    ranks: list[int]
    weight: float
    pairs: list[np.ndarray]  # per head: [P, GROUP_COLS] rows, columns named by PairCol

    @property
    def length(self) -> int:
        return max(len(x) for x in self.ids)


def encode_records(
    tokenizer: Any,
    records: list[dict],
    max_length: int,
    chunk: int = 4096,
    max_prompt_length: int | None = None,
) -> tuple[list[list[np.ndarray]], dict]:
    """Token ids per record and response (int32 arrays); counts records whose prompt or response was
    truncated. Encodes ``chunk`` records at a time and keeps only compact arrays: a fast tokenizer's batch
    output (offsets, masks, Python ints) is ~50x larger than the ids, which at 1M judgments was most of the
    recipe's 6.9 GB peak RSS (scripts/bench_scale.py)."""
    from rewardlab import models

    per_record: list[list[np.ndarray]] = [[] for _ in records]
    cut_prompt, cut_response = set(), set()
    cache: dict[int, str] = {}
    for start in range(0, len(records), chunk):
        prompts, responses, prefixes, owner = [], [], [], []
        for n in range(start, min(start + chunk, len(records))):
            rec = records[n]
            key = id(rec["prompt"])
            if key not in cache:
                cache[key] = models.format_prompt(tokenizer, rec["prompt"])
            for resp in rec["responses"]:
                prompts.append(rec["prompt"])
                responses.append(resp)
                prefixes.append(cache[key])
                owner.append(n)
        enc = encode_conversations(
            tokenizer,
            prompts,
            responses,
            max_length,
            prompt_prefixes=prefixes,
            max_prompt_length=max_prompt_length,
        )
        for i, n in enumerate(owner):
            per_record[n].append(np.asarray(enc.ids[i], dtype=np.int32))
            if enc.prompt_truncated[i]:
                cut_prompt.add(n)
            if enc.response_truncated[i]:
                cut_response.add(n)
    counts = {"truncated_prompt_records": len(cut_prompt), "truncated_response_records": len(cut_response)}
    return per_record, counts


def build_groups(records: list[dict], ids: list[list[np.ndarray]], cfg: RMConfig) -> list[Group]:
    """Attach each record's labels: pairs per head with soft label, tie flag and margin; the weight."""
    margins = (
        None if cfg.loss.margin is None else {normalize_strength(k): v for k, v in cfg.loss.margin.items()}
    )
    groups = []
    for rec, rec_ids in zip(records, ids, strict=True):
        margin = 0.0
        if margins is not None and rec.get("strength") is not None:
            strength = normalize_strength(rec["strength"])
            if strength not in margins:
                raise UserError(
                    f"record {rec['id']}: strength '{rec['strength']}' is not in loss.margin "
                    f"(known: {', '.join(margins)})"
                )
            margin = float(margins[strength])
        per_head = []
        for head in cfg.heads:
            rows = [
                (
                    w,
                    lo,
                    float(tie),
                    p if cfg.loss.use_soft_labels or tie else 1.0,
                    margin if head == "overall" else 0.0,
                )
                for w, lo, tie, p in head_pairs(rec, head)
            ]
            per_head.append(np.array(rows, dtype=np.float64).reshape(-1, GROUP_COLS))
        weight = float(rec.get("weight", 1.0)) if cfg.loss.use_weights else 1.0
        groups.append(Group(rec_ids, list(rec["ranks"]), weight, per_head))
    return groups


def tie_counts(groups: list[Group], n_heads: int) -> list[tuple[int, int]]:
    """Per head: (tied training pairs, all training pairs)."""
    out = []
    for h in range(n_heads):
        rows = [g.pairs[h] for g in groups if len(g.pairs[h])]
        out.append((int(sum(r[:, PairCol.TIE].sum() for r in rows)), int(sum(len(r) for r in rows))))
    return out


def tie_models(counts: list[tuple[int, int]], cfg: RMConfig) -> list[str | None]:
    """Per head: the configured tie model when the head has enough ties (``loss.min_ties`` and
    ``loss.min_tie_share``), else None: Bradley-Terry, its few ties trained as p = 0.5 pairs. A tie
    model changes what a reward gap means (Rao-Kupper's theta shifts every decided pair), so one stray
    tie must not switch a whole head over; with no ties a tie model could not learn its parameter."""
    out = []
    for n_ties, n_pairs in counts:
        enough = n_ties >= cfg.loss.min_ties and n_ties >= cfg.loss.min_tie_share * n_pairs
        out.append(cfg.loss.ties if enough else None)
    return out


def listwise_head(h: int, cfg: RMConfig) -> bool:
    """Head 0 under ``loss.kind: plackett-luce`` learns from whole rankings (ties by Breslow), not pairs."""
    return h == 0 and cfg.loss.kind == "plackett-luce" and cfg.heads[0] == "overall"


def tie_start(counts: list[tuple[int, int]], ties: list[str | None], cfg: RMConfig) -> list[float | None]:
    """Per head: the starting raw value of the learned tie parameter (``losses.tie_raw_init`` from the
    head's tie share), None for Bradley-Terry and listwise heads and when ``loss.tie_param`` fixes it."""
    from rewardlab import losses

    if cfg.loss.tie_param is not None:
        return [None] * len(ties)
    return [
        losses.tie_raw_init(n_ties / n_pairs, kind) if kind and not listwise_head(h, cfg) else None
        for h, ((n_ties, n_pairs), kind) in enumerate(zip(counts, ties, strict=True))
    ]


def tie_params(ties: list[str | None], raw: Any, cfg: RMConfig) -> list[Any]:
    """Per head: the tie parameter the loss uses now (a tensor when learned, the fixed float, or None)."""
    from rewardlab import losses

    if raw is None or cfg.loss.tie_param is not None:
        return [
            cfg.loss.tie_param if kind and not listwise_head(h, cfg) else None for h, kind in enumerate(ties)
        ]
    return [
        losses.tie_param_from_raw(raw[h], kind) if kind and not listwise_head(h, cfg) else None
        for h, kind in enumerate(ties)
    ]


def tie_report(
    counts: list[tuple[int, int]], ties: list[str | None], params: list[Any], cfg: RMConfig
) -> dict:
    """What each head trained with, for metrics and the model config: model, parameter, tie counts."""
    return {
        "tie_model_by_head": {
            h: "plackett-luce" if listwise_head(n, cfg) else kind or "bradley-terry"
            for n, (h, kind) in enumerate(zip(cfg.heads, ties, strict=True))
        },
        "tie_param_by_head": {
            h: None if p is None else float(p) for h, p in zip(cfg.heads, params, strict=True)
        },
        "tie_param_learned": cfg.loss.tie_param is None,
        "train_tie_pairs_by_head": {h: c[0] for h, c in zip(cfg.heads, counts, strict=True)},
        "train_tie_share_by_head": {
            h: (c[0] / c[1] if c[1] else 0.0) for h, c in zip(cfg.heads, counts, strict=True)
        },
    }


def check_heads(groups: list[Group], cfg: RMConfig) -> None:
    """Every head has training pairs (the names themselves are checked when the config is built)."""
    for h, head in enumerate(cfg.heads):
        if not any(len(g.pairs[h]) for g in groups):
            where = "ranks" if head == "overall" else f"scores.{head}"
            raise UserError(
                f"heads: '{head}' has no training pairs (no record of {cfg.data.train} has {where})"
            )


# ---------------------------------------------------------------- 5. batches


def epoch_batches(
    lengths: list[int], batch_size: int, seed: int, epoch: int, by_length: bool, bucket: int
) -> list[list[int]]:
    """Batches of group indices for one epoch, a pure function of (seed, epoch): resuming only needs the
    step number. The recipe passes the global batch (batch_size x processes x grad_accum), so the batches
    do not depend on the process layout; ``step_batches`` shares each out. Length grouping: shuffle, sort
    by length inside buckets of batch_size * bucket, cut into batches, shuffle the batches (so lengths do
    not drift through the epoch)."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if by_length:
        mega = batch_size * bucket
        order = [
            g
            for i in range(0, len(order), mega)
            for g in sorted(order[i : i + mega], key=lambda g: -lengths[g])
        ]
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if by_length:
        rng.shuffle(batches)
    return batches


def groups_per_step(groups: list[Group], cfg: RMConfig) -> int:
    """Groups per process and micro-batch. ``batch_unit: pairs`` reads ``train.batch_size`` as pairs' worth
    of responses (2 each): a step of K-wise rankings holds ``2 * batch_size / K`` of them (mean K, at least
    1). Why: a step's memory then does not grow with K, and at equal epochs K-wise data takes as many
    optimizer steps as the same responses in pairs; with ``groups`` (8 rankings of 4 per step) a K=4 epoch
    has half the steps, each from fewer distinct prompts, and trained ~1.5 points below TRL's expanded pairs
    at the same lr (docs/benchmarks.md, K-wise quality)."""
    if cfg.batch_unit == "groups" or not groups:
        return cfg.train.batch_size
    mean_k = sum(len(g.ids) for g in groups) / len(groups)
    return max(1, round(2 * cfg.train.batch_size / mean_k))


def step_batches(global_batch: list[int], world: int, rank: int, accum: int) -> list[list[int]]:
    """The ``accum`` micro-batches this process runs for one optimizer step: its share of the step's global
    batch (``epoch_batches`` cut with batch_size x world x accum). The global batches are the same for any
    process layout, so 1 process x 8 and 2 processes x 4 train on the same groups at every step. A share can
    be empty at the end of an epoch (fewer groups than micro-batches); the loop then runs a zero-weight
    forward so DDP stays in lockstep."""
    parts = np.array_split(np.asarray(global_batch, dtype=np.int64), world * accum)
    return [[int(i) for i in parts[rank * accum + a]] for a in range(accum)]


def head_weight_totals(groups: list[Group]) -> np.ndarray:
    """Per head: the summed record weight of the groups that have pairs for that head (what a head's
    weighted group average divides by)."""
    out = np.zeros(len(groups[0].pairs) if groups else 0)
    for g in groups:
        for h, rows in enumerate(g.pairs):
            if len(rows):
                out[h] += g.weight
    return out


def head_scales(micro: list[Group], step_totals: np.ndarray, n_micro: int) -> list[float]:
    """Factors that turn a micro-batch's per-head weighted average into its share of the whole step's
    weighted average: DDP and accumulation then average ``n_micro`` of them into exactly the loss of the
    global batch, whatever the process layout (unequal micro-batch sizes or weights included)."""
    local = head_weight_totals(micro)
    return [float(local[h] * n_micro / t) if t > 0 else 0.0 for h, t in enumerate(step_totals)]


@dataclass
class Batch:
    input_ids: Any
    attention_mask: Any
    seq_group: Any  # group index of each sequence
    ranks: Any
    weight: Any
    pairs: list[Any]  # per head: tensor [P, BATCH_COLS], columns named by PairCol
    n_groups: int
    tokens: int
    padded: int


def collate(groups: list[Group], pad_id: int) -> Batch:
    """Flatten groups to sum(K) sequences; pair indices are shifted to the flat positions."""
    import torch

    seqs, seq_group, ranks, heads = [], [], [], [[] for _ in groups[0].pairs]
    for g_idx, g in enumerate(groups):
        offset = len(seqs)
        seqs.extend(g.ids)
        seq_group.extend([g_idx] * len(g.ids))
        ranks.extend(g.ranks)
        for h, rows in enumerate(g.pairs):
            if len(rows):
                shifted = rows.copy()
                shifted[:, [PairCol.BETTER, PairCol.WORSE]] += offset
                heads[h].append(np.hstack([shifted, np.full((len(rows), 1), g_idx)]))
    input_ids, mask = pad_batch(seqs, pad_id)
    pairs = [torch.from_numpy(np.vstack(h) if h else np.zeros((0, BATCH_COLS))) for h in heads]
    tokens = int(mask.sum())
    return Batch(
        input_ids,
        mask,
        torch.tensor(seq_group),
        torch.tensor(ranks),
        torch.tensor([g.weight for g in groups], dtype=torch.float32),
        pairs,
        len(groups),
        tokens,
        int(mask.numel()) - tokens,
    )


# ---------------------------------------------------------------- packed (padding-free) forward


def check_packing(model: Any, num_processes: int, engine: str = "single") -> None:
    """``train.packing`` is for decoders that pool at the last token, on one process; refused otherwise, in
    one line before training (a packed encoder would attend across sequences: no causal mask to split)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    native = models.native_pooling(base.config)
    pooling = getattr(base.config, "rewardlab_pooling", None) or native
    if native != "last" or pooling != "last":
        raise UserError(
            f"train.packing=true: {base.config.model_type} is an encoder or pools by '{pooling}'; packing needs "
            "a decoder that reads the last token (set train.packing=false)"
        )
    if num_processes > 1 or engine != "single":
        raise UserError(
            "train.packing=true runs on one process only, without DeepSpeed or FSDP (the packed forward calls "
            "the backbone outside the engine's wrapper); set train.packing=false under accelerate launch"
        )


def pack(seqs: list[Any]) -> tuple[Any, Any, Any]:
    """One row [1, sum(len)] of the sequences, position ids restarting at 0 per sequence, and each
    sequence's last position. transformers reads packed sequences from such position ids when no attention
    mask is given: flash-attention 2 takes its varlen path, SDPA/eager/flex get a block-diagonal causal mask
    (masking_utils.find_packed_sequence_indices)."""
    import torch

    lengths = [len(s) for s in seqs]
    ids = torch.from_numpy(np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs]))[None]
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    ends = torch.tensor(np.cumsum(lengths) - 1)
    return ids, positions, ends


def packed_logits(model: Any, seqs: list[Any], device: Any) -> Any:
    """The reward heads' outputs [len(seqs), n_heads] from one packed row: the backbone's last hidden
    states at each sequence's last token, through the model's own (dropout and) head, as the padded
    forward's last-token pooling reads them."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    ids, positions, ends = pack(seqs)
    backbone = getattr(base, base.base_model_prefix)
    # use_cache=False: with a cache transformers does not look for packed sequences in the position ids
    hidden = backbone(
        input_ids=ids.to(device), position_ids=positions.to(device), use_cache=False
    ).last_hidden_state
    pooled = hidden[0, ends.to(device)]
    dropout = getattr(base, "dropout", None)
    if isinstance(dropout, torch.nn.Dropout):
        pooled = dropout(pooled)
    return getattr(base, models.score_head_name(base))(pooled)


def flat_sequences(groups: list[Group]) -> list[Any]:
    """The sequences of ``groups`` in collate's order (pair indices point into this list)."""
    return [s for g in groups for s in g.ids]


# ---------------------------------------------------------------- the loss of one batch


def batch_loss(
    logits: Any,
    batch: Batch,
    cfg: RMConfig,
    ties: list[str | None],
    scales: list[float] | None = None,
    params: list[Any] | None = None,
) -> tuple[Any, dict[str, float]]:
    """Head 0's ranking loss + head_weight * mean of the rubric heads' losses, each with its reward
    centering term.

    ``scales`` (per head, from ``head_scales``) re-weight each head's loss to its share of the step's
    global batch, so the gradient does not depend on how the batch was split over processes (and a
    zero-weight filler micro-batch adds nothing, centering included). ``params`` are the per-head tie
    parameters (``tie_params``; default: the fixed ``loss.tie_param``)."""
    import torch

    from rewardlab import losses

    parts: dict[str, float] = {}
    head_losses = []
    for h, head in enumerate(cfg.heads):
        rows = batch.pairs[h].to(logits.device)
        r = logits[:, h]
        if h == 0 and cfg.loss.kind == "plackett-luce" and head == "overall":
            loss_h = losses.plackett_luce_loss(
                r,
                batch.ranks.to(logits.device),
                batch.seq_group.to(logits.device),
                batch.n_groups,
                batch.weight.to(logits.device),
            )
        else:
            loss_h = losses.pairwise_ranking_loss(
                r,
                rows[:, PairCol.BETTER].long(),
                rows[:, PairCol.WORSE].long(),
                rows[:, PairCol.GROUP].long(),
                batch.n_groups,
                p=rows[:, PairCol.P].to(r.dtype),
                tie=rows[:, PairCol.TIE].bool()
                if ties[h]
                else None,  # a Bradley-Terry head's ties are p = 0.5
                margin=rows[:, PairCol.MARGIN].to(r.dtype),
                weight=batch.weight.to(logits.device, r.dtype),
                tie_model=ties[h],
                tie_param=(params[h] if params is not None else cfg.loss.tie_param) if ties[h] else 1.5,
            )
        parts[f"loss_{head}"] = float(loss_h.detach())
        if cfg.loss.center_coef:
            center = losses.centering_loss(
                r,
                rows[:, PairCol.BETTER].long(),
                rows[:, PairCol.WORSE].long(),
                rows[:, PairCol.GROUP].long(),
                batch.n_groups,
                cfg.loss.center_coef,
                batch.weight.to(logits.device, r.dtype),
            )
            parts[f"center_{head}"] = float(center.detach())
            loss_h = loss_h + center
        head_losses.append(loss_h if scales is None else loss_h * scales[h])
    total = head_losses[0]
    if len(head_losses) > 1:
        total = total + cfg.loss.head_weight * torch.stack(head_losses[1:]).mean()
    rows0 = batch.pairs[0]
    decided = rows0[:, PairCol.TIE] == 0
    if bool(decided.any()):
        better, worse = rows0[decided, PairCol.BETTER].long(), rows0[decided, PairCol.WORSE].long()
        d = (logits[better, 0] - logits[worse, 0]).detach()
        parts["batch_accuracy"] = float(((d > 0).float() + 0.5 * (d == 0).float()).mean())
    return total, parts


# ---------------------------------------------------------------- weight averaging


class WeightAverage:
    """EMA or SWA (a plain running mean) of the trainable weights from step ``start`` on; the averaged
    weights replace the live ones before the final evaluation and save. Why: on small, noisy human data
    the last SGD iterate is one draw from a noisy walk; averaging the tail of the walk gives a flatter
    solution (Izmailov et al. 2018, SWA), at the cost of one fp32 copy of the trainable weights. Under
    ZeRO-3 and FSDP2 each process averages (and checkpoints) its own shard (``engines.local_tensor``)."""

    def __init__(self, kind: str, decay: float, start: int):
        self.kind, self.decay, self.start = kind, decay, start
        self.count = 0
        self.avg: dict[str, Any] = {}

    def update(self, model: Any, step: int) -> None:
        import torch

        if self.kind == "none" or step < self.start:
            return
        with torch.no_grad():
            for name, p in model.named_parameters():
                if not p.requires_grad:
                    continue
                p = engines.local_tensor(p)
                if self.count == 0:
                    self.avg[name] = p.detach().float().clone()
                elif self.kind == "ema":
                    self.avg[name].lerp_(p.detach().float(), 1.0 - self.decay)
                else:
                    self.avg[name].add_(p.detach().float() - self.avg[name], alpha=1.0 / (self.count + 1))
        self.count += 1

    def copy_to(self, model: Any) -> None:
        import torch

        if not self.count:
            return
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in self.avg:
                    p = engines.local_tensor(p)
                    p.copy_(self.avg[name].to(p.dtype))


# ---------------------------------------------------------------- 6. checkpoints


def trainable_state(model: Any) -> dict[str, Any]:
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    accelerator: Any,
    cfg: RMConfig,
    totals: dict[str, float],
    averager: WeightAverage | None = None,
    tie_raw: Any = None,
) -> None:
    """The trainable weights plus the shared protocol's optimizer, scheduler, RNG and state
    (runs.save_checkpoint); ``totals`` are the run's counters, ``tie_raw`` the learned tie parameters (their
    values now, whole). Under DeepSpeed and FSDP the weights, tie parameters and optimizer are the engine's
    sharded checkpoint (``engine/``, every process writes its part) and each process saves its shard of
    the weight average (``averaged_<rank>.safetensors``)."""
    from safetensors.torch import save_file

    _check_weights(model, step, run_dir, accelerator)
    sharded = engines.sharded_state(accelerator)
    rank = accelerator.process_index

    def write_weights(folder: Path) -> None:
        if not sharded:
            inner = engines.inner(accelerator, model, "model")
            save_file(trainable_state(inner), str(folder / "trainable.safetensors"))
        if not sharded and averager is not None and averager.count:
            save_file(averager.avg, str(folder / "averaged.safetensors"))

    def write_shards(folder: Path) -> None:
        engines.save_state(accelerator, folder)
        if averager is not None and averager.count:
            save_file(averager.avg, str(folder / f"averaged_{rank}.safetensors"))

    runs.save_checkpoint(
        run_dir,
        step,
        accelerator,
        optimizer=None if sharded else optimizer,
        scheduler=scheduler,
        write_weights=write_weights,
        write_shards=write_shards if sharded else None,
        state={
            "totals": totals,
            "averaged_steps": averager.count if averager is not None else 0,
            "tie_raw": None if tie_raw is None else [float(x) for x in tie_raw.detach().cpu()],
            "engine": engines.describe(accelerator),
        },
        config_fingerprint=runs.resume_fingerprint(cfg),
        keep=cfg.keep_checkpoints,
    )


def _check_weights(model: Any, step: int, run_dir: Path, accelerator: Any = None) -> None:
    """Refuse to save diverged weights. ``accelerator`` given: the prepared model, each process checking its
    shard and all deciding together (engines.nonfinite_weight); else a plain model on one process."""
    if accelerator is None:
        bad = runs.first_nonfinite_weight(model.named_parameters())
    else:
        bad = engines.nonfinite_weight(accelerator, accelerator.unwrap_model(model).named_parameters())
    if bad is not None:
        runs.stop_on_nonfinite("rm", f"weight {bad}", math.nan, step, runs.latest_checkpoint(run_dir))


def load_checkpoint(
    ckpt: Path,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    accelerator: Any,
    cfg: RMConfig,
    averager: WeightAverage | None = None,
    tie_raw: Any = None,
) -> tuple[int, dict[str, float]]:
    """Restore what ``save_checkpoint`` wrote into the prepared model and optimizer; returns the step to
    continue from and the run's counters. A checkpoint from another engine is refused (its files differ)."""
    from safetensors.torch import load_file

    sharded = engines.sharded_state(accelerator)
    if sharded:
        engines.load_state(accelerator, ckpt)  # weights, tie parameters, optimizer; before our RNG below
    state = runs.load_checkpoint(
        ckpt,
        accelerator,
        optimizer=None if sharded else optimizer,
        scheduler=scheduler,
        config_fingerprint=runs.resume_fingerprint(cfg),
    )
    saved_engine = state.get("engine", "ddp" if state.get("world_size", 1) > 1 else "single")
    if sharded != (saved_engine in engines.SHARDED_STATE):
        raise UserError(
            f"{ckpt}: written under {saved_engine}, resumed under {engines.describe(accelerator)}; resume "
            "under the engine that wrote it"
        )
    if not sharded:
        weights = load_file(str(ckpt / "trainable.safetensors"))
        inner = engines.inner(accelerator, model, "model")
        missing, unexpected = inner.load_state_dict(weights, strict=False)
        bad = [k for k in weights if k in unexpected]
        if bad:
            raise UserError(f"{ckpt}: checkpoint weights do not fit the model (e.g. {bad[0]})")
        if tie_raw is not None and state.get("tie_raw") is not None:
            import torch

            param = engines.inner_param(accelerator, model, "tie_raw")
            with torch.no_grad():
                param.copy_(torch.tensor(state["tie_raw"], dtype=param.dtype))
    if averager is not None and state.get("averaged_steps"):
        name = f"averaged_{accelerator.process_index}.safetensors" if sharded else "averaged.safetensors"
        averager.avg = load_file(str(ckpt / name), device=str(accelerator.device))
        averager.count = int(state["averaged_steps"])
    return int(state["step"]), dict(state.get("totals") or {})


# ---------------------------------------------------------------- 7. after training


def stats_sample(records: list[dict], cfg: RMConfig) -> list[dict]:
    """A seeded sample of training records holding about ``stats_max_responses`` responses."""
    rng = random.Random(cfg.train.seed)
    order = list(range(len(records)))
    rng.shuffle(order)
    chosen, n_resp = [], 0
    for i in order:
        if n_resp >= cfg.stats_max_responses:
            break
        chosen.append(records[i])
        n_resp += len(records[i]["responses"])
    return chosen


def statistics_from_rewards(
    chosen: list[dict], rewards: list[np.ndarray], cfg: RMConfig, ties: list[str | None]
) -> dict:
    """Mean/std of rewards on the sampled training responses, per head, for PPO's whitening; and the tie
    threshold: the reward gap below which the model calls a tie, set so that the share of training pairs
    called ties matches the share of human ties (0 when training had no ties)."""
    flat = np.concatenate(rewards, axis=0).astype(np.float64)
    gaps, n_ties = [], 0
    for rec, r in zip(chosen, rewards, strict=True):
        for w, lo, tie, _ in head_pairs(rec, cfg.heads[0]):
            gaps.append(abs(float(r[w, 0] - r[lo, 0])))
            n_ties += int(tie)
    threshold = float(np.quantile(gaps, n_ties / len(gaps))) if gaps and n_ties and ties[0] else 0.0
    return {
        "reward_mean": float(flat[:, 0].mean()),
        "reward_std": float(flat[:, 0].std()),
        "reward_mean_per_head": [float(x) for x in flat.mean(axis=0)],
        "reward_std_per_head": [float(x) for x in flat.std(axis=0)],
        "stats_responses": int(flat.shape[0]),
        "tie_threshold": threshold,
    }


def evaluate_from_rewards(
    records: list[dict],
    rewards: list[np.ndarray],
    cfg: RMConfig,
    ties: list[str | None],
    threshold: float | None,
    tie_param: float | None = None,
    tie_share: float = 0.0,
) -> dict:
    """Held-out metrics from rewards already computed (the final evaluation shares its scoring pass with
    the reward statistics); ``tie_param`` is head 0's (learned) tie parameter (calibration under ties).

    ``threshold`` None (evaluation during training): the tie threshold is set as at the end of training
    (``statistics_from_rewards``), so that the model calls ties at the training pairs' tie share, but from the
    held-out reward gaps (no labels read), which saves scoring the training set at every evaluation."""
    if not records:
        return {"accuracy": None, "n_pairs": 0, "ece": None, "agreement_ceiling": None}
    if threshold is None:
        gaps = [abs(float(r[w, 0] - r[lo, 0])) for rec, r in zip(records, rewards, strict=True)
                for w, lo, _, _ in head_pairs(rec, cfg.heads[0])]  # fmt: skip
        threshold = float(np.quantile(gaps, tie_share)) if gaps and tie_share and ties[0] else 0.0
    param = tie_param if tie_param is not None else cfg.loss.tie_param
    # a listwise head 0 is calibrated as Bradley-Terry: Plackett-Luce (ties by Breslow) has no tie parameter,
    # its pairwise probability is sigmoid(r_w - r_l), so a fixed loss.tie_param must not turn it Rao-Kupper
    kind = ties[0] if param is not None and not listwise_head(0, cfg) else None
    return evaluate_rewards(records, rewards, cfg.heads, kind, param or 1.5, threshold)


def _card_pooling(model: Any) -> str | None:
    """The pooling the card's usage snippet must apply: None when transformers' own class does the same."""
    from rewardlab import models

    pooling = getattr(model.config, "rewardlab_pooling", None) or models.native_pooling(model.config)
    return None if models.native_matches_mask(model.config) else pooling  # pad = eos: pool by mask


def scoring_section(model: Any) -> str:
    """Model-card section: the plain-transformers lines that score like `rewardlab score` (pooling-aware)."""
    from rewardlab import models

    pooling = getattr(model.config, "rewardlab_pooling", None) or models.native_pooling(model.config)
    cap = getattr(model.config, "rewardlab_max_prompt_length", None)
    cut = (
        f" It trained on prompts cut to their last {cap} tokens (`rewardlab score` cuts them the same way):"
        " the lines match it when the prompt is at most that long."
        if cap
        else ""
    )
    return "\n".join(
        [
            "## Scoring in plain transformers",
            f"Pooling: `{pooling}`. These lines give the same rewards as `rewardlab score`:{cut}",
            "```python",
            models.scoring_snippet(model.config).rstrip("\n"),
            "```",
            "",
        ]
    )


def save_model(
    model: Any,
    tokenizer: Any,
    out: Path,
    cfg: RMConfig,
    stats: dict,
    ties: list[str | None],
    params: list[float | None] | None = None,
) -> None:
    """A plain HF folder: heads in id2label + rewardlab_heads, reward stats, tie model (head 0's, read by
    scoring and `eval rm`, and every head's in rewardlab_tie_models) with its trained parameter."""
    params = params if params is not None else [cfg.loss.tie_param if k else None for k in ties]
    config = model.config
    config.id2label = dict(enumerate(cfg.heads))
    config.label2id = {h: i for i, h in enumerate(cfg.heads)}
    config.rewardlab_heads = list(cfg.heads)
    config.rewardlab_max_length = cfg.data.max_length
    config.rewardlab_max_prompt_length = cfg.max_prompt_length  # scoring cuts prompts as training did
    config.rewardlab_tie_model = (
        {"kind": ties[0], "param": params[0]} if ties[0] and params[0] is not None else None
    )
    config.rewardlab_tie_models = [
        {
            "head": h,
            "kind": "plackett-luce" if listwise_head(n, cfg) else k if p is not None else "bradley-terry",
            "param": p,
        }
        for n, (h, k, p) in enumerate(zip(cfg.heads, ties, params, strict=True))
    ]
    config.rewardlab_tie_threshold = stats["tie_threshold"]
    for key in ("reward_mean", "reward_std", "reward_mean_per_head", "reward_std_per_head"):
        setattr(config, key, stats[key])
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))


# ---------------------------------------------------------------- the recipe


def check_distributed(accelerator: Any, cfg: RMConfig) -> None:
    """What no engine can train correctly, refused before any work (engines.refuse_pure_bf16). Every engine
    runs the loop, its checkpoints, resume, mid-run eval and weight averaging (each process averages its
    own shard)."""
    engines.refuse_pure_bf16(cfg, "RM")


def make_accelerator(cfg: RMConfig) -> Any:
    """gloo on CPU even without ACCELERATE_USE_CPU. ``train.bf16`` asks for bf16 autocast; otherwise
    accelerate's own setting (`accelerate launch --mixed_precision`, i.e. ACCELERATE_MIXED_PRECISION)
    decides. accelerate keeps its state per process, so an earlier run in this process (tests, a pipeline)
    with another precision is reset first rather than silently reused. Under DeepSpeed the plugin takes
    the run's accumulation and clipping (engines.make_accelerator)."""
    wanted = "bf16" if cfg.train.bf16 else os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    return engines.make_accelerator(cfg, wanted)


@dataclass
class Context:
    """What the loop's pieces share; built once by ``setup``, read by ``train_step``, ``evaluate_live`` and
    ``finish``. ``counters`` are the run's throughput counters: they are metrics *and* checkpoint state (a
    resumed run reports its throughput over the whole run)."""

    cfg: RMConfig
    accelerator: Any
    run_dir: Path
    say: Any
    tokenizer: Any
    train_recs: list[dict]
    eval_recs: list[dict]
    data_info: dict[str, Any]
    trunc: dict[str, int]
    groups: list[Group]
    counts: list[tuple[int, int]]
    ties: list[str | None]
    model: Any
    build_model: Any
    pad_id: int
    tie_raw: Any
    optimizer: Any
    scheduler: Any
    averager: WeightAverage
    steps_per_epoch: int
    total_steps: int
    global_batch: int
    start_step: int = 0
    ckpt: Path | None = None
    tracker: Any = None
    counters: dict[str, float] | None = None
    epoch_cache: dict[int, list[list[int]]] | None = None
    last: dict[str, float] | None = None

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


def setup(cfg: RMConfig) -> Context:
    """Steps 1-5: data, encoding, labels per head, model/optimizer/schedule, run folder and resume."""
    import torch
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    from rewardlab import models
    from rewardlab.tracking import open_tracker

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    accelerator = make_accelerator(cfg)
    main = accelerator.is_main_process
    pc.check_launch(accelerator)
    check_distributed(accelerator, cfg)
    set_seed(cfg.train.seed)
    say = (lambda msg: print(msg, file=sys.stderr)) if main else (lambda msg: None)
    # a full or read-only disk fails here, before any model loads, not at the first checkpoint
    run_dir = runs.check_writable(cfg.output_dir)

    # 1. data
    train_recs, eval_recs, data_info = load_records(cfg)
    say(f"data: {len(train_recs)} train / {len(eval_recs)} eval records")

    # 2. encoding: every response once, prompts cut from the left when too long (nothing dropped)
    models.check_model_source(
        models.resolve(cfg.model.name_or_path),
        cfg.model.name_or_path,
        cfg.model.allow_pickle,
        cfg.model.trust_remote_code,
    )
    tokenizer = models.load_tokenizer(cfg.model.name_or_path, trust_remote_code=cfg.model.trust_remote_code)
    ids, trunc = encode_records(
        tokenizer, train_recs, cfg.data.max_length, max_prompt_length=cfg.max_prompt_length
    )
    if trunc["truncated_prompt_records"] or trunc["truncated_response_records"]:
        cap = f", prompts to their last {cfg.max_prompt_length}" if cfg.max_prompt_length else ""
        say(
            f"truncated to {cfg.data.max_length} tokens{cap}: {trunc['truncated_prompt_records']} records had "
            f"prompts cut from the left, {trunc['truncated_response_records']} had responses cut on the right "
            "(all kept)"
        )

    # 3. labels per head
    groups = build_groups(train_recs, ids, cfg)
    check_heads(groups, cfg)
    counts = tie_counts(groups, len(cfg.heads))
    ties = tie_models(counts, cfg)
    start_raw = tie_start(counts, ties, cfg)

    # 4. model, optimizer, schedule
    lora = cfg.model.lora.model_dump() if cfg.model.lora else None

    def build_model() -> Any:
        built = models.build_reward_model(
            cfg.model.name_or_path,
            num_heads=len(cfg.heads),
            head_names=list(cfg.heads),
            lora=lora,
            dtype=cfg.model.dtype,
            trust_remote_code=cfg.model.trust_remote_code,
            allow_pickle=cfg.model.allow_pickle,
            pooling=cfg.model.pooling,
            attn_implementation=cfg.model.attn_implementation,
            quantization=cfg.model.quantization,
        )
        if cfg.disable_dropout:
            for module in built.modules():
                if isinstance(module, torch.nn.Dropout):
                    module.p = 0.0
        if cfg.train.gradient_checkpointing:
            models.enable_checkpointing(built)
        return built

    model = build_model()
    if cfg.train.packing:
        check_packing(model, accelerator.num_processes, engines.kind(accelerator))  # before any training step
    model.to(accelerator.device)
    pad_id = int(
        model.config.pad_token_id if model.config.pad_token_id is not None else tokenizer.pad_token_id
    )
    param_groups = layerwise_param_groups(
        model,
        cfg.train.lr,
        models.score_head_name(model),
        cfg.optim.head_lr_scale,
        cfg.optim.layer_lr_decay,
    )
    # learned tie parameters: one raw scalar per head, outside the HF model (its folder stays plain) but
    # inside the one module every engine prepares (engines.Bundle: sharded, reduced and saved with it);
    # their own lr (a scalar at the model's 1e-5 would not move) and no weight decay
    tie_raw = None
    extras = {}
    if any(x is not None for x in start_raw):
        tie_raw = torch.tensor([x if x is not None else 0.0 for x in start_raw], device=accelerator.device)
        extras["tie_raw"] = tie_raw.clone()
    bundle = engines.Bundle({"model": model}, extras)
    if tie_raw is not None:
        param_groups.append({"params": [bundle.tie_raw], "lr": cfg.loss.tie_lr, "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(param_groups, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    world, accum = accelerator.num_processes, cfg.train.grad_accum
    per_micro = groups_per_step(groups, cfg)
    global_batch = per_micro * world * accum  # groups per optimizer step, over all processes
    steps_per_epoch = max(1, math.ceil(len(groups) / global_batch))
    total_steps = math.ceil(cfg.train.epochs * steps_per_epoch)
    if cfg.train.max_steps is not None:
        total_steps = min(total_steps, cfg.train.max_steps)
    schedule = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[
        cfg.train.lr_scheduler
    ]
    scheduler = get_scheduler(
        schedule,
        optimizer,
        num_warmup_steps=int(cfg.train.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    averager = WeightAverage(cfg.averaging.kind, cfg.averaging.decay, int(cfg.averaging.start * total_steps))

    # 5. prepare (engines.prepare: model and optimizer together), run folder, resume
    model, optimizer = engines.prepare(accelerator, bundle, optimizer, per_micro)
    start_step = 0
    counters = {"groups": 0, "sequences": 0, "tokens": 0, "padded": 0, "time": 0.0, "skipped_steps": 0}
    ckpt = runs.latest_checkpoint(run_dir) if cfg.train.resume else None
    if ckpt is not None:
        start_step, saved = load_checkpoint(
            ckpt, model, optimizer, scheduler, accelerator, cfg, averager, tie_raw
        )
        counters.update(saved)
        say(f"resumed from {ckpt} at step {start_step}")
    elif cfg.train.resume:
        say(f"resume: no complete checkpoint in {run_dir / 'checkpoints'}; starting from step 0")
    if tie_raw is not None:  # the values now (the start, or the checkpoint's), whole on every process
        tie_raw = engines.full_values(accelerator, [engines.inner_param(accelerator, model, "tie_raw")])[0]
    tracker = None
    if main:
        if not cfg.train.resume:
            runs.clear_stale_checkpoints(run_dir)
        runs.prepare_run(
            cfg,
            {
                "data": {k: v for k, v in data_info.items() if k != "train_meta"},
                "heads": cfg.heads,
                "excluded_raters": data_info["train_meta"].get("excluded_raters"),
            },
        )
        if ckpt is not None:
            runs.trim_metrics_log(run_dir, start_step)
        tracker = open_tracker(cfg.tracking, run_dir, cfg.model_dump(mode="json"), resume=ckpt is not None)
    say(
        f"training: {len(groups)} groups, {total_steps} steps ({steps_per_epoch}/epoch), "
        f"batch {per_micro} groups x {accum} accum x {world} proc; tie model: {ties[0] or 'none'}"
    )
    return Context(
        cfg=cfg, accelerator=accelerator, run_dir=run_dir, say=say, tokenizer=tokenizer,
        train_recs=train_recs, eval_recs=eval_recs, data_info=data_info, trunc=trunc, groups=groups,
        counts=counts, ties=ties, model=model, build_model=build_model, pad_id=pad_id, tie_raw=tie_raw,
        optimizer=optimizer, scheduler=scheduler, averager=averager, steps_per_epoch=steps_per_epoch,
        total_steps=total_steps, global_batch=global_batch, start_step=start_step, ckpt=ckpt, tracker=tracker,
        counters=counters, epoch_cache={}, last={},
    )  # fmt: skip


def step_groups_at(ctx: Context, step: int) -> list[int]:
    """The global batch of one step: cut from its epoch's (length-grouped, seeded) order, so the batch
    order is a pure function of seed and step (what makes resume exact without saving the order)."""
    cfg = ctx.cfg
    epoch, in_epoch = divmod(step, ctx.steps_per_epoch)
    if epoch not in ctx.epoch_cache:
        lengths = [g.length for g in ctx.groups]
        ctx.epoch_cache = {
            epoch: epoch_batches(
                lengths, ctx.global_batch, cfg.train.seed, epoch, cfg.group_by_length, cfg.length_bucket
            )
        }
    return ctx.epoch_cache[epoch][in_epoch]


def accumulate_gradients(ctx: Context, step_groups: list[int]) -> dict[str, float]:
    """Forward and backward over this process's micro-batches of the step; returns the step's loss parts.

    Two distributed invariants live here. Each process's loss is scaled to its share of the global batch's
    weighted mean per head (``head_scales``), so any split of the global batch gives the 1-process gradient.
    A process whose share is empty (the short last batch) still runs one forward at zero weight, so every
    process joins the same all-reduce (DDP) or parameter gathering (ZeRO-3, FSDP2). The engine decides
    where gradients are synced (engines.micro_step); the tie parameters come out of the prepared module's
    forward, where every engine holds them whole."""
    cfg, accelerator, model = ctx.cfg, ctx.accelerator, ctx.model
    world, rank, accum = accelerator.num_processes, accelerator.process_index, cfg.train.grad_accum
    step_totals = head_weight_totals([ctx.groups[i] for i in step_groups])
    sums: dict[str, float] = {}
    for a, idx in enumerate(step_batches(step_groups, world, rank, accum)):
        scales = head_scales([ctx.groups[i] for i in idx], step_totals, world * accum) if idx else None
        batch = collate([ctx.groups[i] for i in idx or step_groups[:1]], ctx.pad_id)
        # mixed precision when accelerate is configured for it
        with engines.micro_step(accelerator, model, a == accum - 1), accelerator.autocast():
            if cfg.train.packing:  # padding-free: one packed row per micro-batch (one plain process)
                bundle = accelerator.unwrap_model(model)
                seqs = flat_sequences([ctx.groups[i] for i in idx or step_groups[:1]])
                logits = packed_logits(bundle.model, seqs, accelerator.device)
                extras = {name: getattr(bundle, name) * 1.0 for name in bundle.extra_names}
            else:
                out, extras = model(
                    "model",
                    input_ids=batch.input_ids.to(accelerator.device),
                    attention_mask=batch.attention_mask.to(accelerator.device),
                )
                logits = out.logits
            loss, parts = batch_loss(
                logits.float(),
                batch,
                cfg,
                ctx.ties,
                scales or [0.0] * len(cfg.heads),
                tie_params(ctx.ties, extras.get("tie_raw"), cfg),
            )
            engines.backward(accelerator, model, loss / accum)
        parts["loss"] = float(loss.detach())
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v / accum
        ctx.counters["sequences"] += int(batch.input_ids.shape[0]) * world
        ctx.counters["tokens"] += batch.tokens * world
        ctx.counters["padded"] += 0 if cfg.train.packing else batch.padded * world
    ctx.counters["groups"] += len(step_groups)
    return sums


def train_step(ctx: Context, step: int) -> dict[str, float]:
    """Step 6, once: accumulate, clip, stop on a non-finite loss or gradient *before* the optimizer step,
    step, average weights; returns the row logged for this step."""
    import torch

    cfg, accelerator = ctx.cfg, ctx.accelerator
    t0 = time.perf_counter()
    step_groups = step_groups_at(ctx, step)
    sums = accumulate_gradients(ctx, step_groups)
    done = step + 1
    # The mean loss over processes is nan/inf if any process's is, and the gradient norm is global:
    # every process takes the same decision here, so all of them stop (no hang), before the step (under
    # DeepSpeed the norm is known only after its step: engines.clip_and_step). Under fp16 a step whose
    # gradients overflowed is skipped by the GradScaler and counted (``skipped_steps``), not stopped.
    reduced = accelerator.reduce(torch.tensor([sums.get("loss", 0.0)], device=accelerator.device), "mean")
    last_ckpt = functools.partial(runs.latest_checkpoint, ctx.run_dir)  # looked up only on failure
    runs.stop_on_nonfinite("rm", "loss", float(reduced.item()), done, last_ckpt)
    result = engines.clip_and_step(
        accelerator, ctx.model, ctx.optimizer, cfg.train.max_grad_norm,
        lambda norm: runs.stop_on_nonfinite("rm", "gradient norm", norm, done, last_ckpt),
    )  # fmt: skip
    grad_norm = result.grad_norm if result.grad_norm is not None else math.nan
    if result.skipped:
        ctx.counters["skipped_steps"] = ctx.counters.get("skipped_steps", 0) + 1
    else:  # a skipped update leaves weights, schedule and average where they were (as accelerate does)
        ctx.scheduler.step()
        ctx.averager.update(engines.inner(accelerator, ctx.model, "model"), done)
    if ctx.tie_raw is not None:  # the values now, whole on every process (logged, evaluated, saved)
        ctx.tie_raw = engines.full_values(
            accelerator, [engines.inner_param(accelerator, ctx.model, "tie_raw")]
        )[0]
    ctx.counters["time"] += time.perf_counter() - t0
    ctx.last = {
        **sums,
        "loss": float(reduced.item()),
        "lr": ctx.scheduler.get_last_lr()[0],
        "grad_norm": float(grad_norm),
        "skipped_steps": int(ctx.counters.get("skipped_steps", 0)),
        "epoch": round(done / ctx.steps_per_epoch, 4),
        "rankings": ctx.counters["groups"],  # cumulative over the run: throughput from any two rows
        "tokens": ctx.counters["tokens"],
        **{
            f"tie_param_{h}": float(p.detach())  # learned: a tensor
            for h, p in zip(cfg.heads, tie_params(ctx.ties, ctx.tie_raw, cfg), strict=True)
            if p is not None and ctx.tie_raw is not None
        },
    }
    return ctx.last


class _Prepared:
    """The prepared RM as RewardScorer's model: calls go through the prepared module (DDP, a DeepSpeed
    engine, the FSDP2 root), so every engine gathers what the forward needs."""

    def __init__(self, accelerator: Any, model: Any):
        self.model, self.config = model, engines.inner(accelerator, model, "model").config

    def __call__(self, **kwargs: Any) -> Any:
        return self.model("model", **kwargs)[0]


def score_shared(ctx: Context, records: list[dict]) -> list[np.ndarray]:
    """``score_records`` with the work shared over the processes: each scores every world-th distinct
    response, all run the same number of forwards (ZeRO-3 and FSDP2 gather parameters in each, so a process
    with fewer would leave the others waiting), and the rewards are gathered to every process."""

    from rewardlab.eval.rm import unique_responses

    accelerator = ctx.accelerator
    world, rank = accelerator.num_processes, accelerator.process_index
    prompts, responses, index = unique_responses(records)
    if not responses:
        return [np.zeros((0, len(ctx.cfg.heads))) for _ in records]
    mine = list(range(rank, len(responses), world))
    share = math.ceil(len(responses) / world)
    mine += [mine[0] if mine else 0] * (share - len(mine))  # filler, dropped below
    scorer = RewardScorer(
        _Prepared(accelerator, ctx.model), ctx.tokenizer, ctx.cfg.data.max_length,
        str(accelerator.device), ctx.cfg.max_prompt_length,
    )  # fmt: skip
    local = scorer.score_tensor([prompts[i] for i in mine], [responses[i] for i in mine],
                                batch_size=ctx.cfg.eval_batch_size)  # fmt: skip
    every = accelerator.gather(local.contiguous()).cpu().numpy() if world > 1 else local.cpu().numpy()
    flat = np.zeros((len(responses), every.shape[1]), dtype=np.float32)
    for r in range(world):
        owned = list(range(r, len(responses), world))
        flat[owned] = every[r * share : r * share + len(owned)]
    return [flat[row] for row in index]


def evaluate_live(ctx: Context) -> dict:
    """Held-out metrics of the model being trained, scored by every process (``score_shared``); every
    process returns them."""
    ctx.model.eval()
    param0 = head_tie_param(ctx.ties, ctx.tie_raw, ctx.cfg)
    share0 = ctx.counts[0][0] / ctx.counts[0][1] if ctx.counts[0][1] else 0.0
    recs = ctx.eval_recs
    rewards = score_shared(ctx, recs) if recs else []
    result = evaluate_from_rewards(recs, rewards, ctx.cfg, ctx.ties, None, param0, share0)
    ctx.model.train()
    return result


def finish(ctx: Context) -> dict[str, Any]:
    """Step 7: averaged weights in, reward statistics and final eval in one scoring pass shared over the
    processes, the whole model gathered and saved as a plain HF folder with its card (main process only)."""
    cfg, accelerator, counters = ctx.cfg, ctx.accelerator, ctx.counters
    post_start = time.perf_counter()
    if ctx.averager.count:  # the average in: each process writes its shard of it
        ctx.averager.copy_to(engines.inner(accelerator, ctx.model, "model"))
        engines.after_shard_writes(accelerator, ctx.model)
    ctx.model.eval()
    chosen = stats_sample(ctx.train_recs, cfg)
    rewards = score_shared(ctx, chosen + ctx.eval_recs)  # statistics and eval in one pass, every process
    stat_rewards, eval_rewards = rewards[: len(chosen)], rewards[len(chosen) :]
    metrics: dict[str, Any] = {}
    final = gather_model(ctx)  # a collective under FSDP / ZeRO-3
    if ctx.main:
        if cfg.model.lora:
            final = final.merge_and_unload()  # a plain HF model: no peft needed to load it
        final.eval()
        final_params = [
            None if p is None else float(p.detach() if hasattr(p, "detach") else p)
            for p in tie_params(ctx.ties, ctx.tie_raw, cfg)
        ]
        stats = statistics_from_rewards(chosen, stat_rewards, cfg, ctx.ties)
        metrics = evaluate_from_rewards(
            ctx.eval_recs, eval_rewards, cfg, ctx.ties, stats["tie_threshold"], final_params[0]
        )
        pad_total = counters["tokens"] + counters["padded"]
        per_s = lambda n: n / counters["time"] if counters["time"] else None  # noqa: E731
        metrics.update(
            {
                "train_loss": ctx.last.get("loss"),
                "steps": ctx.total_steps,
                "resumed_from_step": ctx.start_step if ctx.ckpt is not None else None,
                "train_groups": len(ctx.groups),
                "eval_records": len(ctx.eval_recs),
                "rankings_per_s": per_s(counters["groups"]),
                "sequences_per_s": per_s(counters["sequences"]),
                "tokens_per_s": per_s(counters["tokens"]),
                "padding_ratio": counters["padded"] / pad_total if pad_total else None,
                "train_time_s": counters["time"],
                "post_train_s": time.perf_counter() - post_start,  # statistics + final eval (this run only)
                "mixed_precision": str(accelerator.mixed_precision),
                "engine": engines.describe(accelerator),
                "skipped_steps": int(
                    counters.get("skipped_steps", 0)
                ),  # fp16 overflow steps the scaler skipped
                "tie_model": ctx.ties[0],
                **tie_report(ctx.counts, ctx.ties, final_params, cfg),
                "heads": list(cfg.heads),
                "gold_set_aside": ctx.data_info["gold_set_aside"],
                **ctx.trunc,
                **{k: v for k, v in stats.items()},
            }
        )
        model_dir = ctx.run_dir / "model"
        _check_weights(final, ctx.total_steps, ctx.run_dir)
        with runs.writing(model_dir):
            save_model(final, ctx.tokenizer, model_dir, cfg, stats, ctx.ties, final_params)
            card = cards.write_card(
                model_dir, "rm", cfg, metrics, data_info=ctx.data_info, pooling=_card_pooling(final)
            )
            card.write_text(card.read_text() + "\n" + scoring_section(final))
            runs.write_metrics(ctx.run_dir, metrics)
        runs.update_manifest(ctx.run_dir, {"model": str(model_dir), "steps": ctx.total_steps})
        ctx.tracker.log(
            {f"eval/{k}": v for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None},
            step=ctx.total_steps,
        )
        ctx.tracker.summary(metrics)
        ctx.tracker.finish()
        ctx.say(
            f"saved {model_dir}; eval accuracy {metrics.get('accuracy')} on {metrics.get('n_pairs')} pairs "
            f"(agreement ceiling {metrics.get('agreement_ceiling')})"
        )
    accelerator.wait_for_everyone()
    if cfg.train.bf16:  # leave no bf16 state behind for a later stage in this process (pipeline, tests)
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state()
    return metrics


def gather_model(ctx: Context) -> Any:
    """The trained RM as a plain HF module on the main process (None elsewhere); call on every process.
    One process and DDP: the unwrapped model itself; ZeRO-3 / FSDP2: the gathered full weights loaded
    into a fresh build (the same builder call as at the start)."""
    accelerator = ctx.accelerator
    if not engines.is_sharded(accelerator):
        return engines.inner(accelerator, ctx.model, "model") if ctx.main else None
    state = engines.full_state_dict(accelerator, ctx.model, "model")
    if not ctx.main:
        return None
    with engines.plain_init():
        plain = ctx.build_model()
    missing, unexpected = plain.load_state_dict(state, strict=False)
    if unexpected or missing:
        raise RuntimeError(f"gathered state dict does not fit the model: {unexpected[:3]} {missing[:3]}")
    return plain.to(accelerator.device)


def run(cfg: RMConfig) -> dict[str, Any]:
    """Train, evaluate and save a reward model; returns the final metrics (also in metrics.json)."""
    from rewardlab import progress

    ctx = setup(cfg)
    train = cfg.train
    bar = progress.bar(
        ctx.total_steps, "train rm", unit="steps", initial=ctx.start_step, disable=not ctx.main
    )
    ctx.model.train()
    for step in range(ctx.start_step, ctx.total_steps):
        row = train_step(ctx, step)
        done = step + 1
        if ctx.main and (done % train.log_every == 0 or done == ctx.total_steps):
            ctx.tracker.log(row, step=done)
        bar.update(1)
        bar.set_postfix(loss=f"{row['loss']:.4f}")
        if train.eval_every and done % train.eval_every == 0 and done < ctx.total_steps:
            result = evaluate_live(ctx)
            if ctx.main:
                ctx.tracker.log(
                    {f"eval/{k}": v for k, v in result.items() if not isinstance(v, dict)}, step=done
                )
        if train.save_every and done % train.save_every == 0:
            with runs.writing(runs.checkpoint_dir(ctx.run_dir, done).with_suffix(".tmp")):
                save_checkpoint(
                    ctx.run_dir, done, ctx.model, ctx.optimizer, ctx.scheduler, ctx.accelerator, cfg,
                    ctx.counters, ctx.averager, ctx.tie_raw,
                )  # fmt: skip
    bar.close()
    return finish(ctx)


train_rm = run


def head_tie_param(ties: list[str | None], raw: Any, cfg: RMConfig) -> float | None:
    """Head 0's tie parameter now, as a float (None for a Bradley-Terry head)."""
    p = tie_params(ties, raw, cfg)[0]
    return None if p is None else float(p.detach() if hasattr(p, "detach") else p)
