#!/usr/bin/env python3
"""Writes the quick start's chat data (sft.jsonl, dpo.jsonl) from the Austen corpus.

Every conversation is built here from public-domain paragraphs of ../corpus/ (Jane Austen's six
novels); the questions and answer phrasings are this project's own. Two tasks:

- "Which novel is this passage from?" -> "It is from *Emma*." (the title is recognisable from
  the characters' names, which a model pre-trained on the corpus has seen);
- "Continue this passage from *Emma*: <sentence>" -> the sentence that follows in the novel.

DPO pairs ask the same questions; the chosen answer is the right one, the rejected one names
another novel or gives a sentence from elsewhere. The SFT and DPO passages are disjoint.

Deterministic (seeded): `python3 experiments/chat/make_chat_data.py` rewrites the same files.
"""

import json
import random
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent / "corpus"
TITLES = {
    "emma.txt": "Emma",
    "mansfieldpark.txt": "Mansfield Park",
    "northangerabbey.txt": "Northanger Abbey",
    "persuasion.txt": "Persuasion",
    "prideprejudice.txt": "Pride and Prejudice",
    "sensesensibility.txt": "Sense and Sensibility",
}
SFT_PER_NOVEL = 120  # 60 of each task
DPO_PER_NOVEL = 56  # 28 of each task
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


def paragraphs(path):
    """Blank-line-separated blocks joined to one line, 20 to 70 words, no chapter headings."""
    text = path.read_text(encoding="utf-8")
    out = []
    for block in re.split(r"\n\s*\n", text):
        p = " ".join(block.split())
        words = len(p.split())
        if 20 <= words <= 70 and not p.isupper() and "CHAPTER" not in p:
            out.append(p)
    return out


def sentences(paragraph):
    return [s for s in SENTENCE.split(paragraph) if len(s.split()) >= 4]


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def which(p):
    return f"Which of Jane Austen's novels is this passage from?\n\n{p}"


def answer(title):
    return f"It is from *{title}*."


def continue_prompt(title, s):
    return f"Continue this passage from *{title}*:\n\n{s}"


def main():
    rng = random.Random(233)
    novels = {}
    for name, title in TITLES.items():
        ps = paragraphs(CORPUS / name)
        rng.shuffle(ps)
        novels[title] = ps
    sft, dpo = [], []
    for title, ps in novels.items():
        with_two = [p for p in ps if len(sentences(p)) >= 2]
        two = set(with_two)
        single = [p for p in ps if p not in two]
        pool = single + with_two  # identification prefers passages not used for continuation
        used = set()

        def take(candidates, n):
            got = [p for p in candidates if p not in used][:n]
            used.update(got)
            return got

        cont = take(with_two, SFT_PER_NOVEL // 2 + DPO_PER_NOVEL // 2)
        ident = take(pool, SFT_PER_NOVEL // 2 + DPO_PER_NOVEL // 2)
        n_sft = SFT_PER_NOVEL // 2
        for p in ident[:n_sft]:
            sft.append({"messages": [user(which(p)), assistant(answer(title))]})
        for p in cont[:n_sft]:
            a, b = sentences(p)[:2]
            sft.append({"messages": [user(continue_prompt(title, a)), assistant(b)]})
        for p in ident[n_sft:]:
            wrong = rng.choice([t for t in TITLES.values() if t != title])
            q = which(p)
            dpo.append(
                {
                    "prompt": q,
                    "chosen": [user(q), assistant(answer(title))],
                    "rejected": [user(q), assistant(answer(wrong))],
                }
            )
        for p in cont[n_sft:]:
            a, b = sentences(p)[:2]
            other = rng.choice([t for t in novels if t != title])
            elsewhere = rng.choice(sentences(rng.choice(novels[other][-200:])) or [b])
            q = continue_prompt(title, a)
            dpo.append(
                {
                    "prompt": q,
                    "chosen": [user(q), assistant(b)],
                    "rejected": [user(q), assistant(elsewhere)],
                }
            )
    rng.shuffle(sft)
    rng.shuffle(dpo)
    for name, rows in [("sft.jsonl", sft), ("dpo.jsonl", dpo)]:
        with open(HERE / name, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"{name}: {len(rows)} rows")


if __name__ == "__main__":
    main()
