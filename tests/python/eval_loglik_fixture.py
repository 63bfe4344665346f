"""Reference log-likelihoods for tests/eval_reference.rs, computed with transformers.

Run from the repository root with torch + transformers + tokenizers installed:

    python tests/python/eval_loglik_fixture.py

It reads the benchmark rows in tests/fixtures/eval/rows/ (a few rows copied from the official splits
in the Hugging Face row format, see tests/fixtures/eval/README.md) and writes

- tests/fixtures/eval/tokenizer-256/: a byte-level BPE tokenizer with 256 ids (the vocabulary of
  the tiny reference model tests/fixtures/doge-tiny/dense), trained by the `tokenizers` library on
  the prompts below, with <|begin_of_text|>/<|end_of_text|>/<|finetune_right_pad_id|> as ids 0/1/2
  and a post-processor that puts <|begin_of_text|> first (as the Doge tokenizer does);
- tests/fixtures/eval/loglik_reference.json: for every item and choice, the prompt text, the
  continuation text, the context and continuation token ids (split as lm-eval / lighteval split
  them), and what transformers' DogeForCausalLM (eager attention, float32, one sequence at a time,
  no padding, keep_window_size raised to 128 so no exact tie meets the top-k) gives for the continuation: the sum of its token log-probabilities and whether every
  token is the argmax. Also the predictions under acc / acc_norm / acc_norm_nospace, and for
  TriviaQA the greedy generation (20 new tokens) cut at "\n" / "Question:"; and `greedy_probes`,
  continuations that are the model's own greedy tokens (so `is_greedy` is true).

The prompts are written here from the harnesses' definitions (lighteval's default prompts and
small-doge's MMLU cloze prompt, lm-eval's Winogrande partial scoring), independently of doge's Rust
code, so the Rust test checks prompt formatting, the context/continuation split, tokenization and
scoring together.
"""
import json
import os
import re
import string
import sys

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROWS = os.path.join(ROOT, "tests/fixtures/eval/rows")
MODEL = os.path.join(ROOT, "tests/fixtures/doge-tiny/dense")
TOK_DIR = os.path.join(ROOT, "tests/fixtures/eval/tokenizer-256")
OUT = os.path.join(ROOT, "tests/fixtures/eval/loglik_reference.json")
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|finetune_right_pad_id|>"]

torch.set_grad_enabled(False)


def rows(task, split="validation"):
    with open(os.path.join(ROWS, task, split + ".jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


# ---- prompts: (contexts (one, or one per choice), continuations, answers for acc_norm, gold) ----


def hs_preprocess(text):
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def hellaswag(r):
    ctx = r["activity_label"] + ": " + r["ctx_a"] + " " + r["ctx_b"].capitalize() + " "
    endings = [hs_preprocess(e) for e in r["endings"]]
    return [hs_preprocess(ctx)], endings, endings, int(r["label"])


def arc(r):
    texts = r["choices"]["text"]
    gold = r["choices"]["label"].index(r["answerKey"])
    return ["Question: " + r["question"] + "\nAnswer:"], [" " + t for t in texts], texts, gold


def piqa(r):
    sols = [r["sol1"], r["sol2"]]
    return ["Question: " + r["goal"] + "\nAnswer:"], [" " + s for s in sols], sols, r["label"]


def openbookqa(r):
    texts = r["choices"]["text"]
    return [r["question_stem"]], [" " + t for t in texts], texts, "ABCDE".index(r["answerKey"].strip())


def boolq(r):
    ctx = r["passage"] + "\nQuestion: " + r["question"] + "?\nAnswer:"
    return [ctx], [" no", " yes"], ["no", "yes"], int(r["answer"])


def mmlu(r):
    head = "The following are questions about " + r["subject"].replace("_", " ") + ".\n"
    ctx = head + "Question: " + r["question"] + "\nAnswer:"
    return [ctx], [" " + c for c in r["choices"]], r["choices"], r["answer"]


def winogrande(r):
    i = r["sentence"].index("_")
    suffix = r["sentence"][i + 1 :].strip()
    contexts = [r["sentence"][:i] + r["option1"], r["sentence"][:i] + r["option2"]]
    return contexts, [" " + suffix] * 2, [suffix] * 2, int(r["answer"]) - 1


TASKS = {
    "hellaswag": (hellaswag, "validation"),
    "arc_easy": (arc, "validation"),
    "arc_challenge": (arc, "validation"),
    "piqa": (piqa, "validation"),
    "openbookqa": (openbookqa, "validation"),
    "boolq": (boolq, "validation"),
    "mmlu": (mmlu, "test/astronomy"),
    "winogrande": (winogrande, "validation"),
}


def trivia_prompt(r):
    return "Question: " + r["question"] + "\nAnswer:"


# ---- the tokenizer ----


def train_tokenizer(texts):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=256, special_tokens=SPECIALS, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B", special_tokens=[("<|begin_of_text|>", 0)]
    )
    assert tok.get_vocab_size() <= 256, tok.get_vocab_size()
    os.makedirs(TOK_DIR, exist_ok=True)
    tok.save(os.path.join(TOK_DIR, "tokenizer.json"))
    with open(os.path.join(TOK_DIR, "tokenizer_config.json"), "w") as f:
        json.dump(
            {
                "bos_token": SPECIALS[0],
                "eos_token": SPECIALS[1],
                "pad_token": SPECIALS[2],
                "model_max_length": 128,
                "tokenizer_class": "PreTrainedTokenizerFast",
            },
            f,
            indent=2,
        )
    return PreTrainedTokenizerFast(
        tokenizer_file=os.path.join(TOK_DIR, "tokenizer.json"),
        bos_token=SPECIALS[0],
        eos_token=SPECIALS[1],
        pad_token=SPECIALS[2],
    )


def encode_pair(tok, context, continuation):
    """lm-eval's _encode_pair (lighteval's tok_encode_pair), special tokens added."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tok.encode(context + continuation, add_special_tokens=True)
    ctx = tok.encode(context, add_special_tokens=True)
    return ctx, whole[len(ctx) :]


def argmax(xs):
    best = 0
    for i, x in enumerate(xs):
        if x > xs[best]:
            best = i
    return best


def main():
    docs = {t: [f(r) for r in rows(t, split)] for t, (f, split) in TASKS.items()}
    corpus = []
    for items in docs.values():
        for contexts, conts, _, _ in items:
            for i, c in enumerate(conts):
                corpus.append(contexts[0 if len(contexts) == 1 else i] + c)
    trivia = rows("triviaqa")
    corpus += [trivia_prompt(r) + " " + r["answer"]["value"] for r in trivia]
    tok = train_tokenizer(corpus)

    # keep_window_size = max_position_embeddings: no top-k dynamic mask. A repeated token has the
    # same layer-0 value, hence the same dynamic bias, and transformers' top-k kernel breaks such
    # exact ties differently from doge (doc: README "masks.rs"); the window itself is tested by
    # tests/model_reference.rs.
    model = AutoModelForCausalLM.from_pretrained(
        MODEL, attn_implementation="eager", dtype=torch.float32, keep_window_size=128
    )
    assert model.config.keep_window_size == 128
    model.eval()
    max_len = model.config.max_position_embeddings

    out = {"model": "tests/fixtures/doge-tiny/dense", "tokenizer": "tests/fixtures/eval/tokenizer-256", "tasks": {}}
    for task, items in docs.items():
        recs = []
        for index, (contexts, conts, answers, gold) in enumerate(items):
            rec = {"index": index, "gold": gold, "choices": []}
            lls = []
            for i, cont in enumerate(conts):
                context = contexts[0 if len(contexts) == 1 else i]
                ctx_ids, cont_ids = encode_pair(tok, context, cont)
                full = ctx_ids + cont_ids
                assert len(full) - 1 <= max_len, (task, index, len(full))
                logits = model(torch.tensor([full[:-1]])).logits[0]
                logp = torch.log_softmax(logits.double(), dim=-1)
                n = len(cont_ids)
                picked = logp[-n:].gather(1, torch.tensor(cont_ids).unsqueeze(1)).squeeze(1)
                greedy = bool((logits[-n:].argmax(-1) == torch.tensor(cont_ids)).all())
                ll = float(picked.sum())
                lls.append(ll)
                rec["choices"].append(
                    {
                        "context": context,
                        "continuation": cont,
                        "context_ids": ctx_ids,
                        "continuation_ids": cont_ids,
                        "loglikelihood": ll,
                        "is_greedy": greedy,
                    }
                )
            norm = [ll / len(a) for ll, a in zip(lls, answers)]
            nospace = [ll / (len(c) - 1 if c[0] == " " else len(c)) for ll, c in zip(lls, conts)]
            rec["prediction"] = {"acc": argmax(lls), "acc_norm": argmax(norm), "acc_norm_nospace": argmax(nospace)}
            recs.append(rec)
        out["tasks"][task] = recs

    gens = []
    for index, r in enumerate(trivia):
        prompt = trivia_prompt(r)
        ids = tok.encode(prompt, add_special_tokens=True)
        generated = model.generate(
            torch.tensor([ids]),
            max_new_tokens=20,
            do_sample=False,
            eos_token_id=model.config.eos_token_id,
            pad_token_id=model.config.pad_token_id,
        )[0][len(ids) :].tolist()
        text = tok.decode(generated, skip_special_tokens=True)
        cut = min([text.find(s) for s in ["\n", "Question:"] if s in text] + [len(text)])
        gens.append({"index": index, "context": prompt, "output_ids": generated, "prediction": text[:cut]})
    out["triviaqa"] = gens

    # Continuations that are the model's own greedy tokens, so `is_greedy` is also checked true.
    probes = []
    for task in ["arc_easy", "hellaswag", "winogrande"]:
        for rec in out["tasks"][task][:2]:
            ctx_ids = rec["choices"][0]["context_ids"]
            cont = model.generate(
                torch.tensor([ctx_ids]), max_new_tokens=3, do_sample=False, eos_token_id=None, pad_token_id=2
            )[0][len(ctx_ids) :].tolist()
            logits = model(torch.tensor([ctx_ids + cont[:-1]])).logits[0]
            logp = torch.log_softmax(logits.double(), dim=-1)
            picked = logp[-3:].gather(1, torch.tensor(cont).unsqueeze(1)).squeeze(1)
            greedy = bool((logits[-3:].argmax(-1) == torch.tensor(cont)).all())
            probes.append(
                {"context_ids": ctx_ids, "continuation_ids": cont, "loglikelihood": float(picked.sum()), "is_greedy": greedy}
            )
    out["greedy_probes"] = probes

    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
