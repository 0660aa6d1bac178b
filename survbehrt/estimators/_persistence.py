"""One versioned, weights-only file format for both estimators (``save`` / ``load``).

A saved estimator is one file written by :func:`torch.save` and read back with
``torch.load(path, weights_only=True)``: a dictionary of plain values and tensors, so
loading never unpickles code (no class of this package or of skorch is stored, and a
file cannot run anything when it is read). It holds

- ``format`` (``"survbehrt"``) and ``format_version`` (:data:`FORMAT_VERSION`);
- ``metadata``: a JSON string with the estimator's class name, the survbehrt and
  torch versions that wrote it, its constructor parameters, its fitted attributes,
  each fitted component (the tokenizer, the time grid: their parameters and fitted
  attributes), the arguments that rebuild its torch module, and the training history;
- ``state_dict``: the module's weights (LoRA adapters included).

Everything is read generically: parameters come from ``get_params``, the fitted state is
every other instance attribute (``name_`` attributes and private lookup tables), so an
attribute added to an estimator, the tokenizer or the time grid is saved without touching
this module. Values are encoded by
:func:`encode` (JSON types, tuples, dicts, numpy arrays with their dtype) and anything
else is refused with a ``TypeError`` naming it, rather than pickled.

Three parameters are not values and are not saved: ``pretrained`` (a fitted pretrainer;
its encoder weights are already in the module's state dict), ``callbacks`` (code) and
``accelerator`` (a runtime). A loaded estimator has them as None; it predicts exactly
as the saved one, and a refit starts from scratch unless they are set again. Under an
accelerator with several processes only the main process writes the file.

Reading keeps one contract: every way a file can fail to give back the estimator is a
``ValueError`` that names the file and what is wrong (not a file of this format, another
format version, another estimator class, parameters or module settings this version does
not have, missing, extra or mis-shaped weights, an attribute that is not a fitted one).
Only fitted attributes are restored: names that end with ``_`` or are private (one
leading ``_``) and name nothing the class defines, so a file cannot shadow ``predict``.
A file written by another survbehrt version of the same format is read, with a
``UserWarning``: the format is the same, but the model code that gives its predictions
may have changed in between.
"""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._version import __version__

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "NOT_SAVED",
    "SavedEstimator",
    "decode",
    "encode",
    "read_estimator",
    "write_estimator",
]

FORMAT = "survbehrt"
#: Version 1 was the first pretrainer file (a different layout); 2 serves both estimators.
FORMAT_VERSION = 2
#: Constructor parameters that are objects or code, and why they are not saved.
NOT_SAVED = {
    "pretrained": "a fitted BEHRTPretrainer (or a path): its encoder weights are in the "
                  "saved module; the pretrainer itself is not saved",
    "callbacks": "skorch callbacks are code; they are not saved",
    "accelerator": "an accelerate.Accelerator is this process's runtime, not a value; "
                   "the loaded estimator runs on its device",
}
_TAGS = ("__tuple__", "__ndarray__", "__items__")


# ------------------------------------------------------------------ values


def encode(value, where: str = "value"):
    """A JSON-serialisable form of ``value`` that :func:`decode` turns back into it.

    Parameters
    ----------
    value : None, bool, int, float, str, list, tuple, dict, numpy scalar or ndarray
        Nested containers are encoded recursively. numpy arrays keep their dtype and
        shape (object arrays must hold encodable values, e.g. strings).
    where : str, default="value"
        Named in the error for a value that cannot be encoded.

    Returns
    -------
    object
        Made of JSON types only.

    Raises
    ------
    TypeError
        For any other type (it would need pickling).

    Examples
    --------
    >>> import numpy as np
    >>> decode(encode({"cuts": np.array([0.0, 1.5]), "k": (1, 2)}))
    {'cuts': array([0. , 1.5]), 'k': (1, 2)}
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufUO":
            raise TypeError(f"cannot save {where}: arrays of dtype {value.dtype} are not supported")
        items = [encode(v, f"{where}[{i}]") for i, v in enumerate(value.ravel().tolist())]
        return {"__ndarray__": items, "dtype": value.dtype.str if value.dtype.kind != "O" else "O",
                "shape": list(value.shape)}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and k not in _TAGS for k in value):
            return {k: encode(v, f"{where}[{k!r}]") for k, v in value.items()}
        return {"__items__": [[encode(k, where), encode(v, f"{where}[{k!r}]")]
                              for k, v in value.items()]}
    raise TypeError(
        f"cannot save {where}: a {type(value).__module__}.{type(value).__name__} is not a plain "
        f"value (None, bool, number, str, list, tuple, dict or numpy array)"
    )


def decode(obj):
    """Invert :func:`encode`.

    Parameters
    ----------
    obj : object
        Output of :func:`encode` (after a JSON round trip).

    Returns
    -------
    object
    """
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__ndarray__" in obj:
        dtype = np.dtype(object) if obj["dtype"] == "O" else np.dtype(obj["dtype"])
        items = [decode(v) for v in obj["__ndarray__"]]
        array = np.empty(len(items), dtype=dtype)
        array[:] = items
        return array.reshape(obj["shape"])
    if "__tuple__" in obj:
        return tuple(decode(v) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {decode(k): decode(v) for k, v in obj["__items__"]}
    return {k: decode(v) for k, v in obj.items()}


def _fitted_attributes(obj) -> dict:
    """Everything an estimator holds besides its constructor parameters.

    The fitted attributes (``name_``) and any private state derived in ``fit`` (e.g. the
    tokenizer's lookup tables), so that the restored object works as the saved one.
    """
    params = obj.get_params(deep=False)
    return {k: v for k, v in vars(obj).items() if k not in params}


def _component_state(obj, where: str) -> dict:
    """Parameters and fitted attributes of a fitted component (tokenizer, time grid)."""
    return {
        "class": type(obj).__name__,
        "params": encode(obj.get_params(deep=False), f"{where}.get_params()"),
        "fitted": {k: encode(v, f"{where}.{k}") for k, v in _fitted_attributes(obj).items()},
    }


def _known_params(params: dict, cls, where: str) -> dict:
    unknown = sorted(set(params) - set(cls._get_param_names()))
    if unknown:
        raise ValueError(f"{where} sets parameters {unknown} that {cls.__name__} does not have "
                         f"in this survbehrt: the file was written with another configuration.")
    return params


def _restore_attributes(obj, attributes: dict, where: str) -> None:
    """``setattr`` of fitted attributes only: ``name_`` or ``_private``, nothing the class has."""
    cls = type(obj)
    for name in attributes:
        fitted = (isinstance(name, str) and name.isidentifier() and not name.startswith("__")
                  and (name.endswith("_") or name.startswith("_")))
        if not fitted or hasattr(cls, name) or name in cls._get_param_names():
            raise ValueError(
                f"{where} sets the attribute {name!r}, which is not a fitted attribute of "
                f"{cls.__name__} (those end with '_' or are private, and name nothing the class "
                f"defines, e.g. a method): refusing to restore it."
            )
    for name, value in attributes.items():
        setattr(obj, name, value)


def _restore_component(state: dict, cls, where: str):
    if state["class"] != cls.__name__:
        raise ValueError(f"{where}: the file holds a {state['class']}, expected {cls.__name__}")
    obj = cls(**_known_params(decode(state["params"]), cls, where))
    _restore_attributes(obj, {k: decode(v) for k, v in state["fitted"].items()}, where)
    return obj


# ------------------------------------------------------------------ files


@dataclass
class SavedEstimator:
    """What :func:`read_estimator` found in a file.

    Attributes
    ----------
    params : dict
        Constructor parameters (those in :data:`NOT_SAVED` are None).
    attributes : dict
        Fitted attributes of the estimator other than its components.
    components : dict
        Raw state of each component, by attribute name (see :meth:`component`).
    module : dict
        The arguments the estimator saved to rebuild its torch module.
    state_dict : dict of str to torch.Tensor
    history : list of dict
        The skorch history, one dict per epoch.
    metadata : dict
        Everything else: the writing versions, the parameters not saved and why.
    path : str
        The file read (named in errors).
    """

    params: dict
    attributes: dict
    components: dict
    module: dict
    state_dict: dict
    history: list
    metadata: dict
    path: str = "the file"

    @contextmanager
    def rebuilding(self, what: str):
        """Turn an error of rebuilding ``what`` from the file's settings into a ``ValueError``.

        Parameters
        ----------
        what : str
            Named in the error, e.g. ``"the torch module"``.
        """
        try:
            yield
        except (TypeError, KeyError, ValueError) as exc:
            written = self.metadata.get("survbehrt_version", "an unknown version")
            raise ValueError(
                f"{self.path}: cannot rebuild {what} from the file's settings "
                f"({type(exc).__name__}: {exc}); it was written by survbehrt {written} with "
                f"another configuration than this version builds."
            ) from exc

    def load_weights(self, module) -> None:
        """Load the saved weights into ``module``, naming missing, extra or mis-shaped ones.

        Parameters
        ----------
        module : torch.nn.Module
            Rebuilt from :attr:`module`.

        Raises
        ------
        ValueError
            When the file's weights do not fit ``module`` exactly.
        """
        expected = module.state_dict()
        problems = []
        for label, names in (("missing", [k for k in expected if k not in self.state_dict]),
                             ("extra", [k for k in self.state_dict if k not in expected])):
            if names:
                problems.append(f"{len(names)} {label} (e.g. {names[:3]})")
        shapes = [f"{k}: file {tuple(v.shape)}, model {tuple(expected[k].shape)}"
                  for k, v in self.state_dict.items()
                  if k in expected and (not isinstance(v, torch.Tensor) or v.shape != expected[k].shape)]
        if shapes:
            problems.append(f"{len(shapes)} of another shape ({'; '.join(shapes[:3])})")
        if problems:
            raise ValueError(f"{self.path}: the saved weights do not fit the model its settings "
                             f"build: {', '.join(problems)}.")
        module.load_state_dict(self.state_dict)

    def restore_attributes(self, estimator) -> None:
        """Set the saved fitted attributes on ``estimator`` (fitted attributes only).

        Parameters
        ----------
        estimator : BEHRTSurvivalEstimator or BEHRTPretrainer

        Raises
        ------
        ValueError
            For a name that is not a fitted attribute (e.g. ``predict``).
        """
        _restore_attributes(estimator, self.attributes, str(self.path))

    def component(self, name: str, cls):
        """Rebuild a fitted component (e.g. ``component("tokenizer_", EHRTokenizer)``).

        Parameters
        ----------
        name : str
            The estimator's attribute that held it.
        cls : type
            Its class (the file names a class; only the expected one is accepted).

        Returns
        -------
        object
            ``cls(**params)`` with its fitted attributes set.
        """
        if name not in self.components:
            raise ValueError(f"{self.path}: the file holds no {name} (a fitted {cls.__name__}).")
        with self.rebuilding(name):
            return _restore_component(self.components[name], cls, f"{self.path}: {name}")


def write_estimator(estimator, path, module, module_args: dict, skip=()) -> None:
    """Save a fitted estimator in the shared format.

    Under an ``accelerator`` with several processes, only the main process writes.

    Parameters
    ----------
    estimator : BEHRTSurvivalEstimator or BEHRTPretrainer
        Fitted. Fitted attributes that are scikit-learn estimators (``get_params``) are
        saved as components; the others must be plain values (:func:`encode`).
    path : str or path-like
    module : torch.nn.Module
        Its weights are saved (``state_dict``, moved to the CPU).
    module_args : dict
        Plain values the estimator's ``load`` needs to rebuild ``module`` before loading
        the weights into it.
    skip : iterable of str
        Fitted attributes not to save (the net, the module, the history, aliases).
    """
    accelerator = getattr(estimator, "accelerator", None)
    if accelerator is not None and not accelerator.is_main_process:
        return  # every process holds the same model: the main one writes it
    name = type(estimator).__name__
    params = estimator.get_params(deep=False)
    not_saved = {}
    for key in NOT_SAVED:
        if params.get(key) is not None:
            not_saved[key] = NOT_SAVED[key]
        if key in params:
            params[key] = None
    if params.get("random_state") is not None and not isinstance(params["random_state"], int):
        not_saved["random_state"] = "a RandomState object is not a plain value; saved as None"
        params["random_state"] = None
    attributes, components = {}, {}
    for key, value in _fitted_attributes(estimator).items():
        if key in skip:
            continue
        if hasattr(value, "get_params"):
            components[key] = _component_state(value, f"{name}.{key}")
        else:
            attributes[key] = encode(value, f"{name}.{key}")
    history = getattr(estimator, "history_", None)
    metadata = {
        "class": name,
        "survbehrt_version": __version__,
        "torch_version": torch.__version__,
        "params": encode(params, f"{name}.get_params()"),
        "not_saved": not_saved,
        "attributes": attributes,
        "components": components,
        "module": encode(module_args, f"{name} module arguments"),
        # the history is a log: numpy / tensor scalars in it become floats
        "history": [] if history is None else json.loads(json.dumps(history.to_list(), default=float)),
    }
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "metadata": json.dumps(metadata),
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
    }
    torch.save(payload, Path(path))


def read_estimator(path, cls) -> SavedEstimator:
    """Read a file written by :func:`write_estimator` for an estimator of class ``cls``.

    Parameters
    ----------
    path : str or path-like
    cls : type
        The estimator class whose ``load`` is reading.

    Returns
    -------
    SavedEstimator

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a file.
    ValueError
        If the file is not a survbehrt model file, holds another estimator class, is
        of another format version, or sets parameters ``cls`` does not have.

    Warns
    -----
    UserWarning
        If another survbehrt version wrote the file (same format version).
    """
    from .. import __version__

    path = Path(path)
    name = cls.__name__
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected one written by {name}.save()).")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, or one that holds pickled code
        raise ValueError(
            f"{path} is not a file written by {name}.save(): torch.load(weights_only=True) "
            f"failed ({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc
    if not isinstance(payload, dict) or not str(payload.get("format", "")).startswith(FORMAT):
        raise ValueError(f"{path} is not a file written by {name}.save().")
    version = payload.get("format_version", payload.get("version"))
    if version != FORMAT_VERSION:
        if isinstance(version, int) and version > FORMAT_VERSION:
            advice = "it was written by a newer survbehrt: upgrade survbehrt to read it"
        else:
            advice = ("it was written by an older survbehrt whose format this version no longer "
                      "reads: refit the model (or load it with that version) and save it again")
        raise ValueError(
            f"{path} has format version {version}; this survbehrt reads version "
            f"{FORMAT_VERSION} only ({advice})."
        )
    try:
        metadata = json.loads(payload["metadata"])
        fields = ("class", "params", "attributes", "components", "module", "history")
        absent = [k for k in fields if k not in metadata]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: its metadata is not the JSON object {name}.save() "
                         f"writes ({type(exc).__name__}: {exc}).") from exc
    if absent:
        raise ValueError(f"{path}: its metadata lacks {absent}; it was not written by {name}.save().")
    if metadata["class"] != name:
        raise ValueError(
            f"{path} holds a {metadata['class']}, not a {name}: use {metadata['class']}.load()."
        )
    weights = payload.get("state_dict")
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise ValueError(f"{path}: its state_dict is not a dict of tensors.")
    written = metadata.get("survbehrt_version")
    if written != __version__:
        warnings.warn(
            f"{path} was written by survbehrt {written}; this is survbehrt {__version__}. The "
            f"file format is the same (version {FORMAT_VERSION}) and it is read, but the model "
            f"code may have changed in between: check its predictions, or refit and save again.",
            UserWarning,
            stacklevel=3,
        )
    params = _known_params(decode(metadata.pop("params")), cls, str(path))
    return SavedEstimator(
        params=params,
        attributes={k: decode(v) for k, v in metadata.pop("attributes").items()},
        components=metadata.pop("components"),
        module=decode(metadata.pop("module")),
        state_dict=weights,
        history=metadata.pop("history"),
        metadata=metadata,
        path=str(path),
    )
