"""Do sampling and scoring see the same distribution? PPO's log-probs vs what the sampler drew from.

Generates a few answers with the KV cache (PPO's seeded sampler, left-padded batch), then compares, per
response token: the log-probs of generate's own logits (KV cache) with PPO's full-sequence forward
(``recipes.ppo.policy_logprobs``), eval mode with train mode (dropout off, as PPO runs), the padded batch
with each prompt alone (no padding), and the policy with a frozen copy (the reference at step 0). Any gap
here shows up as a first-minibatch ratio != 1 or a KL to the reference != 0 before training.

    python scripts/policy_sampling_check.py --model offline:smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROMPTS = [
    "How do I bake bread?",
    "Tell me a joke about cats and dogs in the park please.",
    "What is 2+2?",
    "Name three rivers in Europe, and say which is longest.",
]


def main() -> None:
    import torch

    from rewardlab import models
    from rewardlab import ppo_math as pm
    from rewardlab.recipes import policy_common as pc
    from rewardlab.recipes.ppo import disable_dropout, policy_logprobs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="offline:smollm2-135m-instruct")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    tok = models.load_tokenizer(args.model)
    policy = models.build_policy(args.model)
    disable_dropout(policy)
    policy.eval()
    reference = models.build_reference(args.model)
    query, query_mask = pc.encode_prompts(tok, PROMPTS, 256)
    stops = pc.stop_token_ids(tok, policy)
    gen = pc.generation_config(tok, args.max_new_tokens, do_sample=False, stop_ids=stops)
    gen.output_logits, gen.return_dict_in_generate = True, True
    with torch.no_grad():
        out = policy.generate(
            input_ids=query, attention_mask=query_mask, generation_config=gen,
            logits_processor=pc.seeded_sampling(list(range(1, len(PROMPTS) + 1))),
        )  # fmt: skip
    response = out.sequences[:, query.shape[1] :]
    mask, has_stop, _ = pm.response_mask(response, stops)
    response = response.masked_fill(mask == 0, tok.pad_token_id)
    qr, am, context = torch.cat([query, response], 1), torch.cat([query_mask, mask.long()], 1), query.shape[1]
    with torch.no_grad():
        full, _ = policy_logprobs(policy, qr, am, context, 1.0)
        ref, _ = policy_logprobs(reference, qr, am, context, 1.0)
        logits = torch.stack(out.logits, 1).float()
        cached = pm.logprobs_from_logits(logits, response[:, : logits.shape[1]])
        policy.train()
        train, _ = policy_logprobs(policy, qr, am, context, 1.0)
        policy.eval()
        alone = 0.0
        for i in range(len(PROMPTS)):
            n, length = int(query_mask[i].sum()), int(mask[i].sum())
            ids = qr[i : i + 1, context - n : context + length]
            lp = pm.logprobs_from_logits(policy(input_ids=ids).logits[:, n - 1 : -1].float(), ids[:, n:])
            alone = max(alone, float((lp[0] - full[i, :length]).abs().max()))
    m = mask[:, : logits.shape[1]]
    print(
        f"model {args.model}; stop ids {stops}; stopped {has_stop.tolist()}; lengths {mask.sum(1).tolist()}"
    )
    print(
        f"max |KV cache - full forward| {float(((cached - full[:, : logits.shape[1]]).abs() * m).max()):.2e}"
    )
    print(f"max |train mode - eval mode|  {float(((train - full).abs() * mask).max()):.2e}")
    print(f"max |padded - alone|          {alone:.2e}")
    print(f"max |reference - policy|      {float(((ref - full).abs() * mask).max()):.2e}")


if __name__ == "__main__":
    main()
