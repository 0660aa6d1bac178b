"""Output heads: masked-language-model, next-visit (multi-hot) and piecewise-constant hazard."""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import N_SPECIAL

__all__ = ["HazardHead", "MLMHead", "NextVisitHead"]


class MLMHead(nn.Module):
    """Masked-language-model head: dense + GELU + LayerNorm, then a decoder to the vocabulary.

    Parameters
    ----------
    embedding_dim : int
        Width of the hidden states.
    vocab_size : int
        Number of token ids.
    layer_norm_eps : float, default=1e-5
        LayerNorm epsilon.
    tied_weight : torch.nn.Parameter of shape (vocab_size, embedding_dim), optional
        The code embedding table to share as decoder weight (weight tying). When
        tied, the rows of the special ids are used detached: MLM labels are never
        special tokens, and without this the padding row of the code table would
        receive gradient through the decoder and stop being zero.

    Attributes
    ----------
    dense : torch.nn.Linear
    norm : torch.nn.LayerNorm
    decoder : torch.nn.Linear
        Its ``weight`` is ``tied_weight`` when given.
    tied : bool
    """

    def __init__(
        self,
        embedding_dim: int,
        vocab_size: int,
        layer_norm_eps: float = 1e-5,
        tied_weight: nn.Parameter | None = None,
    ) -> None:
        super().__init__()
        self.dense = nn.Linear(embedding_dim, embedding_dim)
        self.norm = nn.LayerNorm(embedding_dim, eps=layer_norm_eps)
        self.decoder = nn.Linear(embedding_dim, vocab_size)
        self.tied = tied_weight is not None
        if tied_weight is not None:
            if tuple(tied_weight.shape) != (vocab_size, embedding_dim):
                raise ValueError(
                    f"tied_weight has shape {tuple(tied_weight.shape)}, expected "
                    f"{(vocab_size, embedding_dim)}"
                )
            self.decoder.weight = tied_weight

    def forward(self, hidden: Tensor) -> Tensor:
        """Vocabulary logits.

        Parameters
        ----------
        hidden : torch.Tensor of shape (..., D)
            Token representations.

        Returns
        -------
        torch.Tensor
            Logits of shape ``(..., vocab_size)``.
        """
        h = self.norm(F.gelu(self.dense(hidden)))
        weight = self.decoder.weight
        if self.tied:
            weight = torch.cat((weight[:N_SPECIAL].detach(), weight[N_SPECIAL:]))
        return F.linear(h, weight, self.decoder.bias)


class NextVisitHead(nn.Module):
    """Next-visit head: visit representation -> logits of each code being in the next visit.

    Parameters
    ----------
    embedding_dim : int
        Width of the visit representations.
    vocab_size : int
        Number of token ids (multi-hot target width).
    layer_norm_eps : float, default=1e-5
        LayerNorm epsilon.

    Attributes
    ----------
    dense : torch.nn.Linear
    norm : torch.nn.LayerNorm
    decoder : torch.nn.Linear
    """

    def __init__(self, embedding_dim: int, vocab_size: int, layer_norm_eps: float = 1e-5):
        super().__init__()
        self.dense = nn.Linear(embedding_dim, embedding_dim)
        self.norm = nn.LayerNorm(embedding_dim, eps=layer_norm_eps)
        self.decoder = nn.Linear(embedding_dim, vocab_size)

    def forward(self, visit_repr: Tensor) -> Tensor:
        """Multi-hot logits.

        Parameters
        ----------
        visit_repr : torch.Tensor of shape (..., D)
            Visit representations.

        Returns
        -------
        torch.Tensor
            Logits of shape ``(..., vocab_size)`` (independent sigmoids, one per code).
        """
        return self.decoder(self.norm(F.gelu(self.dense(visit_repr))))


class HazardHead(nn.Module):
    """Hazard head: a small MLP from a visit representation to ``K`` logits.

    ``softplus(logit_k)`` is the hazard integrated over interval ``k`` of the time grid
    (constant inside it; see :mod:`survbehrt.survival`).

    Parameters
    ----------
    embedding_dim : int
        Width of the visit representations.
    num_bins : int
        Number ``K`` of time intervals.
    hidden_dim : int, optional
        Width of the hidden layer; default ``max(embedding_dim // 2, 1)``.
    dropout : float, default=0.0
        Dropout before the output layer.

    Attributes
    ----------
    hidden : torch.nn.Linear
    dropout : torch.nn.Dropout
    output : torch.nn.Linear
    num_bins : int
    """

    def __init__(
        self,
        embedding_dim: int,
        num_bins: int,
        hidden_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if isinstance(num_bins, bool) or not isinstance(num_bins, numbers.Integral) or num_bins < 1:
            raise ValueError(f"num_bins must be a positive int, got {num_bins!r}")
        num_bins = int(num_bins)
        hidden_dim = max(embedding_dim // 2, 1) if hidden_dim is None else int(hidden_dim)
        if hidden_dim < 1:
            raise ValueError(f"hidden_dim must be a positive int, got {hidden_dim!r}")
        self.num_bins = num_bins
        self.hidden = nn.Linear(embedding_dim, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_dim, num_bins)

    def forward(self, visit_repr: Tensor) -> Tensor:
        """Hazard logits.

        Parameters
        ----------
        visit_repr : torch.Tensor of shape (..., D)
            Visit representations.

        Returns
        -------
        torch.Tensor
            Logits of shape ``(..., num_bins)``.
        """
        return self.output(self.dropout(F.gelu(self.hidden(visit_repr))))

    @torch.no_grad()
    def add_linear(self, weight) -> None:
        """Add ``weight @ h`` to the logits of every bin, through two hidden units.

        Units 0 and 1 compute ``z = weight @ h`` and ``-z``, and each bin's output takes
        the first minus the second: ``gelu(z) - gelu(-z) = z`` exactly. The other units
        and the output bias keep their values, so the logits become what they were
        (with units 0 and 1 silent) plus ``z``: a linear start that training can leave.

        Parameters
        ----------
        weight : array-like of shape (embedding_dim,)

        Raises
        ------
        ValueError
            If the hidden layer has fewer than two units.
        """
        if self.hidden.out_features < 2:
            raise ValueError("a linear start needs a hazard head with at least 2 hidden units")
        w = torch.as_tensor(weight, dtype=self.hidden.weight.dtype)
        self.hidden.weight[0], self.hidden.weight[1] = w, -w
        self.hidden.bias[:2] = 0.0
        self.output.weight[:, 0], self.output.weight[:, 1] = 1.0, -1.0
