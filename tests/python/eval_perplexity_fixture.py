"""Reference perplexities for tests/eval_reference.rs's perplexity test, computed with transformers.

Run from the repository root with torch + transformers + tokenizers installed (after
eval_loglik_fixture.py, whose tokenizer it uses):

    python tests/python/eval_perplexity_fixture.py

It writes

- tests/fixtures/eval/texts/docs.jsonl: four `{"text": ...}` rows: two passages of Jane Austen's
  Persuasion (public domain, experiments/corpus/persuasion.txt), one of them long enough for three
  rolling windows of the tiny model's 128 positions; a short line with non-ASCII letters and a
  trailing newline (bytes are UTF-8 bytes, words as lm-eval splits them); and a blank row, which
  the task skips as lm-eval's wikitext skips blank pages;
- tests/fixtures/eval/perplexity_reference.json: what lm-eval's `loglikelihood_rolling` and its
  wikitext metrics give on those rows with transformers' DogeForCausalLM (tests/fixtures/doge-tiny/dense,
  eager, float32, keep_window_size opened to 128 as in eval_loglik_fixture.py), per document and
  over the set.

The rolling windows are written here from lm-eval's definitions (`get_rolling_token_windows` with
context_len 1 and the bos as prefix token, then `make_disjoint_window`; each window scored on the
last max_length tokens of context + continuation), not from doge's Rust code.
"""
import json
import math
import os
import re

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "tests/fixtures/doge-tiny/dense")
TOK_DIR = os.path.join(ROOT, "tests/fixtures/eval/tokenizer-256")
CORPUS = os.path.join(ROOT, "experiments/corpus/persuasion.txt")
DOCS = os.path.join(ROOT, "tests/fixtures/eval/texts/docs.jsonl")
OUT = os.path.join(ROOT, "tests/fixtures/eval/perplexity_reference.json")

torch.set_grad_enabled(False)


def passages():
    text = open(CORPUS, encoding="utf-8").read()
    paragraphs = [p.strip() for p in text.split("\n\n") if len(p.strip()) > 200]
    # Chapter 1's first paragraph (long: several windows) and a shorter later one.
    return paragraphs[0], min(paragraphs[1:40], key=len)


def rolling_windows(tokens, prefix, max_len):
    """lm-eval's get_rolling_token_windows(token_list, prefix_token, max_seq_len, context_len=1)."""
    pred_len = max_len
    first = min(max_len, len(tokens))
    yield [prefix] + tokens[: first - 1], tokens[:first]
    predicted = first
    while predicted < len(tokens):
        n = min(len(tokens) - predicted, pred_len)
        end = predicted + n
        yield tokens[max(end - max_len - 1, 0) : end - 1], tokens[end - n : end]
        predicted += n


def disjoint(window):
    """lm-eval's make_disjoint_window: the context loses the tokens the continuation repeats."""
    a, b = window
    return a[: len(a) - (len(b) - 1)], b


def loglikelihood(model, context, continuation, max_len):
    whole = (context + continuation)[-(max_len + 1) :]
    logits = model(torch.tensor([whole[:-1]])).logits[0]
    logp = torch.log_softmax(logits.double(), dim=-1)
    n = len(continuation)
    return float(logp[-n:].gather(1, torch.tensor(continuation).unsqueeze(1)).sum())


def main():
    long_doc, short_doc = passages()
    rows = [long_doc, "Naïve Anne's café — a “quiet” evening\n", "   ", short_doc]
    os.makedirs(os.path.dirname(DOCS), exist_ok=True)
    with open(DOCS, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"text": r}, ensure_ascii=False) + "\n")

    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(TOK_DIR, "tokenizer.json"))
    bos = tok.convert_tokens_to_ids("<|begin_of_text|>")
    model = AutoModelForCausalLM.from_pretrained(
        MODEL, attn_implementation="eager", dtype=torch.float32, keep_window_size=128
    )
    model.eval()
    max_len = model.config.max_position_embeddings

    docs = []
    for text in rows:
        if not text.strip():
            continue
        tokens = tok.encode(text, add_special_tokens=False)
        windows = [disjoint(w) for w in rolling_windows(tokens, bos, max_len)]
        ll = sum(loglikelihood(model, c, t, max_len) for c, t in windows)
        docs.append(
            {
                "loglikelihood": ll,
                "tokens": len(tokens),
                "windows": len(windows),
                # lm-eval's wikitext: words = len(re.split(r"\s+", page)), bytes = UTF-8 bytes.
                "words": len(re.split(r"\s+", text)),
                "bytes": len(text.encode("utf-8")),
            }
        )
    ll = sum(d["loglikelihood"] for d in docs)
    words = sum(d["words"] for d in docs)
    nbytes = sum(d["bytes"] for d in docs)
    tokens = sum(d["tokens"] for d in docs)
    out = {
        "model": "tests/fixtures/doge-tiny/dense",
        "tokenizer": "tests/fixtures/eval/tokenizer-256",
        "max_length": max_len,
        "docs": docs,
        "word_perplexity": math.exp(-ll / words),
        "byte_perplexity": math.exp(-ll / nbytes),
        "bits_per_byte": -ll / nbytes / math.log(2),
        "token_perplexity": math.exp(-ll / tokens),
    }
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(json.dumps({k: v for k, v in out.items() if k != "docs"}, indent=1))
    print([(d["tokens"], d["windows"], d["words"], d["bytes"]) for d in docs])


if __name__ == "__main__":
    main()
