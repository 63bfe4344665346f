"""Interop helper for tests/transformers_interop.rs (run by the test, never by hand in CI).

  load DIR IDS_JSON      -> prints {"logits": [[...], ...]} of AutoModelForCausalLM(DIR) on IDS
  save DIR CONFIG_JSON   -> initialises DogeForCausalLM(config) with a fixed seed, perturbs it so no
                            mechanism is a no-op, save_pretrained(DIR), prints nothing

Exit code 3 means transformers/torch are not importable: the Rust test then skips.
"""
import json
import sys

try:
    import torch
    from transformers import AutoModelForCausalLM, DogeConfig, DogeForCausalLM
except Exception as e:  # noqa: BLE001 - any import failure means "skip"
    print(f"transformers unavailable: {e}", file=sys.stderr)
    sys.exit(3)

torch.set_grad_enabled(False)


def load(path, ids):
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    logits = model(torch.tensor([ids])).logits[0]
    print(json.dumps({"logits": logits.tolist()}))


def save(path, config_json):
    torch.manual_seed(0)
    model = DogeForCausalLM(DogeConfig(**json.loads(config_json)))
    for name, p in model.named_parameters():
        if name.endswith(".A"):
            p.copy_(torch.randn_like(p))
        elif p.dim() == 1:
            p.copy_(1.0 + 0.1 * torch.randn_like(p))
        else:
            p.add_(0.02 * torch.randn_like(p))
    model.save_pretrained(path)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "load":
        load(sys.argv[2], json.loads(sys.argv[3]))
    elif cmd == "save":
        save(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown command {cmd}")
