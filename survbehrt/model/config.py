"""Configuration of the BEHRT model and the vocabulary ids the model relies on."""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "CLS_ID",
    "MASK_ID",
    "N_SPECIAL",
    "PAD_ID",
    "PRESETS",
    "SEP_ID",
    "UNK_ID",
    "BEHRTConfig",
    "as_config",
]

# Special token ids, as fixed by the tokenizer contract (docs/dev/interfaces.md).
# They are repeated here so that the model does not import the data room; a test
# checks that both agree once the tokenizer exists.
PAD_ID = 0
CLS_ID = 1
SEP_ID = 2
MASK_ID = 3
UNK_ID = 4
N_SPECIAL = 5

#: Architecture presets for :meth:`BEHRTConfig.preset`.
PRESETS: dict[str, dict[str, int]] = {
    "small": {"embedding_dim": 64, "num_layers": 2, "num_heads": 4, "ff_dim": 256},
    "medium": {"embedding_dim": 128, "num_layers": 4, "num_heads": 4, "ff_dim": 512},
    "large": {"embedding_dim": 256, "num_layers": 6, "num_heads": 8, "ff_dim": 1024},
}

_POSITION_EMBEDDINGS = ("learned", "sinusoidal")


@dataclass
class BEHRTConfig:
    """Hyper-parameters of the BEHRT encoder.

    The embedding tables are sized by the ``n_*`` / ``max_*`` fields; ids past the
    end of the age, time, visit and position tables are clipped to the last row
    (which then means "this far or farther").

    Parameters
    ----------
    vocab_size : int
        Number of token ids, special tokens included (ids ``0 .. vocab_size - 1``);
        must exceed ``N_SPECIAL``.
    n_age_bins : int, default=128
        Size of the age-bin table, padding id 0 included.
    n_time_bins : int, default=32
        Size of the time-before-prediction bin table, padding id 0 included.
    n_value_bins : int, default=0
        Number of value bins of numeric values (``TokenizedEHR.value_bins``); the
        value-bin table has ``n_value_bins + 1`` rows, row 0 ("no value") zero. 0: no
        table, values are ignored (and configurations saved before it existed load as such).
    max_visits : int, default=512
        Size of the visit-index table.
    max_position : int, default=512
        Size of the position table (learned or sinusoidal).
    embedding_dim : int, default=128
        Width of the hidden states; divisible by ``num_heads``.
    num_layers : int, default=4
        Number of transformer encoder layers.
    num_heads : int, default=4
        Number of attention heads.
    ff_dim : int, default=512
        Inner width of the feed-forward block.
    dropout : float, default=0.1
        Dropout on the embeddings and after attention / feed-forward blocks.
    attention_dropout : float, default=0.0
        Dropout on the attention weights. Off by default: any value > 0 makes
        ``scaled_dot_product_attention`` fall back to its unfused math kernel on
        CPU during training (measured ~25% slower steps on the medium preset).
    norm_first : bool, default=True
        Pre-norm layers (LayerNorm before each block, plus a final LayerNorm) if
        True, post-norm (original BERT) if False.
    position_embedding : {"learned", "sinusoidal"}, default="learned"
        How positions are embedded.
    use_time_embedding : bool, default=True
        Add an embedding of ``time_bins`` (time from the visit to the prediction
        time) so that recency is visible to the model.
    continuous_time : bool, default=False
        Also add a projection of a sinusoidal encoding of each token's exact age and
        log time-before-prediction (:class:`~survbehrt.model.time_encoding.ContinuousTimeEncoding`);
        needs ``index_age`` and ``visit_times`` in the batch.
    tie_mlm_weights : bool, default=True
        Tie the MLM decoder weight to the code embedding table.
    layer_norm_eps : float, default=1e-5
        Epsilon of every LayerNorm.
    initializer_range : float, default=0.02
        Standard deviation of the normal initialisation of linear and embedding
        weights (BERT's choice).
    code_groups : tuple of int, optional
        Group of every token id (``vocab_size`` entries; 0 = none, the special tokens'
        group; groups numbered from 1): each code's input embedding is its own plus its
        group's, a table of ``max(code_groups) + 1`` rows whose row 0 is zero. Codes of
        one group (the rare synonyms of a concept, e.g. ICD-10 ``"I21.x"``) then share
        what the model learns of any of them. None: no group table (and configurations
        saved before it existed load as such). Built by the estimators from their
        ``code_prefix`` (:func:`survbehrt.data.code_groups.code_groups`).
    code_neighbours : int, default=0
        Slots per code for its co-occurrence neighbours: each code's input embedding
        adds the weighted sum of a second table's rows for its neighbours (buffers
        ``neighbour_ids`` and ``neighbour_weights`` of the embeddings, in the state
        dict; zero, so no neighbours, until set). 0: no second table. Set by
        :class:`~survbehrt.BEHRTPretrainer`'s ``code_neighbours``.

    Examples
    --------
    >>> cfg = BEHRTConfig.preset("small", vocab_size=100, dropout=0.0)
    >>> cfg.embedding_dim, cfg.num_layers, cfg.dropout
    (64, 2, 0.0)
    """

    vocab_size: int
    n_age_bins: int = 128
    n_time_bins: int = 32
    n_value_bins: int = 0
    max_visits: int = 512
    max_position: int = 512
    embedding_dim: int = 128
    num_layers: int = 4
    num_heads: int = 4
    ff_dim: int = 512
    dropout: float = 0.1
    attention_dropout: float = 0.0
    norm_first: bool = True
    position_embedding: str = "learned"
    use_time_embedding: bool = True
    continuous_time: bool = False
    tie_mlm_weights: bool = True
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    code_groups: tuple[int, ...] | None = dataclasses.field(default=None, repr=False)
    code_neighbours: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field; raise ``ValueError`` naming the first bad one.

        Raises
        ------
        ValueError
            If a field has the wrong type or an impossible value.
        """
        # numpy integers / floats (from parameter grids) are accepted and coerced,
        # so that the config stays plain-Python and pickles / prints cleanly.
        self.vocab_size = _check_int("vocab_size", self.vocab_size, minimum=N_SPECIAL + 1)
        for name in (
            "n_age_bins",
            "n_time_bins",
            "max_visits",
            "max_position",
            "embedding_dim",
            "num_layers",
            "num_heads",
            "ff_dim",
        ):
            setattr(self, name, _check_int(name, getattr(self, name), minimum=1))
        self.n_value_bins = _check_int("n_value_bins", self.n_value_bins, minimum=0)
        self.code_neighbours = _check_int("code_neighbours", self.code_neighbours, minimum=0)
        if self.embedding_dim % self.num_heads != 0:
            raise ValueError(
                f"embedding_dim ({self.embedding_dim}) must be divisible by "
                f"num_heads ({self.num_heads})"
            )
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"{name} must be a float in [0, 1), got {value!r}")
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
            setattr(self, name, float(value))
        for name in ("norm_first", "use_time_embedding", "tie_mlm_weights"):
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name} must be a bool, got {value!r}")
            setattr(self, name, bool(value))
        if self.position_embedding not in _POSITION_EMBEDDINGS:
            raise ValueError(
                f"position_embedding must be one of {_POSITION_EMBEDDINGS}, "
                f"got {self.position_embedding!r}"
            )
        for name in ("layer_norm_eps", "initializer_range"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
                raise ValueError(f"{name} must be a positive float, got {value!r}")
            setattr(self, name, float(value))
        if self.code_groups is not None:
            self.code_groups = _check_code_groups(self.code_groups, self.vocab_size)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> BEHRTConfig:
        """Build a configuration from a named architecture preset.

        Parameters
        ----------
        name : {"small", "medium", "large"}
            small: 64-d, 2 layers, 4 heads, ff 256; medium: 128-d, 4 layers,
            4 heads, ff 512; large: 256-d, 6 layers, 8 heads, ff 1024.
        **overrides
            Any other field (``vocab_size`` is required) or a preset field to
            override.

        Returns
        -------
        BEHRTConfig
            The validated configuration.

        Raises
        ------
        ValueError
            If ``name`` is not a preset or a field is invalid.
        """
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; valid presets: {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a plain dict.

        Returns
        -------
        dict
            ``{field: value}``; ``BEHRTConfig(**d)`` rebuilds the configuration.
        """
        return dataclasses.asdict(self)


def as_config(config: BEHRTConfig | Mapping[str, Any]) -> BEHRTConfig:
    """Accept a :class:`BEHRTConfig` or a mapping of its fields.

    Parameters
    ----------
    config : BEHRTConfig or mapping
        The configuration, or keyword arguments for it (handy for skorch's
        ``module__config=dict(...)``).

    Returns
    -------
    BEHRTConfig
        A validated configuration.

    Raises
    ------
    TypeError
        If ``config`` is neither.
    """
    if isinstance(config, BEHRTConfig):
        config.validate()  # fields may have been changed after construction
        return config
    if isinstance(config, Mapping):
        return BEHRTConfig(**config)
    raise TypeError(f"config must be a BEHRTConfig or a mapping, got {type(config).__name__}")


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_code_groups(groups: Any, vocab_size: int) -> tuple[int, ...]:
    """``groups`` as a tuple of ``vocab_size`` non-negative ints, 0 for the special tokens."""
    array = np.asarray(groups)
    if array.shape != (vocab_size,) or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"code_groups must hold one int per token id ({vocab_size}), "
                         f"got {array.dtype} of shape {array.shape}")
    if (array < 0).any() or array[:N_SPECIAL].any():
        raise ValueError("code_groups must be >= 0, and 0 for the special tokens "
                         f"(ids < {N_SPECIAL})")
    return tuple(int(g) for g in array)
