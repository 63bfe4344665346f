"""Interop helper: logits of a SmallDoge remote-code ("variant B") checkpoint, for Rust tests.

  python smalldoge_logits.py load DIR IDS_JSON
      loads DIR with AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True,
      attn_implementation="eager", torch_dtype=torch.float32) and prints {"logits": [[...], ...]}
      (one row of vocab logits per position) for the one sequence IDS_JSON (e.g. "[5, 17, 9]").

DIR must be a hub-repo-like folder: config.json with auto_map -> configuration_doge.DogeConfig /
modeling_doge.DogeForCausalLM and small-doge's configuration_doge.py / modeling_doge.py beside the
weights (SmallDoges/small-doge 0e305a735708fd277f5a8e9fd36954492aba28f1 imports from transformers 4.5x).
The model is loaded fresh on every call, so dynamic-NTK RoPE starts from its initial state.
For is_moe models the CDMoE's output tuple is unwrapped (small-doge's decoder layer would pass the
tuple to dropout and crash); small-doge's routing is kept, so only single-token MoE calls route
per token.

Exit code 3 (message on stderr) means the environment cannot run it: torch or transformers not
importable, transformers not a 4.5x release, or the remote code failing to import; the Rust test
then skips.
"""
import json
import sys


def skip(msg):
    print(f"smalldoge_logits: skipping: {msg}", file=sys.stderr)
    sys.exit(3)


try:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM
except Exception as e:  # noqa: BLE001 - any import failure means "skip"
    skip(f"torch/transformers unavailable: {e}")

_ver = transformers.__version__.split(".")
if not (_ver[0] == "4" and len(_ver) > 1 and len(_ver[1]) == 2 and _ver[1].startswith("5")):
    skip(f"transformers {transformers.__version__} is not a 4.5x release (small-doge's remote code needs 4.5x)")

torch.set_grad_enabled(False)


def load(path, ids):
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, trust_remote_code=True, attn_implementation="eager", torch_dtype=torch.float32
        )
    except ImportError as e:
        skip(f"remote code does not import on transformers {transformers.__version__}: {e}")
    model.eval()
    if getattr(model.config, "is_moe", False):
        # small-doge's decoder layer passes the CDMoE's (states, router_logits) tuple to dropout and
        # crashes; pass the states alone on (no numerical change). Routing is left as small-doge's
        # (router logits viewed as [2, B*L, K]), which routes per token only when B*L = 1.
        for layer in model.model.layers:
            layer.mlp.forward = (lambda f: lambda x, **kw: f(x, **kw)[0])(layer.mlp.forward)
    logits = model(torch.tensor([ids])).logits[0]
    print(json.dumps({"logits": logits.tolist()}))


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "load":
        sys.exit("usage: smalldoge_logits.py load DIR IDS_JSON")
    load(sys.argv[2], json.loads(sys.argv[3]))
