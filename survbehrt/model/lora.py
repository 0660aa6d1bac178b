"""Low-rank adapters (LoRA) for the encoder's linear layers, and the fine-tuning strategies."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ATTENTION_TARGETS",
    "FEEDFORWARD_TARGETS",
    "STRATEGIES",
    "LoRALinear",
    "apply_lora",
    "configure_trainable",
    "lora_parameters",
    "merge_lora",
]

#: Default LoRA targets: the attention projections.
ATTENTION_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
#: Feed-forward linears, added by ``apply_lora(include_feedforward=True)``.
FEEDFORWARD_TARGETS = ("ff_in", "ff_out")
#: Valid values of ``configure_trainable(strategy=...)``.
STRATEGIES = ("frozen", "lora", "full")


class LoRALinear(nn.Module):
    """A frozen-able ``nn.Linear`` plus a low-rank update: ``base(x) + (alpha / r) * B A x``.

    ``A`` (``rank x in``) is Kaiming-uniform initialised and ``B`` (``out x rank``)
    zero-initialised, so a freshly wrapped layer computes exactly the base layer.

    Parameters
    ----------
    base : torch.nn.Linear
        The layer to adapt (kept as the ``base`` sub-module, weights unchanged).
    rank : int, default=8
        Rank ``r`` of the update.
    alpha : float, default=16
        Scaling numerator; the update is scaled by ``alpha / rank``.
    dropout : float, default=0.0
        Dropout on the adapter's input (training only).

    Attributes
    ----------
    base : torch.nn.Linear
    lora_A : torch.nn.Parameter of shape (rank, in_features)
    lora_B : torch.nn.Parameter of shape (out_features, rank)
    scaling : float
    """

    def __init__(
        self, base: nn.Linear, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or rank < 1:
            raise ValueError(f"rank must be a positive int, got {rank!r}")
        rank = int(rank)
        if not alpha > 0:
            raise ValueError(f"alpha must be positive, got {alpha!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.base = base
        self.rank = rank
        self.alpha = float(alpha)
        self.scaling = float(alpha) / rank
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, **factory))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear's own init
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def in_features(self) -> int:
        """Input width of the base layer."""
        return self.base.in_features

    @property
    def out_features(self) -> int:
        """Output width of the base layer."""
        return self.base.out_features

    def delta_weight(self) -> Tensor:
        """The low-rank update ``(alpha / rank) * B @ A``.

        Returns
        -------
        torch.Tensor
            Shape ``(out_features, in_features)``.
        """
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x: Tensor) -> Tensor:
        """Base output plus the adapter's.

        Parameters
        ----------
        x : torch.Tensor of shape (..., in_features)
            Input.

        Returns
        -------
        torch.Tensor
            Shape ``(..., out_features)``.
        """
        # Scale the small (out x rank) matrix rather than the (..., out) activation.
        update = F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B * self.scaling)
        return self.base(x) + update

    def merged(self) -> nn.Linear:
        """Fold the adapter into the base layer and return it.

        The base ``nn.Linear`` is updated in place (``W += (alpha / r) B A``) and
        returned, so its parameter objects (and their ``requires_grad``) survive.

        Returns
        -------
        torch.nn.Linear
            The base layer with the update folded in.
        """
        with torch.no_grad():
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
        return self.base

    def extra_repr(self) -> str:
        """Summary shown by ``repr``.

        Returns
        -------
        str
        """
        return f"rank={self.rank}, alpha={self.alpha:g}"


def _replace(module: nn.Module, predicate, factory) -> int:
    """Replace every direct or nested child for which ``predicate(name, child)``."""
    replaced = 0
    # Collect first: the module tree must not change while it is being walked.
    matches = [
        (parent, name, child)
        for parent in module.modules()
        for name, child in parent.named_children()
        if predicate(name, child)
    ]
    for parent, name, child in matches:
        setattr(parent, name, factory(child))
        replaced += 1
    return replaced


def apply_lora(
    module: nn.Module,
    rank: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    targets: Iterable[str] = ATTENTION_TARGETS,
    include_feedforward: bool = False,
) -> nn.Module:
    """Wrap the matching ``nn.Linear`` sub-modules in :class:`LoRALinear`, in place.

    A layer matches when its attribute name is in ``targets`` (plus
    ``("ff_in", "ff_out")`` if ``include_feedforward``). Layers already wrapped
    are left alone, so applying twice does not stack adapters. ``requires_grad``
    is not changed here; use :func:`configure_trainable`.

    Parameters
    ----------
    module : torch.nn.Module
        Model to adapt (e.g. a ``BEHRTSurvivalModule``).
    rank : int, default=8
        Adapter rank.
    alpha : float, default=16
        Adapter scaling numerator (update scaled by ``alpha / rank``).
    dropout : float, default=0.0
        Dropout on the adapters' input.
    targets : iterable of str, default=("q_proj", "k_proj", "v_proj", "out_proj")
        Attribute names of the linears to adapt.
    include_feedforward : bool, default=False
        Also adapt the feed-forward linears ``ff_in`` and ``ff_out``.

    Returns
    -------
    torch.nn.Module
        ``module`` itself.

    Raises
    ------
    ValueError
        If no layer matches.
    """
    names = set(targets)
    if include_feedforward:
        names |= set(FEEDFORWARD_TARGETS)
    n = _replace(
        module,
        lambda name, child: name in names and type(child) is nn.Linear,
        lambda child: LoRALinear(child, rank=rank, alpha=alpha, dropout=dropout),
    )
    already = any(isinstance(m, LoRALinear) for m in module.modules())
    if n == 0 and not already:
        raise ValueError(f"apply_lora found no nn.Linear named any of {sorted(names)}")
    return module


def merge_lora(module: nn.Module) -> nn.Module:
    """Fold every adapter into its base layer and remove the wrappers, in place.

    Afterwards the module contains plain ``nn.Linear`` layers again (same
    parameter names as before :func:`apply_lora`), computing the adapted function.

    Parameters
    ----------
    module : torch.nn.Module
        Model containing :class:`LoRALinear` layers (or one itself).

    Returns
    -------
    torch.nn.Module
        ``module`` (or the merged ``nn.Linear`` if ``module`` was a ``LoRALinear``).
    """
    if isinstance(module, LoRALinear):
        return module.merged()
    _replace(module, lambda name, child: isinstance(child, LoRALinear), LoRALinear.merged)
    return module


def lora_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The adapter parameters (``lora_A``, ``lora_B``) of every :class:`LoRALinear`.

    Parameters
    ----------
    module : torch.nn.Module
        Model.

    Returns
    -------
    list of torch.nn.Parameter
        Empty if no adapter was applied.
    """
    params = []
    for m in module.modules():
        if isinstance(m, LoRALinear):
            params.extend((m.lora_A, m.lora_B))
    return params


def configure_trainable(
    module: nn.Module, strategy: str, train_embeddings: bool = False
) -> dict[str, int]:
    """Set ``requires_grad`` for a fine-tuning strategy.

    ``module`` must have an ``encoder`` attribute; everything outside it is "the
    head(s)". Parameters shared between the encoder and a head (a tied MLM
    decoder) follow the encoder's rule.

    - ``"frozen"``: only parameters outside ``module.encoder`` train.
    - ``"lora"``: only the LoRA ``A`` / ``B`` matrices and the head(s) train;
      every base weight is frozen. Requires :func:`apply_lora` first.
    - ``"full"``: every parameter trains.

    Parameters
    ----------
    module : torch.nn.Module
        Model with an ``encoder`` attribute (``BEHRTSurvivalModule``,
        ``BEHRTPretrainingModule``).
    strategy : {"frozen", "lora", "full"}
        Fine-tuning strategy.
    train_embeddings : bool, default=False
        With ``"frozen"`` or ``"lora"``, also train ``module.encoder.embeddings``.

    Returns
    -------
    dict
        ``{"trainable": int, "total": int}`` parameter counts (shared parameters
        counted once).

    Raises
    ------
    ValueError
        If ``strategy`` is invalid, ``module`` has no ``encoder``, or ``"lora"``
        is asked for and no adapter was applied.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}")
    encoder = getattr(module, "encoder", None)
    if strategy != "full" and not isinstance(encoder, nn.Module):
        raise ValueError(
            f"strategy={strategy!r} needs a module with an `encoder` sub-module; "
            f"{type(module).__name__} has none"
        )
    if strategy == "full":
        for p in module.parameters():
            p.requires_grad_(True)
    else:
        adapters = {id(p) for p in lora_parameters(module)}
        if strategy == "lora" and not adapters:
            raise ValueError("strategy='lora' but no LoRA adapter was applied; call apply_lora")
        encoder_params = {id(p) for p in encoder.parameters()}
        embedding_params = set()
        if train_embeddings and hasattr(encoder, "embeddings"):
            embedding_params = {id(p) for p in encoder.embeddings.parameters()}
        for p in module.parameters():
            trainable = (
                id(p) not in encoder_params
                or id(p) in embedding_params
                or (strategy == "lora" and id(p) in adapters)
            )
            p.requires_grad_(trainable)
    params = list(module.parameters())  # de-duplicated (tied weights once)
    return {
        "trainable": sum(p.numel() for p in params if p.requires_grad),
        "total": sum(p.numel() for p in params),
    }
