"""The canonical dataset on disk: an Arrow folder (via ``datasets``) plus ``rewardlab.json``.

Why Arrow through ``datasets``: a million records load memory-mapped in well under a second and feed
training without a copy. Flexible fields (chat prompts, scores, meta) are stored as JSON strings so the
schema stays fixed; ``decode`` turns a stored row back into a normalized record (see ``schema.FIELDS``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from rewardlab.data.schema import implied_pairs, normalize_strength, prompt_key

META_FILE = "rewardlab.json"
FORMAT_VERSION = 1

ARROW_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("prompt", pa.string()),  # text, or JSON of the message list when chat is true
        ("chat", pa.bool_()),
        ("responses", pa.list_(pa.string())),
        ("ranks", pa.list_(pa.int32())),
        ("rater", pa.string()),
        ("strength", pa.string()),
        ("scores", pa.string()),  # JSON
        ("gold", pa.bool_()),
        ("time_s", pa.float64()),
        ("meta", pa.string()),  # JSON
        ("response_ids", pa.list_(pa.string())),
        ("soft_pairs", pa.list_(pa.list_(pa.float64()))),
        ("weight", pa.float64()),
        ("raters", pa.list_(pa.string())),
        ("agreement", pa.float64()),
        ("source", pa.string()),
        ("hash", pa.string()),
    ]
)


def encode(rec: dict[str, Any]) -> dict[str, Any]:
    """Normalized record -> storage row."""
    chat = not isinstance(rec["prompt"], str)
    row = dict(rec)
    row["chat"] = chat
    row["prompt"] = json.dumps(rec["prompt"], ensure_ascii=False) if chat else rec["prompt"]
    row["scores"] = None if rec.get("scores") is None else json.dumps(rec["scores"])
    row["meta"] = (
        None if rec.get("meta") is None else json.dumps(rec["meta"], ensure_ascii=False, default=str)
    )
    return row


def decode(row: dict[str, Any]) -> dict[str, Any]:
    """Storage row -> normalized record."""
    rec = dict(row)
    if rec.pop("chat", False):
        rec["prompt"] = json.loads(rec["prompt"])
    if rec.get("scores") is not None:
        rec["scores"] = json.loads(rec["scores"])
    if rec.get("meta") is not None:
        rec["meta"] = json.loads(rec["meta"])
    if rec.get("weight") is None:
        rec["weight"] = 1.0
    if rec.get("strength") is not None:  # datasets imported before one spelling (SHP's "much_better")
        rec["strength"] = normalize_strength(rec["strength"])
    return rec


class DatasetWriter:
    """Streams normalized records into an Arrow dataset folder in chunks (bounded memory)."""

    def __init__(self, out_dir: str | Path, chunk_size: int = 50_000, extra_meta: dict | None = None):
        self.out = Path(out_dir)
        self.tmp = self.out.with_name(self.out.name + ".tmp")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        self.chunk_size = chunk_size
        self.columns: dict[str, list] = {name: [] for name in ARROW_SCHEMA.names}
        self.count = 0
        self.hasher = hashlib.sha256()
        self.writer = pa.ipc.new_stream(str(self.tmp / "data-00000-of-00001.arrow"), ARROW_SCHEMA)
        self.extra_meta = extra_meta or {}

    def add(self, rec: dict[str, Any]) -> None:
        row = encode(rec)
        for name, col in self.columns.items():
            col.append(row.get(name))
        self.hasher.update(rec["hash"].encode())
        self.count += 1
        if len(self.columns["id"]) >= self.chunk_size:
            self._flush()

    def add_batch(self, batch: pa.RecordBatch) -> None:
        """Append rows already encoded in ARROW_SCHEMA (the parallel importer builds batches in workers)."""
        self._flush()
        self.writer.write_batch(batch)
        for h in batch.column("hash").to_pylist():
            self.hasher.update(h.encode())
        self.count += batch.num_rows

    def abort(self) -> None:
        """Drop the unfinished folder (a strict import that found bad records writes no dataset)."""
        try:
            self.writer.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _flush(self) -> None:
        if not self.columns["id"]:
            return
        batch = pa.record_batch(
            [pa.array(self.columns[n], type=f.type) for n, f in zip(ARROW_SCHEMA.names, ARROW_SCHEMA)],
            schema=ARROW_SCHEMA,
        )
        self.writer.write_batch(batch)
        self.columns = {name: [] for name in ARROW_SCHEMA.names}

    def close(self) -> dict[str, Any]:
        """Finish the folder atomically (write to .tmp, then rename) and return its metadata."""
        self._flush()
        self.writer.close()
        meta = {
            "format_version": FORMAT_VERSION,
            "records": self.count,
            "fingerprint": self.hasher.hexdigest()[:16],
            **self.extra_meta,
        }
        _write_hf_metadata(self.tmp)
        (self.tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        if self.out.exists():
            shutil.rmtree(self.out)
        os.replace(self.tmp, self.out)
        return meta


def _write_hf_metadata(folder: Path) -> None:
    """The two small files ``datasets.load_from_disk`` expects beside the Arrow stream."""
    from datasets import Features

    features = Features.from_arrow_schema(ARROW_SCHEMA)
    (folder / "dataset_info.json").write_text(json.dumps({"features": features.to_dict()}))
    state = {
        "_data_files": [{"filename": "data-00000-of-00001.arrow"}],
        "_fingerprint": hashlib.sha1(str(folder).encode()).hexdigest()[:16],
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
    (folder / "state.json").write_text(json.dumps(state))


def write_dataset(
    records: Iterable[dict[str, Any]], out_dir: str | Path, extra_meta: dict | None = None
) -> dict:
    writer = DatasetWriter(out_dir, extra_meta=extra_meta)
    for rec in records:
        writer.add(rec)
    return writer.close()


def is_dataset_dir(path: str | Path) -> bool:
    return (Path(path) / META_FILE).is_file()


def dataset_meta(path: str | Path) -> dict[str, Any]:
    return json.loads((Path(path) / META_FILE).read_text())


def load_dataset(path: str | Path):
    """A dataset folder -> ``datasets.Dataset`` (memory-mapped). Raise ValueError when it is not one."""
    from datasets import load_from_disk

    if not is_dataset_dir(path):
        raise ValueError(
            f"{path}: not a rewardlab dataset folder (no {META_FILE}); import it with `rewardlab data import`"
        )
    return load_from_disk(str(path))


def iter_records(ds, batch_size: int = 10_000) -> Iterator[dict[str, Any]]:
    """Decoded, normalized records of a dataset, streamed in batches."""
    for start in range(0, len(ds), batch_size):
        batch = ds[start : start + batch_size]
        keys = list(batch)
        for values in zip(*(batch[k] for k in keys)):
            yield decode(dict(zip(keys, values)))


def split_by_prompt(ds, eval_fraction: float = 0.1, seed: int = 0):
    """Deterministic train/eval split grouped by prompt: a prompt never sits in two splits.

    The hash is computed once per distinct prompt (dictionary-encoded Arrow column), not once per row, so a
    million records split in about a second.
    """
    if eval_fraction <= 0:
        return ds, ds.select([])
    import numpy as np
    import pyarrow.compute as pc

    threshold = int(eval_fraction * 10_000)
    encoded = pc.dictionary_encode(ds.with_format("arrow")["prompt"].combine_chunks())
    eval_prompt = np.array(
        [
            int(hashlib.sha1(f"{seed}:{prompt_key(p)}".encode()).hexdigest()[:8], 16) % 10_000 < threshold
            for p in encoded.dictionary.to_pylist()
        ],
        dtype=bool,
    )
    is_eval = eval_prompt[encoded.indices.to_numpy(zero_copy_only=False)]
    return ds.select(np.nonzero(~is_eval)[0]), ds.select(np.nonzero(is_eval)[0])


def set_aside_gold(records: list[dict[str, Any]], use_gold: bool) -> tuple[list[dict[str, Any]], int]:
    """(records without gold, how many gold records were set aside); all records when ``use_gold``.

    Gold records are the raters' answer key (``gold: true``): training or evaluating on them would grade
    the model on the key the raters were graded with, so every stage leaves them out unless
    ``data.use_gold`` says otherwise, and reports the count (nothing leaves silently).
    """
    if use_gold:
        return records, 0
    kept = [r for r in records if not r.get("gold")]
    return kept, len(records) - len(kept)


def pairs(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """The pairwise view of one record: every pair its ranks imply, with soft label and weight.

    ``p`` is the probability that ``chosen`` beats ``rejected``: 1.0 for a hard label, the aggregated
    soft label when the record carries ``soft_pairs``, 0.5 for a tie (``tie`` is true).
    """
    soft = {(int(i), int(j)): p for i, j, p in (rec.get("soft_pairs") or [])}
    out = []
    for i, j, tie in implied_pairs(rec["ranks"]):
        if (i, j) in soft:
            p = soft[(i, j)]
        elif (j, i) in soft:
            p = 1.0 - soft[(j, i)]
        else:
            p = 0.5 if tie else 1.0
        out.append(
            {
                "prompt": rec["prompt"],
                "chosen": rec["responses"][i],
                "rejected": rec["responses"][j],
                "chosen_index": i,
                "rejected_index": j,
                "tie": tie,
                "p": p,
                "weight": rec.get("weight", 1.0),
                "strength": rec.get("strength"),
                "id": rec["id"],
            }
        )
    return out
