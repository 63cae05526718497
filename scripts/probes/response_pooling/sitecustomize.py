"""Probe, not a feature: response-only mean pooling for the MiniLM RM on HH-RLHF (a negative result).

The shipped MiniLM RM averages every token, prompt (its last 64 tokens) and response alike. This probe asks
whether averaging only the response's tokens does better. It replaces the pooled forward so the heads read
the mean over the tokens after the last "Assistant:" marker (up to, not including, [SEP]). Put this folder
on PYTHONPATH and set RL_PROBE_POOL=response; every rewardlab process started that way (training and its
final evaluation) then pools the same way:

    PYTHONPATH=scripts/probes/response_pooling RL_PROBE_POOL=response \
        python scripts/bench_real.py --split tune --only rewardlab --seeds 0 1 --parallel --threads 1

Measured on the tuning split (docs/reward-models.md): 0.630 / 0.640 against the shipped 0.670 / 0.662, so
the probe lost 3 points. Likely why: with the shared prompt in the average, the response's share of it
carries the answer's length, and on HH-RLHF the longer answer wins 0.60-0.62 of pairs.
"""

import os

if os.environ.get("RL_PROBE_POOL") == "response":
    import rewardlab.models as rl_models

    _ASSISTANT, _COLON = 3353, 1024  # all-MiniLM-L6-v2 (BERT uncased) ids of "assistant" and ":"

    def _response_forward(self, input_ids=None, attention_mask=None, **kwargs):  # noqa: ANN001, ANN003, ANN202
        import torch
        from transformers.modeling_outputs import SequenceClassifierOutput

        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        backbone = getattr(self, self.base_model_prefix)
        hidden = backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        width = input_ids.shape[1]
        marker = (input_ids[:, :-1] == _ASSISTANT) & (input_ids[:, 1:] == _COLON)
        pos = torch.arange(width - 1, device=input_ids.device)
        last_marker = torch.where(marker, pos, torch.full_like(pos, -1)).max(1).values
        start = (last_marker + 2).clamp(min=1)
        end = attention_mask.long().sum(1) - 1  # [SEP] excluded
        cols = torch.arange(width, device=input_ids.device)
        mask = (cols[None] >= start[:, None]) & (cols[None] < end[:, None])
        mask = torch.where((mask.sum(1) == 0)[:, None], attention_mask.bool(), mask)
        pooled = rl_models.pool_hidden(hidden, mask, "mean")  # the shipped masked mean, on the response only
        logits = getattr(self, rl_models.score_head_name(self))(pooled.unsqueeze(1))
        return SequenceClassifierOutput(logits=logits[:, 0] if logits.dim() == 3 else logits)

    rl_models._pooled_forward = _response_forward
