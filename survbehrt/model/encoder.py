"""Transformer encoder layers on ``scaled_dot_product_attention``, and the attention masks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MultiHeadSelfAttention", "TransformerEncoderLayer", "build_attention_mask"]


def build_attention_mask(
    attention_mask: Tensor, visits: Tensor | None = None, causal: bool = False
) -> Tensor:
    """Boolean attention mask for SDPA (True = the query may attend to the key).

    Built once per forward and shared by every layer and head.

    - Bidirectional (``causal=False``): key padding only, shape ``(B, 1, 1, L)``
      (broadcast over heads and queries, so no ``L x L`` tensor is built).
    - Visit-causal (``causal=True``): token ``i`` sees token ``j`` iff ``j`` is real
      and ``visits[j] <= visits[i]``, shape ``(B, 1, L, L)``.

    Every query row keeps at least one allowed key, so the softmax never sees an
    all ``-inf`` row (which gives NaN): in causal mode each token may see itself;
    in bidirectional mode a sequence without any real token may see every key.
    Outputs at padding queries are meaningless and must be ignored by callers.

    Parameters
    ----------
    attention_mask : torch.Tensor of shape (B, L)
        Bool, True for real tokens.
    visits : torch.Tensor of shape (B, L), optional
        Visit index of each token; required when ``causal``.
    causal : bool, default=False
        Visit-causal masking.

    Returns
    -------
    torch.Tensor
        Bool mask of shape ``(B, 1, 1, L)`` or ``(B, 1, L, L)``.
    """
    if causal:
        if visits is None:
            raise ValueError("visits is required for the visit-causal mask")
        # allowed[b, i, j] = visits[b, j] <= visits[b, i] and token j is real
        allowed = (visits.unsqueeze(1) <= visits.unsqueeze(2)) & attention_mask.unsqueeze(1)
        length = attention_mask.shape[1]
        allowed |= torch.eye(length, dtype=torch.bool, device=allowed.device)
        return allowed.unsqueeze(1)
    keys = attention_mask | ~attention_mask.any(dim=1, keepdim=True)
    return keys[:, None, None, :]


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention with separate q / k / v / out projections.

    The projections are separate ``nn.Linear`` modules (no fused qkv) so that
    LoRA can wrap each by name.

    Parameters
    ----------
    embedding_dim : int
        Model width ``D``; divisible by ``num_heads``.
    num_heads : int
        Number of heads.
    attention_dropout : float, default=0.0
        Dropout on the attention weights (training only).
    """

    def __init__(self, embedding_dim: int, num_heads: int, attention_dropout: float = 0.0):
        super().__init__()
        if embedding_dim % num_heads != 0:
            raise ValueError(
                f"embedding_dim ({embedding_dim}) must be divisible by num_heads ({num_heads})"
            )
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.head_dim = embedding_dim // num_heads
        self.attention_dropout = attention_dropout
        self.q_proj = nn.Linear(embedding_dim, embedding_dim)
        self.k_proj = nn.Linear(embedding_dim, embedding_dim)
        self.v_proj = nn.Linear(embedding_dim, embedding_dim)
        self.out_proj = nn.Linear(embedding_dim, embedding_dim)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """Attend.

        Parameters
        ----------
        x : torch.Tensor of shape (B, L, D)
            Input hidden states.
        attn_mask : torch.Tensor, optional
            Bool mask broadcastable to ``(B, H, L, L)``, True = allowed
            (see :func:`build_attention_mask`).

        Returns
        -------
        torch.Tensor
            Shape ``(B, L, D)``.
        """
        b, length, _ = x.shape
        shape = (b, length, self.num_heads, self.head_dim)
        q = self.q_proj(x).view(shape).transpose(1, 2)
        k = self.k_proj(x).view(shape).transpose(1, 2)
        v = self.v_proj(x).view(shape).transpose(1, 2)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=self.attention_dropout if self.training else 0.0,
        )
        return self.out_proj(out.transpose(1, 2).reshape(b, length, self.embedding_dim))


class TransformerEncoderLayer(nn.Module):
    """One encoder layer: self-attention and a GELU feed-forward block.

    Parameters
    ----------
    embedding_dim : int
        Model width.
    num_heads : int
        Number of attention heads.
    ff_dim : int
        Inner width of the feed-forward block (``ff_in``: D -> ff_dim,
        ``ff_out``: ff_dim -> D).
    dropout : float, default=0.1
        Dropout on each block's output.
    attention_dropout : float, default=0.0
        Dropout on the attention weights.
    norm_first : bool, default=True
        Pre-norm (``x + f(norm(x))``) if True, post-norm (``norm(x + f(x))``) if False.
    layer_norm_eps : float, default=1e-5
        LayerNorm epsilon.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        ff_dim: int,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        norm_first: bool = True,
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadSelfAttention(embedding_dim, num_heads, attention_dropout)
        self.ff_in = nn.Linear(embedding_dim, ff_dim)
        self.ff_out = nn.Linear(ff_dim, embedding_dim)
        self.attn_norm = nn.LayerNorm(embedding_dim, eps=layer_norm_eps)
        self.ff_norm = nn.LayerNorm(embedding_dim, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def _feed_forward(self, x: Tensor) -> Tensor:
        # No dropout on the (B, L, ff_dim) inner activation (as in BERT): on CPU the
        # random mask costs about as much as a matmul of that size.
        return self.dropout(self.ff_out(F.gelu(self.ff_in(x))))

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """Apply the layer.

        Parameters
        ----------
        x : torch.Tensor of shape (B, L, D)
            Hidden states.
        attn_mask : torch.Tensor, optional
            Bool attention mask from :func:`build_attention_mask`.

        Returns
        -------
        torch.Tensor
            Shape ``(B, L, D)``.
        """
        if self.norm_first:
            x = x + self.dropout(self.self_attn(self.attn_norm(x), attn_mask))
            return x + self._feed_forward(self.ff_norm(x))
        x = self.attn_norm(x + self.dropout(self.self_attn(x, attn_mask)))
        return self.ff_norm(x + self._feed_forward(x))
