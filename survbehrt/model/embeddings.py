"""Token embeddings of BEHRT: code + age + visit + position (+ time before prediction, + value bin)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import PAD_ID, BEHRTConfig, as_config
from .time_encoding import ContinuousTimeEncoding, token_times

__all__ = ["BEHRTEmbeddings", "SinusoidalPositionEmbedding", "sinusoidal_table"]


def sinusoidal_table(num_positions: int, dim: int) -> Tensor:
    """Fixed sine / cosine position table of "Attention is all you need".

    Parameters
    ----------
    num_positions : int
        Number of rows (positions ``0 .. num_positions - 1``).
    dim : int
        Embedding width; even columns hold sines, odd columns cosines.

    Returns
    -------
    torch.Tensor
        Float tensor of shape ``(num_positions, dim)``.
    """
    position = torch.arange(num_positions, dtype=torch.float64).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))
    table = torch.zeros(num_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])  # odd dim: one cosine fewer
    return table.float()


class SinusoidalPositionEmbedding(nn.Module):
    """Position embedding read from a fixed sinusoidal table (no parameters).

    Parameters
    ----------
    num_positions : int
        Number of positions in the table.
    dim : int
        Embedding width.
    """

    def __init__(self, num_positions: int, dim: int) -> None:
        super().__init__()
        self.num_embeddings = num_positions
        # Not persistent: the table is a function of the config, so state dicts of
        # learned and sinusoidal models differ only by real parameters.
        self.register_buffer("table", sinusoidal_table(num_positions, dim), persistent=False)

    def forward(self, positions: Tensor) -> Tensor:
        """Look up positions.

        Parameters
        ----------
        positions : torch.Tensor
            Long tensor of positions, any shape.

        Returns
        -------
        torch.Tensor
            ``positions.shape + (dim,)``.
        """
        return F.embedding(positions, self.table)


class BEHRTEmbeddings(nn.Module):
    """Sum of code, age, visit, position, time and value-bin embeddings, then LayerNorm and dropout.

    The code, age, time and value-bin tables use ``padding_idx=0``: their padding rows
    are zero and receive no gradient (so a static code, with age and time bin 0, and a
    code without a value, with value bin 0, add nothing from those tables). Visit index 0 and position 0 are real values (the
    first visit / token), so those tables have no padding row; padding tokens are
    masked out downstream anyway. Age, time, visit and position ids past the end
    of their table are clipped to its last row.

    Parameters
    ----------
    config : BEHRTConfig or mapping
        Model configuration.

    Attributes
    ----------
    code, age, visit, time, value : torch.nn.Embedding
        The tables (``time`` is None when ``use_time_embedding=False``, ``value`` when
        ``n_value_bins=0``). The value-bin table is shared by all codes: bin ``b`` is
        "the ``b``-th quantile bin of this code's values", added to the code's own
        embedding.
    position : torch.nn.Embedding or SinusoidalPositionEmbedding
        Learned or fixed position table.
    code_group : torch.nn.Embedding or None
        The code groups' table (``config.code_groups``), row 0 zero; its row for a
        token's group (buffer ``group_of_code``) is added to the token's code embedding.
    code_shared : torch.nn.Parameter or None
        The table shared through co-occurrence (``config.code_neighbours`` > 0, shape
        ``(vocab_size, D)``, started at zero): a token's code embedding adds
        ``sum_k w[c, k] code_shared[n[c, k]]`` over its code's neighbours ``n`` (buffer
        ``neighbour_ids``) and weights ``w`` (``neighbour_weights``), set by
        :meth:`set_code_neighbours`. Codes that share neighbours (the synonyms of a
        concept) then share what is learned of them.
    norm : torch.nn.LayerNorm
    dropout : torch.nn.Dropout
    """

    def __init__(self, config: BEHRTConfig) -> None:
        super().__init__()
        config = as_config(config)
        dim = config.embedding_dim
        self.code = nn.Embedding(config.vocab_size, dim, padding_idx=PAD_ID)
        self.code_group = None
        if config.code_groups is not None:
            groups = torch.tensor(config.code_groups, dtype=torch.long)
            self.code_group = nn.Embedding(int(groups.max()) + 1, dim, padding_idx=0)
            # not in the state dict: the configuration holds it
            self.register_buffer("group_of_code", groups, persistent=False)
        self.code_shared = None
        if config.code_neighbours > 0:
            # a parameter at zero, not a randomly drawn table: the term adds nothing until
            # trained, and the other weights' random start is the same with or without it
            self.code_shared = nn.Parameter(torch.zeros(config.vocab_size, dim))
            # in the state dict: they come from the pre-training rows, not the config
            slots = (config.vocab_size, config.code_neighbours)
            self.register_buffer("neighbour_ids", torch.zeros(slots, dtype=torch.long))
            self.register_buffer("neighbour_weights", torch.zeros(slots))
        self.age = nn.Embedding(config.n_age_bins, dim, padding_idx=0)
        self.visit = nn.Embedding(config.max_visits, dim)
        if config.position_embedding == "learned":
            self.position: nn.Module = nn.Embedding(config.max_position, dim)
        else:
            self.position = SinusoidalPositionEmbedding(config.max_position, dim)
        self.time = (
            nn.Embedding(config.n_time_bins, dim, padding_idx=0)
            if config.use_time_embedding
            else None
        )
        self.value = (
            nn.Embedding(config.n_value_bins + 1, dim, padding_idx=0)
            if config.n_value_bins > 0
            else None
        )
        self.continuous = ContinuousTimeEncoding(dim) if config.continuous_time else None
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)
        self._max_age = config.n_age_bins - 1
        self._max_visit = config.max_visits - 1
        self._max_position = config.max_position - 1
        self._max_time = config.n_time_bins - 1
        self._max_value = config.n_value_bins

    def set_code_neighbours(self, ids, weights) -> None:
        """Set each code's co-occurrence neighbours (``config.code_neighbours`` slots).

        Parameters
        ----------
        ids : array-like of int, shape (vocab_size, code_neighbours)
            Each code's neighbours' ids, 0 (padding) for an empty slot.
        weights : array-like of float, shape (vocab_size, code_neighbours)
            Their weights (0 beside padding), as
            :func:`survbehrt.data.cooccurrence.cooccurrence_neighbours` gives them.

        Raises
        ------
        ValueError
            If the model has no neighbour slots or the shapes differ from them.
        """
        if self.code_shared is None:
            raise ValueError("the configuration has no neighbour slots (code_neighbours=0)")
        ids, weights = torch.as_tensor(ids), torch.as_tensor(weights)
        if ids.shape != self.neighbour_ids.shape or weights.shape != ids.shape:
            raise ValueError(f"neighbours must have shape {tuple(self.neighbour_ids.shape)}, "
                             f"got ids {tuple(ids.shape)} and weights {tuple(weights.shape)}")
        self.neighbour_ids.copy_(ids)
        self.neighbour_weights.copy_(weights)

    def _shared(self, codes: Tensor) -> Tensor:
        """The co-occurrence part of each token's code embedding, ``(B, L, D)``."""
        # once per distinct code of the batch, not per token (a batch holds few codes)
        unique, inverse = torch.unique(codes, return_inverse=True)
        rows = F.embedding(self.neighbour_ids[unique], self.code_shared)  # (U, K, D)
        return torch.einsum("uk,ukd->ud", self.neighbour_weights[unique].to(rows.dtype),
                            rows)[inverse]

    def forward(
        self,
        codes: Tensor,
        age_bins: Tensor,
        visits: Tensor,
        positions: Tensor,
        time_bins: Tensor | None = None,
        value_bins: Tensor | None = None,
        index_age: Tensor | None = None,
        visit_times: Tensor | None = None,
    ) -> Tensor:
        """Embed a padded batch of token sequences.

        Parameters
        ----------
        codes, age_bins, visits, positions : torch.Tensor
            Long tensors of shape ``(B, L)`` (see docs/dev/interfaces.md).
        time_bins : torch.Tensor of shape (B, L), optional
            Required when the time embedding is used; ignored otherwise.
        value_bins : torch.Tensor of shape (B, L), optional
            Value bin of each token (0 = no value); ignored without a value table,
            and None means no values. Bins past the table are clipped to its last row.
        index_age : torch.Tensor of shape (B,), optional
        visit_times : torch.Tensor of shape (B, V), optional
            Needed by the continuous time encoding (``config.continuous_time``).

        Returns
        -------
        torch.Tensor
            Embeddings of shape ``(B, L, D)``.

        Raises
        ------
        ValueError
            If the time embedding is used and ``time_bins`` is None.
        """
        # Accumulate in place: embedding backward needs the indices only, not the
        # output, so this is autograd-safe and saves four (B, L, D) temporaries.
        x = self.code(codes)
        if self.code_group is not None:
            x += self.code_group(self.group_of_code[codes])
        if self.code_shared is not None:
            x += self._shared(codes)
        x += self.age(age_bins.clamp_max(self._max_age))
        x += self.visit(visits.clamp_max(self._max_visit))
        x += self.position(positions.clamp_max(self._max_position))
        if self.time is not None:
            if time_bins is None:
                raise ValueError("time_bins is required when use_time_embedding=True")
            x += self.time(time_bins.clamp_max(self._max_time))
        if self.value is not None and value_bins is not None:
            x += self.value(value_bins.clamp_max(self._max_value))
        if self.continuous is not None:
            if index_age is None or visit_times is None:
                raise ValueError("continuous_time needs index_age and visit_times in the batch")
            age, before = token_times(visits, visit_times, index_age)
            x = x + self.continuous(age, before, age_bins > 0)
        return self.dropout(self.norm(x))
