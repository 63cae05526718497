"""Rater pseudonyms: ``r-`` + the first 10 hex digits of HMAC-SHA256(salt, rater id).

Why at the data boundary: a rater id reaches many outputs (datasets, excluded.jsonl, reports, HTML,
aggregate metadata, manifests, tracking tables, logs). Rewriting each output is easy to get wrong once, so
rewardlab replaces the ids in the *input* instead: ``data import --pseudonymize`` writes a dataset that
holds only pseudonyms, and ``raters report/aggregate`` with ``pseudonymize: true`` read a pseudonymized
copy (in a temporary folder) of a raw dataset. Everything downstream then sees pseudonyms only.

Why a keyed hash (HMAC) and not a plain hash: rater ids are low-entropy (emails, worker numbers), so
sha256(id) is reversed by hashing a list of candidates. With a secret salt that is not possible, and the
same salt gives the same pseudonym in every command, so reports from different runs still join.

The salt: ``REWARDLAB_PSEUDONYM_SALT`` when set (at least 16 characters), else the file ``salt_file``
(default ``~/.config/rewardlab/pseudonym-salt``), created with 32 random bytes (mode 0600) on first use.
Nothing about the salt is written to any output, not even a fingerprint: a fingerprint would let anyone
test salt guesses offline (a weak, typed salt falls fast), and joining is checked by comparing pseudonyms.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Iterator
from hashlib import sha256
from pathlib import Path
from typing import Any

from rewardlab.errors import UserError

SALT_ENV = "REWARDLAB_PSEUDONYM_SALT"
MIN_SALT_CHARS = 16
HEX_DIGITS = 10  # 40 bits: no collision expected below ~100k raters; a collision is detected and refused
PSEUDONYM = re.compile(rf"^r-[0-9a-f]{{{HEX_DIGITS}}}$")
META_KEY = "pseudonymized"  # dataset metadata flag: the rater ids in this folder are pseudonyms


def default_salt_file() -> Path:
    """``$XDG_CONFIG_HOME/rewardlab/pseudonym-salt`` (``~/.config`` by default): outside every run folder."""
    root = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(root) / "rewardlab" / "pseudonym-salt"


def load_salt(salt_file: str | Path | None = None, outputs: Iterable[str | Path] = ()) -> bytes:
    """The secret salt: the environment variable, else the salt file (created on first use).

    ``outputs``: folders/files this command writes; a salt file inside one of them is refused, since the
    salt would then ship with the data it protects.
    """
    env = os.environ.get(SALT_ENV)
    if env:
        if len(env) < MIN_SALT_CHARS:
            raise UserError(f"{SALT_ENV} is too short: use at least {MIN_SALT_CHARS} random characters")
        return env.encode("utf-8")
    path = Path(salt_file).expanduser() if salt_file else default_salt_file()
    resolved = path.resolve()
    for out in outputs:
        out_path = Path(out).resolve()
        if resolved == out_path or out_path in resolved.parents:
            raise UserError(
                f"raters.salt_file {path} is inside the output {out}: keep the salt outside every output"
            )
    if not path.exists():
        _create_salt(path)
    try:
        salt = path.read_bytes().strip()
    except OSError as err:
        raise UserError(f"raters.salt_file {path}: cannot read the salt ({err.strerror})") from None
    if len(salt) < MIN_SALT_CHARS:
        raise UserError(f"raters.salt_file {path}: the salt is too short (< {MIN_SALT_CHARS} characters)")
    return salt


def _create_salt(path: Path) -> None:
    """32 random bytes as hex, written with O_EXCL and mode 0600 (a concurrent creator wins cleanly)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as err:
        raise UserError(f"raters.salt_file {path}: cannot create the salt ({err.strerror})") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")


class Pseudonymizer:
    """Maps rater ids to pseudonyms with one salt; remembers what it mapped (for scrubbing free text)."""

    def __init__(self, salt: bytes):
        self._salt = salt
        self.mapping: dict[str, str] = {}
        self._owner: dict[str, str] = {}
        self._pattern: re.Pattern | None = None

    def __call__(self, rater: str | None) -> str | None:
        if rater is None or rater == "":
            return rater
        rater = str(rater)
        out = self.mapping.get(rater)
        if out is None:
            digest = hmac.new(self._salt, rater.encode("utf-8"), sha256).hexdigest()
            out = f"r-{digest[:HEX_DIGITS]}"
            other = self._owner.setdefault(out, rater)
            if other != rater:
                raise UserError(f"pseudonym collision between two rater ids ({out}); report this")
            self.mapping[rater] = out
            self._pattern = None
        return out

    def listed(self, name: str) -> str:
        """An ``exclude_list`` entry: a real id is mapped; a pseudonym copied from a report is kept."""
        return name if PSEUDONYM.match(name) else self(name)  # type: ignore[return-value]

    def scrub(self, text: str) -> str:
        """Replace every rater id mapped so far where it stands as a whole token in ``text``."""
        if not self.mapping or not text:
            return text
        if self._pattern is None:
            names = sorted(self.mapping, key=len, reverse=True)
            alternation = "|".join(re.escape(n) for n in names)
            self._pattern = re.compile(rf"(?<![A-Za-z0-9])(?:{alternation})(?![A-Za-z0-9])")
        return self._pattern.sub(lambda m: self.mapping[m.group(0)], text)

    def scrub_json(self, value: Any) -> Any:
        """``scrub`` applied to a JSON-able value (via its text form)."""
        if value is None:
            return None
        return json.loads(self.scrub(json.dumps(value, ensure_ascii=False, default=str)))


def from_config(cfg: Any, outputs: Iterable[str | Path] = ()) -> Pseudonymizer:
    """A pseudonymizer for a raters config (``salt_file``) or a plain salt-file path."""
    salt_file = getattr(cfg, "salt_file", cfg if isinstance(cfg, (str, Path)) else None)
    return Pseudonymizer(load_salt(salt_file, outputs))


def _own_scrub(pz: Pseudonymizer, names: list[str], text: str | None) -> str | None:
    """Replace this record's own rater ids inside one of its strings (ids and meta often embed them)."""
    if not text:
        return text
    for name in sorted(names, key=len, reverse=True):
        if name in text:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", pz(name), text)
    return text


def pseudonymize_record(rec: dict[str, Any], pz: Pseudonymizer) -> dict[str, Any]:
    """A normalized record with ``rater``/``raters`` replaced, the ids inside ``id``, ``meta`` and ``source``
    replaced, and ``hash`` recomputed (an unsalted hash over the raw id would let anyone confirm a guess)."""
    from rewardlab.data.schema import content_hash

    out = dict(rec)
    names = [n for n in [rec.get("rater"), *(rec.get("raters") or [])] if n]
    out["rater"] = pz(rec.get("rater"))
    if rec.get("raters") is not None:
        out["raters"] = [pz(r) if r else r for r in rec["raters"]]
    if names:
        out["id"] = _own_scrub(pz, names, rec.get("id"))
        out["source"] = _own_scrub(pz, names, rec.get("source"))
        if rec.get("meta") is not None:
            text = json.dumps(rec["meta"], ensure_ascii=False, default=str)
            if any(n in text for n in names):
                out["meta"] = json.loads(_own_scrub(pz, names, text))
        out["hash"] = content_hash(out)
    return out


def is_pseudonymized(dataset: str | Path) -> bool:
    from rewardlab.data.dataset import dataset_meta, is_dataset_dir

    return is_dataset_dir(dataset) and bool(dataset_meta(dataset).get(META_KEY))


def pseudonymize_dataset(
    src: str | Path, out: str | Path, pz: Pseudonymizer, chunk: int = 50_000
) -> dict[str, Any]:
    """Write a copy of dataset ``src`` into ``out`` with every rater id replaced, exactly as
    ``pseudonymize_record`` does per record; the metadata is kept, with rater ids inside it replaced too, and
    flagged ``pseudonymized: true``.

    Works on the stored Arrow rows in chunks (no full decode/encode of every record): the ``rater`` column
    is mapped through its dictionary, and only strings that contain a rater id are rewritten.
    """
    import pyarrow as pa

    from rewardlab.data.dataset import ARROW_SCHEMA, DatasetWriter, dataset_meta, load_dataset

    table = load_dataset(src).data.table.select(ARROW_SCHEMA.names).cast(ARROW_SCHEMA)
    for name in table.column("rater").unique().to_pylist():  # map all first, so scrub() knows every id
        pz(name)
    for names in table.column("raters").to_pylist():
        for name in names or []:
            pz(name)
    meta = dataset_meta(src)
    extra = {k: v for k, v in meta.items() if k not in ("format_version", "records", "fingerprint")}
    extra = pz.scrub_json(extra)
    extra[META_KEY] = True
    writer = DatasetWriter(out, extra_meta=extra)
    try:
        for start in range(0, table.num_rows, chunk):
            part = table.slice(start, chunk)
            writer.add_batch(pa.record_batch(_pseudonymized_columns(part, pz), schema=ARROW_SCHEMA))
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def _pseudonymized_columns(part: Any, pz: Pseudonymizer) -> list[Any]:
    """The ARROW_SCHEMA columns of a table slice with rater ids replaced and ``hash`` recomputed."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from rewardlab.data.dataset import ARROW_SCHEMA
    from rewardlab.data.schema import content_hash

    rater = part.column("rater").combine_chunks()
    encoded = pc.dictionary_encode(rater)
    mapped = pa.array([pz(v) for v in encoded.dictionary.to_pylist()], pa.string())
    new_rater = mapped.take(encoded.indices)
    cols = {name: part.column(name).to_pylist() for name in ("id", "source", "meta", "raters", "hash")}
    raters = cols["raters"]
    rows = rater.to_pylist()
    need = [i for i, (r, rs) in enumerate(zip(rows, raters)) if r or rs]
    extra = {
        name: part.column(name).to_pylist() for name in ("prompt", "chat", "responses", "ranks", "strength")
    }
    new_raters = [None if rs is None else [pz(r) if r else r for r in rs] for rs in raters]
    for i in need:
        names = [n for n in [rows[i], *(raters[i] or [])] if n]
        cols["id"][i] = _own_scrub(pz, names, cols["id"][i])
        cols["source"][i] = _own_scrub(pz, names, cols["source"][i])
        meta = cols["meta"][i]
        if meta and any(_json_inner(n) in meta for n in names):
            cols["meta"][i] = json.dumps(
                json.loads(_own_scrub(pz, names, json.dumps(json.loads(meta), ensure_ascii=False))),
                ensure_ascii=False,
                default=str,
            )
        prompt = json.loads(extra["prompt"][i]) if extra["chat"][i] else extra["prompt"][i]
        rec = {"prompt": prompt, "responses": extra["responses"][i], "ranks": extra["ranks"][i],
               "rater": pz(rows[i]), "strength": extra["strength"][i]}  # fmt: skip
        cols["hash"][i] = content_hash(rec)
    cols["raters"] = new_raters
    out = []
    for field in ARROW_SCHEMA:
        if field.name == "rater":
            out.append(new_rater)
        elif field.name in cols:
            out.append(pa.array(cols[field.name], type=field.type))
        else:
            out.append(part.column(field.name).combine_chunks())
    return out


def _json_inner(name: str) -> str:
    """How ``name`` appears inside a JSON string (escapes for quotes, backslashes, control characters)."""
    return json.dumps(name, ensure_ascii=False)[1:-1]


def scrub_quarantine(src: str | Path, out: str | Path, pz: Pseudonymizer) -> int:
    """Copy a quarantine file without the raw rows (they hold rater ids we cannot parse out reliably);
    ``source:line`` still points at the row in the user's own export. Known ids in the text are replaced."""
    n = 0
    with open(src, encoding="utf-8") as fin, open(out, "w", encoding="utf-8") as fout:
        for line in fin:
            entry = json.loads(line)
            dropped = {k for k in ("raw", "raw_prefix", "raw_chars") if k in entry}
            entry = {k: v for k, v in entry.items() if k not in dropped}
            if dropped:
                entry["raw_dropped"] = "raters.pseudonymize: see source:line in your export"
            fout.write(pz.scrub(json.dumps(entry, ensure_ascii=False, default=str)) + "\n")
            n += 1
    return n


def raters_config(cfg: Any, pz: Pseudonymizer) -> Any:
    """The raters config with ``exclude_list`` in pseudonyms (real ids still match; none is written)."""
    return cfg.model_copy(update={"exclude_list": [pz.listed(str(n)) for n in cfg.exclude_list]})


@contextlib.contextmanager
def raters_input(
    dataset: str | Path, cfg: Any, outputs: Iterable[str | Path] = ()
) -> Iterator[tuple[Path, Any]]:
    """``(dataset, cfg)`` to measure and merge: unchanged without ``cfg.pseudonymize``; otherwise a
    pseudonymized copy in a temporary folder (deleted afterwards) and the config with a pseudonymized
    ``exclude_list``. A dataset that is already pseudonymized is read as is."""
    if not getattr(cfg, "pseudonymize", False):
        real = [n for n in getattr(cfg, "exclude_list", []) if not PSEUDONYM.match(str(n))]
        if real and is_pseudonymized(dataset):
            raise UserError(
                f"{dataset} holds pseudonymized rater ids, so the {len(real)} real id(s) in exclude_list "
                "match nothing: set pseudonymize=true (same salt) to map them, or list pseudonyms"
            )
        yield Path(dataset), cfg
        return
    pz = from_config(cfg, outputs)
    if is_pseudonymized(dataset):
        yield Path(dataset), raters_config(cfg, pz)
        return
    from rewardlab.data.dataset import is_dataset_dir

    if not is_dataset_dir(dataset):
        yield Path(dataset), raters_config(cfg, pz)  # the reader raises its own "not a dataset" error
        return
    with tempfile.TemporaryDirectory(prefix="rewardlab-pseudonyms-") as tmp:
        copy = Path(tmp) / "dataset"
        pseudonymize_dataset(dataset, copy, pz)
        yield copy, raters_config(cfg, pz)


def pseudonymize_stats(stats: dict[str, Any], pz: Pseudonymizer) -> dict[str, Any]:
    """``data stats`` output with the per-rater keys pseudonymized."""
    out = dict(stats)
    for key in ("position_bias_by_rater", "pairs_by_rater"):
        if isinstance(out.get(key), dict):
            out[key] = {pz(str(k)): v for k, v in out[key].items()}
    return out


def import_paths(
    paths: Iterable[str | Path],
    out: str | Path,
    quarantine: str | Path | None = None,
    salt_file: str | Path | None = None,
    **kwargs: Any,
) -> Any:
    """``data import --pseudonymize``: import into a temporary folder, then write ``out`` with pseudonyms
    and the quarantine without raw rows. Returns the import report (its texts scrubbed too)."""
    from rewardlab.data import importing
    from rewardlab.data.dataset import dataset_meta, is_dataset_dir

    final_q = Path(quarantine) if quarantine else importing.default_quarantine(out)
    pz = from_config(salt_file, outputs=[out, final_q])
    with tempfile.TemporaryDirectory(prefix="rewardlab-import-") as tmp:
        raw_out, raw_q = Path(tmp) / "dataset", Path(tmp) / "quarantine.jsonl"
        report = importing.import_paths(paths, raw_out, quarantine=raw_q, **kwargs)
        if is_dataset_dir(raw_out):
            pseudonymize_dataset(raw_out, out, pz)
            meta = dataset_meta(out)
            if isinstance(meta.get("import"), dict):
                meta["import"]["quarantine"] = str(final_q)
                (Path(out) / "rewardlab.json").write_text(json.dumps(meta, indent=2))
        if raw_q.exists():
            final_q.parent.mkdir(parents=True, exist_ok=True)
            scrub_quarantine(raw_q, final_q, pz)
    report.quarantine = str(final_q)
    if report.first_bad:
        report.first_bad = pz.scrub_json(report.first_bad)
    return report


def pipeline_config(cfg: Any) -> Any:
    """A pipeline config whose inline ``raters.exclude_list`` is in pseudonyms when ``raters.pseudonymize``
    is on, so the pipeline's own config.yaml and fingerprints never hold a real id (listed real ids still
    exclude the same raters)."""
    raters = getattr(cfg, "raters", None)
    if not isinstance(raters, dict) or not raters.get("pseudonymize") or not raters.get("exclude_list"):
        return cfg
    pz = from_config(raters.get("salt_file"))
    listed = [pz.listed(str(n)) for n in raters["exclude_list"]]
    return cfg.model_copy(update={"raters": {**raters, "exclude_list": listed}})
