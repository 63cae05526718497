"""One recipe per stage, readable top to bottom (sft, rm, dpo, ppo, online, sample)."""
