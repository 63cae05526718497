"""Valid rows of every importer's format, each with the canonical records the importer must make of it.

``case(fmt, container)`` draws a ``Case``: rows in the tool's export shape (as they sit in that container)
and, in order, the expected records (only the fields the format carries). Parquet cases keep one row
shape per file, as a typed table does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from _fuzz import CHAT, LABEL, TEXT, distinct
from hypothesis import strategies as st

from rewardlab.data.formats import ranks_from_scores
from rewardlab.data.formats.shp import strength as shp_strength


@dataclass
class Case:
    rows: list[Any]
    expected: list[dict[str, Any]]


CONTAINERS = {
    "canonical": ("jsonl", "json", "csv", "tsv", "parquet"),
    "trl": ("jsonl", "json", "parquet"),
    "hh-rlhf": ("jsonl", "parquet"),
    "shp": ("jsonl", "parquet"),
    "ultrafeedback": ("jsonl", "parquet"),
    "helpsteer2": ("jsonl", "csv", "parquet"),
    "label-studio": ("json",),
    "argilla": ("jsonl", "json", "parquet"),
    "toloka": ("tsv", "csv"),
    "arena": ("jsonl", "json", "parquet"),
}
PAIRS = [(fmt, c) for fmt, containers in CONTAINERS.items() for c in containers]

PROMPT = TEXT.filter(lambda s: not s.startswith('[{"') and "\n\nHuman:" not in s)


def _messages(chat: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in chat]


# ------------------------------------------------------------------------------------------------ canonical


@st.composite
def canonical_row(draw: Any, plain: bool = False) -> tuple[dict, list[dict]]:
    k = draw(st.integers(2, 4))
    texts = draw(distinct(k, k))
    ranks = draw(st.lists(st.integers(1, k), min_size=k, max_size=k))
    prompt = draw(PROMPT) if plain else draw(PROMPT | CHAT)
    row: dict[str, Any] = {"prompt": prompt, "responses": texts, "ranks": ranks}
    exp: dict[str, Any] = {"prompt": prompt, "responses": texts, "ranks": ranks}
    if plain:
        row["rater"] = exp["rater"] = draw(st.none() | LABEL)
        return row, [exp]
    if draw(st.booleans()):  # {id, text} responses
        ids = draw(st.lists(LABEL, min_size=k, max_size=k))
        row["responses"] = [{"id": i, "text": t} for i, t in zip(ids, texts)]
        exp["response_ids"] = ids
    if draw(st.booleans()):
        row["id"] = exp["id"] = draw(LABEL)
    if draw(st.booleans()):
        rater = draw(LABEL | st.integers(0, 10**6))
        row["rater"], exp["rater"] = rater, str(rater)
    if draw(st.booleans()):
        strength = draw(st.sampled_from(["better", "much_better", "slightly_better"]) | st.integers(0, 9))
        row["strength"], exp["strength"] = strength, str(strength).replace("_", " ")
    if draw(st.booleans()):
        scores = draw(
            st.dictionaries(
                LABEL, st.lists(st.none() | st.integers(1, 5), min_size=k, max_size=k), min_size=1, max_size=2
            )
        )
        row["scores"] = scores
        exp["scores"] = {n: [None if v is None else float(v) for v in vs] for n, vs in scores.items()}
    if draw(st.booleans()):
        row["gold"] = exp["gold"] = draw(st.booleans())
    if draw(st.booleans()):
        row["time_s"] = exp["time_s"] = draw(st.floats(0, 1e6, allow_nan=False))
    if draw(st.booleans()):
        leaf = st.none() | st.booleans() | st.integers(-1000, 1000) | TEXT
        row["meta"] = exp["meta"] = draw(
            st.dictionaries(LABEL, leaf | st.lists(leaf, max_size=2), max_size=3)
        )
    return row, [exp]


# ------------------------------------------------------------------------------------------------ TRL, HH


@st.composite
def trl_row(draw: Any, kind: str | None = None) -> tuple[dict, list[dict]]:
    kind = kind or draw(st.sampled_from(["explicit", "chat", "implicit", "implicit_chat"]))
    if kind == "explicit":
        prompt, (c, r) = draw(PROMPT), draw(distinct(2, 2))
        row: dict[str, Any] = {"prompt": prompt, "chosen": c, "rejected": r}
        exp: dict[str, Any] = {"prompt": prompt, "responses": [c, r], "ranks": [1, 2]}
        if draw(st.booleans()):
            margin = draw(st.floats(-5, 5, allow_nan=False))
            row["margin"], exp["strength"] = margin, str(margin)
        return row, [exp]
    if kind == "chat":
        prompt, (c, r) = draw(CHAT), draw(distinct(2, 2))
        row = {
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": c}],
            "rejected": [{"role": "assistant", "content": r}],
        }
        return row, [{"prompt": _messages(prompt), "responses": [c, r], "ranks": [1, 2]}]
    if kind == "implicit":
        # P + " " + A vs P + " " + B, A and B differing in their first (non-space) character: TRL's
        # prefix split gives the prompt P and the responses " A", " B"
        prompt = draw(PROMPT)
        a, b = draw(
            distinct(2, 2, TEXT.filter(lambda s: not s[0].isspace())).filter(lambda ab: ab[0][0] != ab[1][0])
        )
        row = {"chosen": f"{prompt} {a}", "rejected": f"{prompt} {b}"}
        return row, [{"prompt": prompt, "responses": [f" {a}", f" {b}"], "ranks": [1, 2]}]
    prompt, (c, r) = draw(CHAT), draw(distinct(2, 2))
    row = {
        "chosen": [*prompt, {"role": "assistant", "content": c}],
        "rejected": [*prompt, {"role": "assistant", "content": r}],
    }
    return row, [{"prompt": _messages(prompt), "responses": [c, r], "ranks": [1, 2]}]


HH_TEXT = TEXT.filter(lambda s: "\n\n" not in s)


@st.composite
def hh_row(draw: Any) -> tuple[dict, list[dict]]:
    turns = draw(st.lists(HH_TEXT, min_size=1, max_size=5).filter(lambda t: len(t) % 2 == 1))
    transcript, messages = "", []
    for n, text in enumerate(turns):
        speaker, role = ("Human", "user") if n % 2 == 0 else ("Assistant", "assistant")
        transcript += f"\n\n{speaker}: {text}"
        messages.append({"role": role, "content": text.strip()})
    c, r = draw(distinct(2, 2, HH_TEXT))
    row = {"chosen": f"{transcript}\n\nAssistant: {c}", "rejected": f"{transcript}\n\nAssistant: {r}"}
    return row, [{"prompt": messages, "responses": [c.strip(), r.strip()], "ranks": [1, 2]}]


# ------------------------------------------------------------------------------------------------ SHP, UF, HS2


@st.composite
def shp_row(draw: Any) -> tuple[dict, list[dict]]:
    a, b = draw(distinct(2, 2))
    label = draw(st.sampled_from([0, 1]))
    score_a, score_b = draw(st.integers(1, 500)), draw(st.integers(1, 500))
    ids = draw(st.lists(LABEL, min_size=2, max_size=2))
    row: dict[str, Any] = {
        "post_id": draw(LABEL),
        "domain": "askscience_train",
        "history": draw(PROMPT),
        "c_root_id_A": ids[0],
        "c_root_id_B": ids[1],
        "human_ref_A": a,
        "human_ref_B": b,
        "labels": label,
        "score_A": score_a,
        "score_B": score_b,
        "score_ratio": None,
    }
    ratio = max(score_a, score_b) / min(score_a, score_b)
    if draw(st.booleans()):
        row["score_ratio"] = ratio = draw(st.floats(1, 100, allow_nan=False))
    exp = {
        "prompt": row["history"],
        "responses": [a, b],
        "response_ids": ids,
        "ranks": [1, 2] if label == 1 else [2, 1],
        "strength": shp_strength(ratio),
    }
    return row, [exp]


ASPECTS = ("instruction_following", "honesty", "truthfulness", "helpfulness")


@st.composite
def uf_row(draw: Any) -> tuple[dict, list[dict]]:
    k = draw(st.integers(2, 4))
    texts = draw(distinct(k, k))
    models = draw(st.lists(LABEL, min_size=k, max_size=k))
    overall = [float(x) for x in draw(st.lists(st.integers(1, 10), min_size=k, max_size=k))]
    completions, scores = [], {a: [] for a in ASPECTS}
    for n in range(k):
        notes = {}
        for aspect in ASPECTS:
            rating = draw(st.sampled_from(["1", "2", "3", "4", "5", "N/A"]))
            notes[aspect] = {"Rating": rating, "Rationale": "..."}
            scores[aspect].append(None if rating == "N/A" else float(rating))
        completions.append(
            {"model": models[n], "response": texts[n], "annotations": notes, "overall_score": overall[n]}
        )
    row = {"source": "evol_instruct", "instruction": draw(PROMPT), "completions": completions}
    exp = {
        "prompt": row["instruction"],
        "responses": texts,
        "response_ids": models,
        "ranks": ranks_from_scores(overall),
        "scores": {a: v for a, v in scores.items() if any(x is not None for x in v)},
    }
    return row, [exp]


ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")


@st.composite
def hs2_case(draw: Any, as_text: bool = False) -> Case:
    """Prompts with 2-4 rated responses each, their rows shuffled together (one record per prompt)."""
    prompts = draw(st.lists(PROMPT, min_size=1, max_size=3, unique=True))
    rows, groups = [], []
    for prompt in prompts:
        texts = draw(distinct(2, 4))
        ratings = [{a: draw(st.integers(0, 4)) for a in ATTRIBUTES} for _ in texts]
        groups.append((prompt, texts, ratings))
        rows += [
            {"prompt": prompt, "response": t, **{a: str(v) if as_text else v for a, v in r.items()}}
            for t, r in zip(texts, ratings)
        ]
    rows = draw(st.permutations(rows))
    order = list(dict.fromkeys(r["prompt"] for r in rows))
    expected = []
    for prompt in order:
        _, texts, ratings = next(g for g in groups if g[0] == prompt)
        in_file = [r["response"] for r in rows if r["prompt"] == prompt]
        by_text = dict(zip(texts, ratings))
        help_ = [float(by_text[t]["helpfulness"]) for t in in_file]
        expected.append(
            {
                "prompt": prompt,
                "responses": in_file,
                "ranks": ranks_from_scores(help_),
                "scores": {a: [float(by_text[t][a]) for t in in_file] for a in ATTRIBUTES},
            }
        )
    return Case(rows, expected)


# ------------------------------------------------------------------------------------------------ tools


@st.composite
def ls_task(draw: Any, task_id: int) -> tuple[dict, list[dict]]:
    prompt = draw(PROMPT)
    annotations, expected = [], []
    ranker = draw(st.booleans())
    if ranker:
        k = draw(st.integers(2, 4))
        texts = draw(distinct(k, k))
        ids = draw(st.lists(LABEL, min_size=k, max_size=k, unique=True))
        data = {"prompt": prompt, "items": [{"id": i, "title": i, "body": t} for i, t in zip(ids, texts)]}
    else:
        texts = draw(distinct(2, 2))
        data = {"prompt": prompt, "answer1": texts[0], "answer2": texts[1]}
    for ann_id in range(draw(st.integers(1, 3))):
        user, lead, gold = (
            draw(st.integers(1, 99)),
            draw(st.floats(0, 600, allow_nan=False)),
            draw(st.booleans()),
        )
        if ranker:
            order = draw(st.permutations(ids))
            result = [
                {
                    "from_name": "rank",
                    "to_name": "items",
                    "type": "ranker",
                    "value": {"ranker": {"rank": order}},
                }
            ]
            ranks = [order.index(i) + 1 for i in ids]
        else:
            choice = draw(st.sampled_from(["left", "right", "tie"]))
            if choice == "tie":
                result = [
                    {
                        "from_name": "tie",
                        "to_name": "prompt",
                        "type": "choices",
                        "value": {"choices": ["Tie"]},
                    }
                ]
                ranks = [1, 1]
            else:
                result = [
                    {
                        "from_name": "comparison",
                        "to_name": "comparison",
                        "type": "pairwise",
                        "value": {"selected": choice},
                    }
                ]
                ranks = [1, 2] if choice == "left" else [2, 1]
        annotations.append(
            {
                "id": ann_id,
                "completed_by": user,
                "result": result,
                "was_cancelled": False,
                "ground_truth": gold,
                "lead_time": lead,
            }
        )
        expected.append(
            {
                "id": f"ls-{task_id}-{ann_id}",
                "prompt": prompt,
                "responses": texts,
                "ranks": ranks,
                "rater": str(user),
                "time_s": lead,
                "gold": gold,
            }
        )
    return {"id": task_id, "data": data, "annotations": annotations, "predictions": []}, expected


@st.composite
def argilla_row(draw: Any, shape: str, rid: str) -> tuple[dict, list[dict]]:
    k = draw(st.integers(2, 4))
    prompt, texts = draw(PROMPT), draw(distinct(k, k))
    fields = {"prompt": prompt, **{f"response{i + 1}": t for i, t in enumerate(texts)}}
    names = list(fields)[1:]
    users = draw(st.lists(LABEL, min_size=1, max_size=3))
    expected, rankings = [], []
    for user in users:
        if shape == "v1":
            ranks = draw(st.lists(st.integers(1, k), min_size=k, max_size=k))
            value = [{"value": n, "rank": r} for n, r in zip(names, ranks)]
        else:
            order = draw(st.permutations(names))
            ranks = [order.index(n) + 1 for n in names]
            value = order
        rankings.append(value)
        expected.append(
            {
                "id": f"argilla-{rid}-{user}",
                "prompt": prompt,
                "responses": texts,
                "ranks": ranks,
                "rater": user,
            }
        )
    if shape == "flat":
        row = {
            "id": rid,
            "status": "completed",
            **fields,
            "ranking.responses": rankings,
            "ranking.responses.users": users,
            "ranking.responses.status": ["submitted"] * len(users),
        }
    elif shape == "nested":
        row = {
            "id": rid,
            "fields": fields,
            "metadata": {},
            "responses": {"ranking": [{"value": v, "user_id": u} for v, u in zip(rankings, users)]},
        }
    else:
        row = {
            "fields": fields,
            "external_id": rid,
            "responses": [
                {"user_id": u, "status": "submitted", "values": {"ranking": {"value": v}}}
                for v, u in zip(rankings, users)
            ],
        }
    return row, expected


CHOICES = {"left": [1, 2], "Right": [2, 1], "1": [1, 2], "b": [2, 1], "tie": [1, 1], "Equal": [1, 1]}


@st.composite
def toloka_row(draw: Any, n: int) -> tuple[dict, list[dict]]:
    prompt, (a, b) = draw(PROMPT), draw(distinct(2, 2))
    choice, worker = draw(st.sampled_from(sorted(CHOICES))), draw(LABEL)
    row = {
        "INPUT:prompt": prompt,
        "INPUT:left": a,
        "INPUT:right": b,
        "OUTPUT:result": choice,
        "ASSIGNMENT:assignment_id": f"a{n}",
        "ASSIGNMENT:worker_id": worker,
        "ASSIGNMENT:status": draw(st.sampled_from(["APPROVED", "SUBMITTED", "ACCEPTED"])),
    }
    return row, [{"prompt": prompt, "responses": [a, b], "ranks": CHOICES[choice], "rater": worker}]


ARENA = {"model_a": [1, 2], "model_b": [2, 1], "tie": [1, 1], "tie (bothbad)": [1, 1]}


@st.composite
def arena_row(draw: Any) -> tuple[dict, list[dict]]:
    question, (a, b) = draw(PROMPT), draw(distinct(2, 2))
    winner, judge = draw(st.sampled_from(sorted(ARENA))), draw(LABEL)
    models = draw(st.lists(LABEL, min_size=2, max_size=2))
    user = {"role": "user", "content": question}
    row = {
        "question_id": draw(LABEL),
        "model_a": models[0],
        "model_b": models[1],
        "winner": winner,
        "judge": judge,
        "conversation_a": [user, {"role": "assistant", "content": a}],
        "conversation_b": [user, {"role": "assistant", "content": b}],
        "turn": 1,
        "tstamp": draw(st.floats(1.6e9, 1.8e9)),
    }
    exp = {
        "prompt": [user],
        "responses": [a, b],
        "response_ids": models,
        "ranks": ARENA[winner],
        "rater": judge,
    }
    return row, [exp]


# ------------------------------------------------------------------------------------------------ cases


@st.composite
def case(draw: Any, fmt: str, container: str, max_rows: int = 4) -> Case:
    n = draw(st.integers(1, max_rows))
    if fmt == "helpsteer2":
        return draw(hs2_case(as_text=container == "csv"))
    if fmt == "canonical":
        pairs = [draw(canonical_row(plain=container == "parquet")) for _ in range(n)]
    elif fmt == "trl":
        kind = "explicit" if container == "parquet" else None
        pairs = [draw(trl_row(kind)) for _ in range(n)]
    elif fmt == "hh-rlhf":
        pairs = [draw(hh_row()) for _ in range(n)]
    elif fmt == "shp":
        pairs = [draw(shp_row()) for _ in range(n)]
    elif fmt == "ultrafeedback":
        pairs = [draw(uf_row()) for _ in range(n)]
    elif fmt == "label-studio":
        pairs = [draw(ls_task(i)) for i in range(n)]
    elif fmt == "argilla":
        shape = draw(st.sampled_from(["nested", "v1"])) if container == "json" else "flat"
        pairs = [draw(argilla_row(shape, f"r{i}")) for i in range(n)]
    elif fmt == "toloka":
        pairs = [draw(toloka_row(i)) for i in range(n)]
    elif fmt == "arena":
        pairs = [draw(arena_row()) for _ in range(n)]
    else:
        raise KeyError(fmt)
    return Case([row for row, _ in pairs], [e for _, exps in pairs for e in exps])
