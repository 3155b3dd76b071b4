"""SmolVLA's VLM + action-expert attention through torch's fused ``scaled_dot_product_attention``.

lerobot 0.6.1 computes this attention by hand (``SmolVLMWithExpertModel.eager_attention_forward``):
the query-key logits and the softmax probabilities are materialised as full fp32
(batch, heads, queries, keys) tensors. ``scaled_dot_product_attention`` computes the same thing
with a fused kernel (flash / memory-efficient on CUDA, a fused C++ kernel on CPU) that does not
keep those tensors for backward. Same inputs, same mask semantics, same output layout:

- the boolean mask (batch, queries, keys) is turned into the additive mask eager applies
  (0 where allowed, the dtype's lowest value where not). A query with no allowed key (a padded
  token) then attends to every key uniformly, as in eager, instead of giving NaN;
- grouped key/value heads are repeated as eager repeats them;
- the logits are scaled by ``head_dim ** -0.5``.

Results equal eager within floating-point tolerance (tests/policy/test_attention.py). Only the
module's attention function changes: weights, configs and saved checkpoints are the same, and
plain lerobot loads them as before. We swap the function on the model instance, we do not fork lerobot.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F  # noqa: N812

ATTENTION_KINDS = ("sdpa", "eager")


def sdpa_attention_forward(self, attention_mask, batch_size, head_dim, query_states, key_states, value_states):
    """Drop-in for ``SmolVLMWithExpertModel.eager_attention_forward``: (B, L, H, D) in, (B, L, H * D) out."""
    groups = self.num_attention_heads // self.num_key_value_heads
    # eager upcasts queries and keys to fp32 for the logits; SDPA needs one dtype: the values'.
    dtype = value_states.dtype
    query = query_states.to(dtype).transpose(1, 2)
    key = key_states.to(dtype).transpose(1, 2)
    value = value_states.transpose(1, 2)
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    additive = torch.zeros(attention_mask.shape, dtype=dtype, device=query.device)
    additive.masked_fill_(~attention_mask, torch.finfo(dtype).min)
    output = F.scaled_dot_product_attention(query, key, value, attn_mask=additive[:, None], scale=head_dim**-0.5)
    return output.transpose(1, 2).reshape(batch_size, -1, self.num_attention_heads * head_dim)


def use_attention(policy, kind: str) -> None:
    """Make ``policy`` (a lerobot SmolVLAPolicy) run its VLM + expert attention as ``kind``: "sdpa" or "eager"."""
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"attention kind {kind!r} is not one of {ATTENTION_KINDS}")
    model = policy.model.vlm_with_expert
    implementation = sdpa_attention_forward if kind == "sdpa" else type(model).eager_attention_forward
    bound = types.MethodType(implementation, model)
    model.get_attention_interface = lambda: bound


def attention_kind(policy) -> str:
    """Which attention ``policy`` runs: "sdpa" or "eager"."""
    function = policy.model.vlm_with_expert.get_attention_interface()
    return "sdpa" if getattr(function, "__func__", None) is sdpa_attention_forward else "eager"
