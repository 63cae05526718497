"""Keep secrets (API keys, tokens, passwords, the pseudonym salt) out of run folders and tracking payloads.

Two rules, applied to config.yaml, manifest.json (including the recorded command line) and the config sent
to wandb:
- a value whose key name looks secret (``*_key``, ``*_token``, ``secret``, ``password``, ``salt``, ...)
  becomes ``"***"``;
- any string that contains the value of a secret-looking environment variable (``WANDB_API_KEY``,
  ``HF_TOKEN``, ``OPENAI_API_KEY``, ``REWARDLAB_PSEUDONYM_SALT``, ...) has that value replaced by ``***``,
  wherever it was typed (a tag, a run name, a command-line argument).
Environment variables themselves are never written by rewardlab.
"""

from __future__ import annotations

import os
import re
from typing import Any

MASK = "***"
_SECRET_WORDS = {
    "key",
    "token",
    "secret",
    "password",
    "passwd",
    "apikey",
    "credential",
    "credentials",
    "salt",
}
_SECRET_PARTS = ("password", "secret", "api_key", "apikey", "access_key", "private_key")
# Tokenizer special tokens are names of vocabulary entries, not credentials.
_NOT_SECRET = {f"{name}_token" for name in ("pad", "eos", "bos", "unk", "sep", "cls", "mask")}
_MIN_ENV_SECRET = 6  # shorter env values would mask ordinary words


def secret_name(name: str) -> bool:
    """True for a key or variable name that holds a credential (``hf_token``, ``WANDB_API_KEY``)."""
    lower = str(name).lower().rsplit(".", 1)[-1].lstrip("-")
    if lower.replace("-", "_") in _NOT_SECRET:
        return False
    words = [w for w in re.split(r"[^a-z0-9]+", lower) if w]
    return bool(words) and (
        words[-1] in _SECRET_WORDS or any(p in lower.replace("-", "_") for p in _SECRET_PARTS)
    )


def env_secrets() -> list[str]:
    """Values of secret-looking environment variables, longest first."""
    values = {v for k, v in os.environ.items() if secret_name(k) and len(v) >= _MIN_ENV_SECRET}
    return sorted(values, key=len, reverse=True)


def scrub_text(text: str, secrets: list[str] | None = None) -> str:
    """``text`` with every environment secret value replaced by ``***``."""
    for value in env_secrets() if secrets is None else secrets:
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact(value: Any, secrets: list[str] | None = None) -> Any:
    """A copy of a JSON-like value with secret-named keys masked and env secret values scrubbed."""
    secrets = env_secrets() if secrets is None else secrets
    if isinstance(value, dict):
        return {
            k: (MASK if secret_name(str(k)) and v not in (None, "") else redact(v, secrets))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(v, secrets) for v in value]
    if isinstance(value, str):
        return scrub_text(value, secrets)
    return value


def redact_argv(argv: list[str], secrets: list[str] | None = None) -> list[str]:
    """A command line with secrets masked: ``key=value`` and ``--key=value`` overrides with a secret-looking
    key, the argument after a secret-looking ``--flag``, and any env secret value."""
    secrets = env_secrets() if secrets is None else secrets
    out: list[str] = []
    mask_next = False
    for arg in argv:
        if mask_next:
            out.append(MASK)
            mask_next = False
            continue
        key, eq, _ = arg.partition("=")
        if eq and secret_name(key):
            out.append(f"{key}={MASK}")
        elif arg.startswith("--") and not eq and secret_name(arg):
            out.append(arg)
            mask_next = True
        else:
            out.append(scrub_text(arg, secrets))
    return out
