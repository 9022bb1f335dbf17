"""Fixtures for the attention backward (`tmd_model::attention`): PyTorch autograd through
`torch.nn.functional.scaled_dot_product_attention` on small random inputs.

Rerun from the workspace root (any Python with torch; no diffusers needed):

    python3 scripts/reference/attention_fixtures.py

Writes tests/fixtures/attention/grads.safetensors, f32, seed 0, two cases:
  self_{q,k,v}   [2, 3, 11, 8]   self-attention (batch 2, 3 heads, 11 tokens, head dim 8)
  self_dout      [2, 3, 11, 8]   output gradient
  self_out       [2, 3, 11, 8]   attention output
  self_d{q,k,v}                  gradients of sum(out * dout) with respect to q, k, v
  cross_q        [1, 2, 5, 16]   cross-attention (5 queries over 9 keys, head dim 16)
  cross_{k,v}    [1, 2, 9, 16]
  cross_{dout,out,dq,dk,dv}      as above
Scores are made large (q scaled by 3) so the softmax is far from uniform.
"""

import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "attention")


def case(name, q_shape, kv_shape, gen, tensors):
    q = (3.0 * torch.randn(q_shape, generator=gen, dtype=torch.float64)).requires_grad_()
    k = torch.randn(kv_shape, generator=gen, dtype=torch.float64).requires_grad_()
    v = torch.randn(kv_shape, generator=gen, dtype=torch.float64).requires_grad_()
    dout = torch.randn(q_shape, generator=gen, dtype=torch.float64)
    out = F.scaled_dot_product_attention(q, k, v)
    (out * dout).sum().backward()
    for key, t in [("q", q), ("k", k), ("v", v), ("dout", dout), ("out", out),
                   ("dq", q.grad), ("dk", k.grad), ("dv", v.grad)]:
        tensors[f"{name}_{key}"] = t.detach().to(torch.float32).contiguous()


def main():
    gen = torch.Generator().manual_seed(0)
    tensors = {}
    case("self", (2, 3, 11, 8), (2, 3, 11, 8), gen, tensors)
    case("cross", (1, 2, 5, 16), (1, 2, 9, 16), gen, tensors)
    os.makedirs(OUT, exist_ok=True)
    save_file(tensors, os.path.join(OUT, "grads.safetensors"))
    print(f"wrote {len(tensors)} tensors to {OUT}/grads.safetensors")


if __name__ == "__main__":
    main()
