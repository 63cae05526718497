"""Config schemas for every stage and the one loader that merges defaults < YAML file < dotted overrides.

Why pydantic with ``extra="forbid"``: a typo in a YAML key (``train.lrr``) must fail loudly with the dotted
path and a "did you mean" hint instead of silently training with the default. Each stage owns one schema
class below; add fields to your stage's class, keep the shared sections (model, data, train, tracking)
stable because users' scripts rely on them (docs/design.md, "Config keys that scripts rely on").
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rewardlab.errors import UserError


class ConfigError(UserError):
    """Bad config: the CLI turns it into a one-line message and exit code 2."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ---------------------------------------------------------------- shared sections


class LoraConfig(Strict):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | str = "all-linear"


class ModelConfig(Strict):
    name_or_path: str = "offline:tiny-llama"
    lora: LoraConfig | None = None
    trust_remote_code: bool = False  # run Python shipped in a model folder (auto_map); also the run's RM/ref
    allow_pickle: bool = (
        False  # load pickle weights (pytorch_model.bin, *.pt): can run code; safetensors only
    )
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = Field(
        "auto",
        description=(
            "Attention kernel of every model the stage loads (policy, reference, RM, value model, PPO's RM "
            "scorer). auto: flash_attention_2 when flash-attn is installed, the device is CUDA and the "
            "weights are bf16/fp16, else sdpa. flash_attention_2 without flash-attn or CUDA is refused when "
            "the config loads (docs/scaling.md, Memory levers)."
        ),
    )

    @field_validator("attn_implementation")
    @classmethod
    def _flash_attention_runs_here(cls, value: str) -> str:
        """Refuse flash_attention_2 before any work where it cannot run (no flash-attn, no CUDA)."""
        if value == "flash_attention_2":
            from rewardlab import devices

            try:
                devices.attn_implementation(value, where="attn_implementation")
            except UserError as err:
                raise ValueError(str(err)) from None
        return value

    quantization: Literal["4bit", "8bit"] | None = Field(
        None,
        description=(
            "load the base weights in 4 or 8 bits through bitsandbytes and train a LoRA adapter over them "
            "(QLoRA; needs model.lora and a CUDA GPU; docs/scaling.md, 'Quantized loading (QLoRA)'); "
            "null: full-precision weights in model.dtype"
        ),
    )

    @model_validator(mode="after")
    def _quantization_needs_lora(self) -> ModelConfig:
        """k-bit weights are frozen: without an adapter nothing would train. Refused when the config loads."""
        if self.quantization is not None and self.lora is None:
            raise ValueError(
                f"model.quantization={self.quantization} needs model.lora: k-bit weights are frozen, only a "
                "LoRA adapter over them trains (QLoRA)"
            )
        return self


class DataConfig(Strict):
    train: str | None = "data/sample"
    eval: str | None = None  # null: a split of train, grouped by prompt
    eval_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    # The eval split's own seed, apart from train.seed: an RM and a policy trained with different seeds on
    # the same data still hold out the same prompts (0 keeps the split of runs made before this key).
    split_seed: int = Field(0, ge=0, lt=2**32)
    # Gold records (``gold: true``) are the raters' answer key: set aside from training and evaluation
    # (and counted in the manifest) unless this is true.
    use_gold: bool = False
    max_length: int = Field(512, gt=8)
    format: str = "auto"


class TrainConfig(Strict):
    lr: float = Field(
        1.0e-5, gt=0, le=1.0e38, allow_inf_nan=False
    )  # float32 schedulers overflow above ~3.4e38
    epochs: float = Field(1, gt=0)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    seed: int = Field(0, ge=0, lt=2**32)  # numpy seeds are unsigned 32-bit
    eval_every: int | None = Field(None, ge=1)
    save_every: int | None = Field(None, ge=1)
    resume: bool = False
    warmup_ratio: float = Field(0.0, ge=0, le=1)
    lr_scheduler: Literal["linear", "cosine", "constant"] = "linear"
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    log_every: int = Field(1, ge=1)
    # bf16 autocast for forward passes (accelerate's mixed_precision="bf16" in rm and ppo, TRL's bf16=True in
    # the TRL stages); runs on CPU too, so the path GPU users take is tested. Weights, optimizer state and the
    # losses stay float32.
    bf16: bool = False
    gradient_checkpointing: bool = Field(
        False,
        description=(
            "Recompute each layer's activations in the backward instead of keeping them (non-reentrant "
            "torch checkpointing, works with LoRA): less activation memory for about one more forward per "
            "step. Passed to TRL in sft/dpo/grpo/rloo/rs; the model's own in the rm and ppo loops "
            "(docs/scaling.md, Memory levers)."
        ),
    )


class TrackingConfig(Strict):
    # metrics.jsonl is written in every case; trackio and tensorboard are optional extras (local, no account)
    backend: Literal["jsonl", "wandb", "trackio", "tensorboard", "none"] = "jsonl"
    project: str = "rewardlab"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = []
    run_name: str | None = None


class CardConfig(Strict):
    """Model-card metadata the base model cannot supply (cards.py): used when the base has no known license."""

    license: str | None = None  # the card's license when the base's is unknown (e.g. apache-2.0, mit)
    datasets: list[str] = []  # hub dataset ids of the training data, beside those `data import hf:` records
    tags: list[str] = []  # extra Hub tags on the model card


class RunConfig(Strict):
    """Fields every training stage has (docs/design.md)."""

    stage: str = ""
    output_dir: str = "runs/run"
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    tracking: TrackingConfig = TrackingConfig()
    card: CardConfig = CardConfig()  # model-card metadata for the Hub (a section)


# ---------------------------------------------------------------- data / simulate / raters


class DataStageConfig(Strict):
    """`data import` as a pipeline stage."""

    stage: Literal["data"] = "data"
    inputs: list[str] = []
    format: str = "auto"
    out: str = "data/imported"
    quarantine: str | None = None
    strict: bool = False
    pseudonymize: bool = False  # as `data import --pseudonymize` (see RatersConfig.pseudonymize)
    salt_file: str | None = None


class RaterProfileMix(Strict):
    careful: float = 0.5
    noisy: float = 0.2
    random: float = 0.1
    position_biased: float = 0.1
    adversarial: float = 0.0
    too_fast: float = 0.1

    @field_validator("*")
    @classmethod
    def _share(cls, value: float) -> float:
        if not 0 <= value < float("inf"):
            raise ValueError(f"a share must be >= 0 and finite, got {value}")
        return value

    @model_validator(mode="after")
    def _some_raters(self) -> RaterProfileMix:
        if sum(self.model_dump().values()) <= 0:
            raise ValueError("the shares of the rater mix sum to 0: give at least one profile a share > 0")
        return self


class SparseCampaign(Strict):
    """``simulate``'s sparse mode, shaped like a real platform's data (docs/simulate.md): most comparisons
    judged once, an overlap set judged several times, skewed workloads, careful raters who differ."""

    overlap_share: float = Field(0.1, ge=0, le=1)  # share of comparisons judged overlap_min..max times
    overlap_min: int = Field(3, ge=2)  # fewest judgments of a comparison in the overlap set
    overlap_max: int = Field(5, ge=2)  # most judgments of a comparison in the overlap set
    # rater workload weights are lognormal with this sigma: 1.3 gives a few raters with hundreds of
    # judgments and many with 3-30 at ~30 judgments per rater on average
    workload_sigma: float = Field(1.3, ge=0)
    careful_spread: float = Field(0.6, ge=0)  # sd of log temperature across careful raters (accuracy differs)
    careful_tie_prob: tuple[float, float] = (0.1, 0.8)  # careful raters' tie habit, uniform in this range

    @model_validator(mode="after")
    def _range(self) -> SparseCampaign:
        if self.overlap_max < self.overlap_min:
            raise ValueError(f"overlap_max {self.overlap_max} < overlap_min {self.overlap_min}")
        lo, hi = self.careful_tie_prob
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"careful_tie_prob must be 0 <= low <= high <= 1, got {self.careful_tie_prob}")
        return self


class SimulateConfig(Strict):
    stage: Literal["simulate"] = "simulate"
    out: str = "data/sim"
    seed: int = 0
    prompts: int = Field(200, ge=1)
    k: int = Field(2, ge=2)
    k_mix: dict[int, float] | None = None  # share of items per K, e.g. {2: 0.8, 4: 0.2}; overrides k
    families: list[str] = ["arithmetic", "keyword", "format", "safety", "capital", "antonym"]
    raters: int = Field(10, ge=1)
    overlap: int = Field(3, ge=1)
    gold_rate: float = Field(0.05, ge=0, le=1)
    gold_min_gap: float = Field(0.25, ge=0)  # gold items are drawn from comparisons this clear-cut
    tie_epsilon: float = Field(0.03, ge=0)  # raters may tie responses whose true utilities are this close
    mix: RaterProfileMix = RaterProfileMix()
    sweep: dict[str, list[Any]] | None = None  # e.g. {overlap: [1, 3, 5]}: campaign planning
    # sparse campaign mode (overlap is then ignored): most comparisons judged once, skewed workloads
    sparse: SparseCampaign | None = None


class RaterThresholds(Strict):
    min_gold_accuracy: float = Field(0.6, ge=0, le=1)
    min_gold_items: int = Field(3, ge=0)
    min_agreement: float = Field(
        0.6, ge=0, le=1
    )  # vs the reliability-weighted leave-one-out consensus; random clickers ~0.5
    max_position_bias: float = Field(0.8, ge=0, le=1)
    min_median_time_ratio: float = Field(0.25, ge=0)  # flagged when median time < ratio * pool median
    min_items: int = Field(5, ge=1)  # a rate rule flags only from this many pairs (gold: min_gold_items)
    # flags need evidence: a rule flags only when the Wilson interval at this confidence lies wholly on the
    # wrong side of its threshold; otherwise the report lists it under insufficient_evidence
    confidence: float = Field(0.95, gt=0, lt=1)
    min_reliability: float | None = Field(
        None, ge=0, le=1
    )  # Dawid-Skene accuracy on pair outcomes; null: not a flagging rule
    # low_agreement flags need a consensus that gold does not contradict: when the consensus's accuracy on
    # gold comparisons (two or more votes) is not above this level (0.5: a coin between the two orders),
    # agreement flags are suspended (listed under insufficient_evidence with the reason)
    min_consensus_gold_accuracy: float = Field(0.5, ge=0, le=1)


class NoisyBTOptions(Strict):
    ridge: float = Field(0.1, ge=0)  # prior on item scores: shrinks soft labels of few votes toward 0.5
    rater_ridge: float = Field(0.05, ge=0)
    max_iter: int = Field(300, ge=1)


class DS3Options(Strict):
    """The ``ds3`` aggregation model (rewardlab.raters.ds3; docs/raters.md)."""

    prior_strength: float = Field(2.0, ge=0)  # pseudo-judgments pulling each rater's confusion to the pool's
    # empirical Bayes: fit the strength toward the pool from the data in every EM step (Dirichlet-multinomial
    # marginal likelihood), so light raters sit near the pool; prior_strength is then unused
    fit_prior_strength: bool = False
    position_strength: float = Field(20.0, ge=0)  # pseudo-judgments pulling each rater toward no side habit
    temperature: float = Field(0.7, gt=0, le=1)  # soft labels: posterior ** temperature, renormalised
    soft_label: Literal["posterior", "vote"] = Field(
        "posterior",
        description="what a pair's soft label p is: posterior = the (tempered) posterior that a is truly "
        "above b; vote = the chance that a new rater picks a, posterior x the pool's judgment-weighted "
        "confusion (carries the pool's error and tie rates; calls are unchanged; docs/raters.md)",
    )
    tie_min: float = Field(0.5, ge=0, le=1)  # a consensus tie needs P(tie) >= this and above each order ...
    tie_votes_min: float = Field(0.5, ge=0, le=1)  # ... and at least this share of the pair's votes are ties
    use_gold: bool = True  # clamp gold units to their reference label in EM
    max_iter: int = Field(100, ge=1)  # EM iterations (stops once no confusion/prior entry moves > 1e-4)
    # exclude: flagged keeps a flagged rater whose ds3 confusion is worth at least this many bits per
    # judgment (adversarial raters, read inverted; too-fast but sound ones; the more useful position-biased
    # ones): ds3 weighs each rater by its confusion, and dropping them lost accuracy. Random clickers
    # (Miller-Madow-corrected estimate ~0-0.07 bits from 35-60 judgments) are still dropped. null: drop
    # every flagged rater.
    keep_flagged_min_bits: float | None = Field(0.08, ge=0)


class RatersConfig(Strict):
    stage: Literal["raters"] = "raters"
    thresholds: RaterThresholds = RaterThresholds()
    # flagged: drop flagged raters (plus exclude_list); downweight: keep them at flagged_weight (ds3 only)
    exclude: Literal["flagged", "none", "listed", "downweight"] = "flagged"
    exclude_list: list[str] = []
    flagged_weight: float = Field(0.25, ge=0, le=1)  # vote weight of flagged raters under exclude: downweight
    method: Literal["ds3", "majority", "noisy-bt", "dawid-skene", "none"] = "ds3"
    tie_margin: float = Field(0.05, ge=0, le=0.5)  # consensus tie when |p - 0.5| <= tie_margin
    noisy_bt: NoisyBTOptions = NoisyBTOptions()
    ds3: DS3Options = DS3Options()
    # Replace rater ids with r-<HMAC-SHA256 prefix> in every output. The salt comes from the environment
    # (REWARDLAB_PSEUDONYM_SALT) or salt_file (default ~/.config/rewardlab/pseudonym-salt, made on first use).
    pseudonymize: bool = False
    salt_file: str | None = None


# ---------------------------------------------------------------- reward model


class RMLossConfig(Strict):
    kind: Literal["bradley-terry", "plackett-luce"] = "bradley-terry"
    ties: Literal["rao-kupper", "davidson"] = "rao-kupper"
    # null: learned per head (theta = 1 + softplus(raw), nu = softplus(raw)), started where P(tie | equal
    # rewards) is the head's share of tied training pairs; a number fixes it (Rao-Kupper theta > 1,
    # Davidson nu > 0) for every tie head.
    tie_param: float | None = None
    tie_lr: float = Field(0.01, gt=0)  # AdamW lr of the learned tie parameters (one scalar per head)
    # A head trains with the tie model only when its training pairs hold at least min_ties ties making up
    # at least min_tie_share of its pairs; otherwise it stays Bradley-Terry (its few ties count as p = 0.5
    # pairs), so a stray tie does not change the reward scale of a whole head. Metrics say which.
    min_ties: int = Field(10, ge=1)  # tie model only with >= this many tied pairs (else BT, ties as p = 0.5)
    min_tie_share: float = Field(0.01, ge=0, le=1)  # ... and at least this share of the head's pairs
    margin: dict[str, float] | None = None  # strength label -> margin (Llama 2)
    center_coef: float = Field(0.0, ge=0)  # reward centering: coef * mean over pairs of (r_w + r_l)^2
    use_soft_labels: bool = True
    use_weights: bool = True
    head_weight: float = Field(1.0, ge=0)  # weight of the rubric-head losses against the overall head

    @model_validator(mode="after")
    def _tie_param_in_range(self) -> RMLossConfig:
        """Checked when the config is built, not after every record is tokenized."""
        p = self.tie_param
        if p is not None and self.ties == "rao-kupper" and not 1 < p < float("inf"):
            raise ValueError(f"loss.tie_param must be > 1 for rao-kupper (or null: learned), got {p}")
        if p is not None and self.ties == "davidson" and not 0 < p < float("inf"):
            raise ValueError(f"loss.tie_param must be > 0 for davidson (or null: learned), got {p}")
        return self


class RMModelConfig(ModelConfig):
    """A reward model's backbone, plus what its heads read."""

    pooling: Literal["auto", "cls", "mean", "last"] = (
        "auto"  # auto: the backbone's sentence-transformers pooling (MiniLM: mean), else cls (encoders) / last token (decoders)
    )


class RMAveragingConfig(Strict):
    """Weight averaging over the last part of training; the averaged weights are the ones saved."""

    kind: Literal["none", "ema", "swa"] = "none"  # swa: running mean of the weights; ema: exponential
    decay: float = Field(0.99, gt=0, lt=1)  # ema: w_avg <- decay * w_avg + (1 - decay) * w
    start: float = Field(0.5, ge=0, lt=1)  # fraction of the steps after which averaging begins


class RMOptimConfig(Strict):
    """Learning rates by depth (rewardlab/param_groups.py): the new head faster, lower layers slower."""

    head_lr_scale: float = Field(1.0, gt=0)  # the reward head's lr = train.lr * this
    layer_lr_decay: float = Field(1.0, gt=0, le=1)  # each backbone layer's lr = the one above's * this


class RMTrainConfig(TrainConfig):
    """The shared train section plus what only the rm loop does."""

    packing: bool = Field(
        False,
        description=(
            "padding-free training forward for decoder RMs: a micro-batch's sequences packed into one row with "
            "position ids restarting per sequence (flash-attention varlen; a block-diagonal mask on SDPA/eager), "
            "rewards read at each sequence's last token; one process; encoders refused "
            "(docs/reward-models.md, 'Packed (padding-free) forward')"
        ),
    )


class RMConfig(RunConfig):
    stage: str = "rm"
    output_dir: str = "runs/rm"
    model: RMModelConfig = RMModelConfig(name_or_path="offline:tiny-rm")
    train: RMTrainConfig = RMTrainConfig()
    averaging: RMAveragingConfig = RMAveragingConfig()
    optim: RMOptimConfig = RMOptimConfig()
    heads: list[str] = ["overall"]  # 'overall' trains on ranks, any other head on scores[<head>]
    loss: RMLossConfig = RMLossConfig()
    # Prompt tokens kept (the latest turns; None: all that fit in data.max_length). Saved with the model,
    # so scoring cuts prompts the same way. On HH-RLHF with MiniLM, 64 trains ~1.25x the pairs/s (0.86 vs 0.69
    # at the same load, tuning split) with inputs of 98 tokens against 147 (docs/reward-models.md).
    max_prompt_length: int | None = Field(None, ge=1)
    # What train.batch_size counts: groups (rankings) per step, or pairs' worth of responses (a ranking of
    # K counts K/2), so K-wise data keeps the memory and the steps per epoch of pairwise data.
    batch_unit: Literal["groups", "pairs"] = "groups"
    group_by_length: bool = True
    length_bucket: int = Field(50, ge=1)  # groups sorted by length within buckets of batch_size * this
    eval_batch_size: int = Field(32, ge=1)
    keep_checkpoints: int = Field(2, ge=1)  # complete checkpoints kept (older ones rotate away)
    stats_max_responses: int = Field(
        1024, ge=1
    )  # training responses scored for reward_mean/std, tie threshold
    disable_dropout: bool = True  # as TRL's RewardTrainer: dropout noise hurts pairwise reward learning

    @field_validator("heads")
    @classmethod
    def _distinct_heads(cls, value: list[str]) -> list[str]:
        if not value or len(set(value)) != len(value) or not all(value):
            raise ValueError(f"heads must be distinct, non-empty names, got {value}")
        return value


# ---------------------------------------------------------------- policy stages


class SFTOptions(Strict):
    demonstrations: Literal["rank1", "file"] = "rank1"
    completion_only_loss: bool = True


class SFTConfig(RunConfig):
    stage: str = "sft"
    output_dir: str = "runs/sft"
    sft: SFTOptions = SFTOptions()


class DPOOptions(Strict):
    beta: float = Field(0.1, gt=0)
    loss_type: list[str] = Field(["sigmoid"], min_length=1)
    loss_weights: list[float] | None = None  # one per loss_type (e.g. [sigmoid, sft] with [1.0, 0.5]: RPO)
    pairs: Literal["all", "best-vs-worst"] = "all"
    label_smoothing: float = Field(0.0, ge=0, le=0.5)
    soft_labels: Literal["none", "label_smoothing", "weights"] = "weights"
    precompute_ref_log_probs: bool = True
    max_prompt_length: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _weights_match_losses(self) -> DPOOptions:
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            raise ValueError(
                f"dpo.loss_weights has {len(self.loss_weights)} values for {len(self.loss_type)} dpo.loss_type entries"
            )
        return self


class DPOConfig(RunConfig):
    stage: str = "dpo"
    output_dir: str = "runs/dpo"
    ref_model: str | None = None  # null: the starting policy
    dpo: DPOOptions = DPOOptions()


class PPOOptions(Strict):
    reward_model: str = "runs/rm/model"
    value_model: str | None = None  # null: initialised from the reward model
    rollout_batch_size: int = Field(16, ge=1)
    mini_batch_size: int = Field(8, ge=1)
    ppo_epochs: int = Field(4, ge=1)
    max_new_tokens: int = Field(48, ge=1)
    temperature: float = Field(1.0, gt=0)
    top_k: int = Field(0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    kl_coef: float = Field(0.05, ge=0)
    kl_estimator: Literal["k1", "k3"] = "k1"
    adaptive_kl: bool = False
    kl_target: float = Field(6.0, gt=0)
    kl_horizon: int = Field(10000, ge=1)
    gamma: float = Field(1.0, ge=0, le=1)
    lam: float = Field(0.95, ge=0, le=1)
    cliprange: float = Field(0.2, gt=0)
    cliprange_value: float = Field(0.2, gt=0)
    vf_coef: float = Field(0.1, ge=0)
    whiten_rewards: bool = True  # RM score -> (s - reward_mean) / reward_std with the RM's stored statistics
    missing_eos_penalty: float | None = -1.0
    value_lr: float | None = Field(None, gt=0)
    episodes: int | None = Field(
        None, ge=1
    )  # null: train.epochs * unique train prompts (train.max_steps caps rollouts)
    missing_eos_mode: Literal["replace", "add"] = (
        "replace"  # replace the score (N+ details) or add the penalty
    )
    batch_whiten_rewards: bool = False  # also rescale per-token rewards by their batch std (mean kept)
    whiten_advantages: bool = True
    forward_batch_size: int | None = Field(
        None, ge=1
    )  # rollout forward passes in chunks (null: mini_batch_size)
    # Memory (docs/scaling.md, "PPO memory at 0.5B/7B/8B"). With model.lora the KL reference is the policy
    # with its adapter disabled (peft disable_adapter: the same weights, no second copy); true loads a
    # separate frozen copy of the starting policy, as before 2026-12.
    reference_copy: bool = Field(
        False,
        description=(
            "with model.lora: load a separate frozen reference copy instead of disabling the policy's adapter"
        ),
    )
    value_backbone: Literal["separate", "adapter"] = Field(
        "separate",
        description=(
            "separate: a full value model (ppo.value_model, else the RM, else the policy backbone), float32, fully "
            "trained; adapter: a second LoRA adapter plus a zero-initialised value head on the policy's frozen "
            "base (needs model.lora; one process)"
        ),
    )
    reward_model_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description=(
            "dtype the RM is loaded in; auto: bfloat16 (scored under autocast) when train.bf16 or "
            "model.dtype=bfloat16, else float32"
        ),
    )
    logprob_chunk: int | None = Field(
        1024,
        ge=1,
        description=(
            "response positions per slice of the selective log-softmax (no full-vocabulary float32 copy of a "
            "micro-batch); null: the whole micro-batch at once, as before 2026-12"
        ),
    )


class PPOConfig(RunConfig):
    stage: str = "ppo"
    output_dir: str = "runs/ppo"
    ppo: PPOOptions = PPOOptions()
    keep_checkpoints: int = Field(2, ge=1)  # complete checkpoints kept (older ones rotate away)

    @field_validator("ppo")
    @classmethod
    def _batches_divide(cls, ppo: PPOOptions, info: ValidationInfo) -> PPOOptions:
        """A sampler whose distribution the log-probs reproduce; rollouts split into whole minibatches,
        minibatches into whole micro-batches (checked here, not at the first optimizer step)."""
        if ppo.top_k or ppo.top_p < 1.0:
            raise ValueError(
                f"ppo.top_k={ppo.top_k} / ppo.top_p={ppo.top_p}: PPO's ratios and KL are computed from "
                "softmax(logits / temperature); a truncated sampler would make every update off-policy. "
                "Use ppo.temperature only (top_k=0, top_p=1.0)"
            )
        if ppo.rollout_batch_size % ppo.mini_batch_size:
            raise ValueError(
                f"ppo.rollout_batch_size ({ppo.rollout_batch_size}) must be a multiple of "
                f"ppo.mini_batch_size ({ppo.mini_batch_size})"
            )
        train = info.data.get("train")
        if train is not None and ppo.mini_batch_size % train.grad_accum:
            raise ValueError(
                f"ppo.mini_batch_size ({ppo.mini_batch_size}) must be a multiple of train.grad_accum ({train.grad_accum})"
            )
        return ppo

    @model_validator(mode="after")
    def _value_adapter_needs_lora(self) -> PPOConfig:
        """A second adapter needs a LoRA policy to sit beside; refused here, before any model loads."""
        if self.ppo.value_backbone == "adapter":
            if self.model.lora is None:
                raise ValueError(
                    "ppo.value_backbone=adapter puts a second LoRA adapter on the policy's frozen base: "
                    "set model.lora (or use ppo.value_backbone=separate)"
                )
            if self.ppo.value_model is not None:
                raise ValueError(
                    f"ppo.value_model={self.ppo.value_model} is a separate value model; "
                    "ppo.value_backbone=adapter builds its value head on the policy (set one of them)"
                )
        return self


class OnlineOptions(Strict):
    """GRPO / RLOO (TRL trainers) with our RM as the reward function."""

    reward_model: str = "runs/rm/model"
    num_generations: int = Field(4, ge=2)  # answers per prompt: a group needs two to compare
    max_completion_length: int = Field(48, ge=1)
    beta: float = Field(0.05, ge=0)
    temperature: float = Field(1.0, gt=0)
    # vLLM generation (TRL's use_vllm; docs/policy.md, "vLLM generation (GRPO/RLOO)")
    use_vllm: bool = Field(
        False,
        description=(
            "generate the completions with vLLM (TRL's use_vllm) instead of transformers' generate; needs "
            "vllm installed; our stop ids go to vLLM through the policy's generation_config.json"
        ),
    )
    vllm_mode: Literal["colocate", "server"] = Field(
        "colocate",
        description=(
            "colocate: a vLLM engine inside each training process, on its GPU; server: a separate "
            "`trl vllm-serve` process at online.vllm_server_host:online.vllm_server_port"
        ),
    )
    vllm_gpu_memory_utilization: float = Field(
        0.3, gt=0, le=1, description="share of the GPU's memory the colocated vLLM engine may take"
    )
    vllm_server_host: str = Field(
        "0.0.0.0", description="host of the `trl vllm-serve` server (vllm_mode=server)"
    )
    vllm_server_port: int = Field(
        8000, ge=1, le=65535, description="port of the `trl vllm-serve` server (vllm_mode=server)"
    )


class GRPOConfig(RunConfig):
    stage: str = "grpo"
    output_dir: str = "runs/grpo"
    online: OnlineOptions = OnlineOptions()


class RLOOConfig(RunConfig):
    stage: str = "rloo"
    output_dir: str = "runs/rloo"
    online: OnlineOptions = OnlineOptions()


class RSOptions(Strict):
    """Rejection-sampling fine-tuning (Llama 2 / RAFT): n answers per prompt, the RM keeps the best, SFT."""

    reward_model: str = "runs/rm/model"  # the RM that picks the best answer (its own tokenizer and format)
    rounds: int = Field(1, ge=1)  # sample -> keep the best -> SFT, repeated from the tuned policy
    num_samples: int = Field(4, ge=2)  # answers per prompt and round; the RM keeps the best
    prompts_per_round: int | None = Field(None, ge=1)  # null: every training prompt each round
    max_new_tokens: int = Field(48, ge=1)  # answer length limit when sampling
    temperature: float = Field(1.0, gt=0)  # sampling temperature (no top-k/top-p)
    generation_batch_size: int = Field(32, ge=1)  # answers generated per forward batch
    # true: keep only answers that ended on a stop token (selects short ones); cut answers train without an end token
    require_stop: bool = False
    # training prompts sampled before and after training (same seeds) for metrics' train_rm_score_start/_end; 0: skip
    probe_prompts: int = Field(64, ge=0)


class RSConfig(RunConfig):
    stage: str = "rs"
    output_dir: str = "runs/rs"
    rs: RSOptions = RSOptions()


# ---------------------------------------------------------------- loop


class SampleConfig(Strict):
    stage: Literal["sample"] = "sample"
    output_dir: str = "runs/sample"
    policy: str = "offline:tiny-llama"  # a run folder, a model folder or a source
    reward_models: list[str] = []
    prompts: str = "data/sample"
    num_prompts: int | None = Field(None, ge=1)
    k: int = Field(4, ge=2)
    select: Literal["random", "uncertainty", "disagreement", "coverage"] = "uncertainty"
    budget: int = Field(50, ge=1)
    export: Literal["label-studio", "argilla", "canonical"] = "label-studio"
    template: Literal["pairwise", "ranker"] = "pairwise"
    max_new_tokens: int = Field(48, ge=1)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_prompt_length: int = Field(256, gt=8)
    batch_size: int = Field(32, ge=1)  # prompts x k generated per call
    # where the policy and RMs run: auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N, mps (docs/scaling.md)
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # the policy's and RMs' weights for sampling
    max_per_prompt: int | None = Field(None, ge=1)  # cap on items one prompt contributes
    batch_name: str | None = None  # id prefix and meta.batch of the items; default: the run folder name
    seed: int = 0
    tracking: TrackingConfig = TrackingConfig()
    allow_pickle: bool = False  # policy / reward models with pickle weights (safetensors only by default)
    trust_remote_code: bool = False  # run Python shipped in the policy / RM folders


class PipelineEvalOptions(Strict):
    """The pipeline's eval stage: the RM and each policy on held-out simulated prompts scored by the truth."""

    prompts: int = Field(32, ge=1)
    seed: int = 1000  # held-out prompts come from the simulate config with this seed
    max_new_tokens: int = Field(48, ge=1)
    batch_size: int = Field(16, ge=1)
    # where the RM and the policies are evaluated: auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N, mps
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # weights' dtype for the evaluation


class PipelineConfig(Strict):
    stage: Literal["pipeline"] = "pipeline"
    name: str = "pipeline"
    output_dir: str = "runs/pipeline"
    stages: list[str] = ["simulate", "raters", "rm", "dpo", "ppo", "eval", "sample", "report"]
    simulate: dict[str, Any] | str | None = None
    data: dict[str, Any] | str | None = None
    raters: dict[str, Any] | str | None = None
    rm: dict[str, Any] | str | None = None
    sft: dict[str, Any] | str | None = None
    dpo: dict[str, Any] | str | None = None
    ppo: dict[str, Any] | str | None = None
    rs: dict[str, Any] | str | None = None  # rejection sampling (the DPO/PPO baseline): a path or a mapping
    sample: dict[str, Any] | str | None = None
    rate: dict[str, Any] | str | None = (
        None  # a simulate config for rating the sampled batch (default: simulate's)
    )
    eval: PipelineEvalOptions = PipelineEvalOptions()
    report_include: list[str] = []  # extra run folders for the report (e.g. an active-learning curve)
    tracking: TrackingConfig = TrackingConfig()

    @field_validator("simulate", "data", "raters", "rm", "sft", "dpo", "ppo", "rs", "sample", "rate")
    @classmethod
    def _base_is_a_path(cls, value: Any, info: ValidationInfo) -> Any:
        """A section's ``base`` names the YAML file it extends: anything else fails here with its key path
        (the pipeline would otherwise crash opening it)."""
        if isinstance(value, dict) and value.get("base") is not None and not isinstance(value["base"], str):
            kind = type(value["base"]).__name__
            raise ValueError(f"'{info.field_name}.base' must be the path of a YAML file, got {kind}")
        return value


SCHEMAS: dict[str, type[BaseModel]] = {
    "data": DataStageConfig,
    "simulate": SimulateConfig,
    "raters": RatersConfig,
    "rm": RMConfig,
    "sft": SFTConfig,
    "dpo": DPOConfig,
    "ppo": PPOConfig,
    "grpo": GRPOConfig,
    "rloo": RLOOConfig,
    "rs": RSConfig,
    "sample": SampleConfig,
    "pipeline": PipelineConfig,
}


# ---------------------------------------------------------------- loading


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["train.lr=1e-5", "heads=[a,b]"]`` -> nested dict; values parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
            raise ConfigError(f"override '{key}': the value {raw!r} is not valid YAML ({problem})") from None
        node = out
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override '{item}': the key '{key}' has an empty part (use a.b.c=value)")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}' sets inside a non-mapping key")
        node[parts[-1]] = value
    return out


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _fields_at(schema: type[BaseModel], path: tuple) -> list[str]:
    """The valid field names at a dotted location, for the "did you mean" hint."""
    model: Any = schema
    for part in path:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return []
        ann = fields[part].annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return []
    return list(getattr(model, "model_fields", {}))


def _key_path(loc: tuple, raw: Any, kind: str) -> list[str]:
    """The user's key path of a pydantic error location.

    pydantic puts union-branch tags ('LoraConfig', 'list[str]', '[key]', ...) among the keys of ``loc``.
    Walking the input alongside tells them apart exactly: a part is the user's key only when the input at
    that point holds it, so a key a user happens to spell 'Foo' or 'list' is reported, never dropped.
    """
    path: list[str] = []
    node = raw
    for n, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
        elif kind == "missing" and n == len(loc) - 1:
            node = None  # a required key the user left out: not in the input, still its path
        else:
            continue
        path.append(str(part))
    return path


def _short(value: Any) -> str:
    try:
        text = json.dumps(value, default=str)
    except (ValueError, TypeError, RecursionError):  # e.g. a YAML alias that contains itself
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _format_error(
    err: ValidationError, schema: type[BaseModel], source: str, raw: dict[str, Any] | None = None
) -> str:
    first = err.errors()[0]
    clean = _key_path(tuple(first["loc"]), raw or {}, first["type"])
    dotted = ".".join(clean) or "<top level>"
    if first["type"] == "extra_forbidden" and clean:
        options = _fields_at(schema, tuple(clean[:-1]))
        hint = difflib.get_close_matches(clean[-1], options, n=1)
        msg = f"{source}: unknown key '{dotted}'"
        if hint:
            msg += f" (did you mean '{'.'.join(clean[:-1] + [hint[0]])}'?)"
        elif options:
            msg += f" (valid keys here: {', '.join(options)})"
        return msg
    msg = " ".join(str(first["msg"]).split())  # one line, whatever a validator wrote
    if first["type"] == "value_error":  # our own validators: the message names the keys and values
        return f"{source}: {dotted}: {msg.removeprefix('Value error, ')}"
    return f"{source}: {dotted}: {msg} (got {_short(first.get('input'))})"


def infer_stage(path: str | Path | None, raw: dict[str, Any]) -> str:
    if isinstance(raw.get("stage"), str):
        return raw["stage"]
    if path is not None:
        for parent in Path(path).resolve().parents:
            if parent.name in SCHEMAS:
                return parent.name
    raise ConfigError(
        f"{path}: cannot tell which stage this config is for: add 'stage: <{'|'.join(SCHEMAS)}>'"
    )


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(raw).__name__}")
    return raw


def load(
    path: str | Path | None,
    overrides: list[str] | tuple[str, ...] = (),
    stage: str | None = None,
    base: dict[str, Any] | None = None,
) -> Any:
    """Resolve a config: code defaults < ``base`` (e.g. from a pipeline) < YAML file < ``key=value`` overrides."""
    raw = read_yaml(path) if path is not None else {}
    raw = deep_merge(base or {}, raw)
    over = parse_overrides(list(overrides))
    raw = deep_merge(raw, over)
    stage = stage or infer_stage(path, raw)
    if stage not in SCHEMAS:
        raise ConfigError(f"{path}: unknown stage '{stage}' (one of {', '.join(SCHEMAS)})")
    raw_stage = raw.get("stage")
    if raw_stage not in (None, stage):
        raise ConfigError(f"{path}: stage '{raw_stage}' does not fit the command, which expects '{stage}'")
    raw["stage"] = stage
    schema = SCHEMAS[stage]
    source = str(path) if path is not None else "<overrides>"
    if over:
        source += " (with overrides)" if path is not None else ""
    cycle = _alias_cycle(raw)
    if cycle is not None:
        raise ConfigError(f"{source}: {'.'.join(cycle) or '<top level>'}: a YAML alias contains itself")
    try:
        return schema.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err, schema, source, raw)) from None


def _alias_cycle(raw: Any) -> list[str] | None:
    """The key path of a value that contains itself (``a: &x [*x]``), which nothing downstream can print."""
    stack: list[tuple[Any, list[str], frozenset[int]]] = [(raw, [], frozenset())]
    while stack:
        node, path, above = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        if id(node) in above:
            return path
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            stack.append((child, [*path, str(key)], above | {id(node)}))
    return None


def to_yaml(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def fingerprint(cfg: BaseModel) -> str:
    """A stable hash of the resolved config (used for lineage and pipeline skip checks)."""
    blob = json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
