"""Read EDM / EDM2 network snapshots (`pickle.dump` of `torch_utils.persistence` objects) without running them.

EDM's persistence wraps each network class so that its pickle record is
`_reconstruct_persistent_obj(meta)` with `meta = {type, version, module_src, class_name, state}`: the module's
*source code*, which `pickle.load` would `exec`, and the object's `__dict__` (`_parameters`, `_buffers`,
`_modules`, `_init_args`, `_init_kwargs`, …). Tensors are `torch._utils._rebuild_tensor_v2(storage, …)` /
`_rebuild_parameter(…)`, each storage a small legacy `torch.save` blob passed to `torch.storage._load_from_bytes`.

`load_snapshot(path)` unpickles with an allowlist: every global the stream names is looked up in `_ALLOWED`
and mapped to an inert stand-in written here (a record of the persistence meta, a plain container for
`torch.nn.ModuleDict`, a dict for `dnnlib.EasyDict`) or to a data-only constructor (tensors via
`torch.load(weights_only=True)` of each storage blob, `collections.OrderedDict`, numeric numpy scalars and
arrays). The module source is kept as text and never compiled. Any other global (`os.system`, `builtins.eval`,
`posix.system`, `subprocess.Popen`, …) stops the load before it is called, with one line naming it.
`module_state_dict(record)` flattens a record tree into a plain `{name: tensor}` state dict.
"""

from __future__ import annotations

import collections
import io
import pickle
import pickletools
import warnings
from pathlib import Path

import torch

from ..checkpoint import CheckpointError

__all__ = [
    "UnsafePickleError",
    "PersistentObject",
    "ModuleContainer",
    "AttrDict",
    "load_snapshot",
    "loads_snapshot",
    "module_state_dict",
    "ALLOWED_GLOBALS",
]


class UnsafePickleError(CheckpointError):
    """The pickle names a global outside the allowlist; nothing it names was called."""


class PersistentObject:
    """What `torch_utils.persistence._reconstruct_persistent_obj(meta)` would rebuild, kept as data."""

    def __init__(self, meta: dict):
        if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
            raise UnsafePickleError("persistence record without a class name (not an EDM snapshot)")
        state = meta.get("state")
        self.class_name: str = meta["class_name"]
        self.version = meta.get("version")
        self.module_src: str = meta.get("module_src") if isinstance(meta.get("module_src"), str) else ""
        self.state: dict = dict(state) if isinstance(state, dict) else {}

    @property
    def init_args(self) -> tuple:
        a = self.state.get("_init_args")
        return tuple(a) if isinstance(a, (tuple, list)) else ()

    @property
    def init_kwargs(self) -> dict:
        k = self.state.get("_init_kwargs")
        return dict(k) if isinstance(k, dict) else {}

    def __setstate__(self, state):  # BUILD on a record (never emitted by persistence): keep as data
        if isinstance(state, dict):
            self.state.update(state)

    def __repr__(self) -> str:
        return f"PersistentObject({self.class_name})"


class ModuleContainer:
    """Stand-in for a plain `torch.nn` container (ModuleDict / ModuleList / Sequential): its `__dict__` as data."""

    class_name = "container"

    def __setstate__(self, state):
        self.state = dict(state) if isinstance(state, dict) else {}


class AttrDict(dict):
    """Stand-in for `dnnlib.EasyDict` (a dict with attribute access)."""

    def __setstate__(self, state):
        pass


def _container_class(kind: str) -> type:
    """A subclass per container name: NEWOBJ needs a real class, whose bare `object.__new__` runs no code."""
    return type(kind, (ModuleContainer,), {"class_name": kind, "__module__": __name__})


def _reconstruct_persistent_obj(meta):
    return PersistentObject(meta)


def _load_storage(b):
    """One storage saved by `torch.save(storage, _use_new_zipfile_serialization=False)`; read weights-only."""
    if not isinstance(b, (bytes, bytearray)):
        raise UnsafePickleError("storage record is not a byte string")
    obj = torch.load(io.BytesIO(bytes(b)), map_location="cpu", weights_only=True)
    if not isinstance(obj, (torch.UntypedStorage, torch.storage.TypedStorage)):
        raise UnsafePickleError(f"storage record holds a {type(obj).__name__}, not a storage")
    return obj


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    if not isinstance(storage, (torch.UntypedStorage, torch.storage.TypedStorage)):
        raise UnsafePickleError("tensor record without a storage")
    if backward_hooks:
        raise UnsafePickleError("tensor record carries backward hooks")
    for v in (storage_offset, *size, *stride):
        if not isinstance(v, int) or v < 0:
            raise UnsafePickleError("tensor record with a bad size, stride or offset")
    if isinstance(storage, torch.storage.TypedStorage):
        with warnings.catch_warnings():  # TypedStorage's deprecation notice
            warnings.simplefilter("ignore")
            dtype, untyped = storage.dtype, storage.untyped()
    else:
        dtype, untyped = torch.uint8, storage
    numel_needed = storage_offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1 if all(size) else 0
    if numel_needed * torch.empty((), dtype=dtype).element_size() > untyped.nbytes():
        raise UnsafePickleError("tensor record reaches past the end of its storage")
    t = torch.empty((0,), dtype=dtype)
    t.set_(untyped, storage_offset, tuple(size), tuple(stride))
    return t


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *state):
    if not torch.is_tensor(data):
        raise UnsafePickleError("parameter record without a tensor")
    if backward_hooks:
        raise UnsafePickleError("parameter record carries backward hooks")
    return data


def _numpy_allowed() -> dict:
    import numpy as np

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray

    def scalar(dtype, data=None):
        if not isinstance(dtype, np.dtype) or dtype.kind not in "biufc" or not isinstance(data, bytes):
            raise UnsafePickleError("numpy scalar of a non-numeric dtype")
        return multiarray.scalar(dtype, data)

    def dtype(obj, align=False, copy=False):
        d = np.dtype(obj, align, copy)
        if d.kind not in "biufcV" or d.hasobject:
            raise UnsafePickleError(f"numpy dtype {d} is not numeric")
        return d

    def reconstruct(cls, shape, typecode):
        if cls is not np.ndarray:
            raise UnsafePickleError("numpy array record of another class")
        return multiarray._reconstruct(np.ndarray, shape, typecode)

    out = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[(mod, "scalar")] = scalar
        out[(mod, "_reconstruct")] = reconstruct
    out[("numpy", "dtype")] = dtype
    out[("numpy", "ndarray")] = np.ndarray
    return out


_TORCH_DTYPES = ("float16", "float32", "float64", "bfloat16", "int64", "int32", "uint8", "bool")

ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("dnnlib.util", "EasyDict"): AttrDict,
    **{("torch", n): getattr(torch, n) for n in _TORCH_DTYPES},
    **{
        ("torch.nn.modules.container", k): _container_class(k)
        for k in ("ModuleDict", "ModuleList", "Sequential", "ParameterDict", "ParameterList")
    },
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, f, source: str):
        super().__init__(f)
        self.source = source
        self.allowed = {**ALLOWED_GLOBALS, **_numpy_allowed()}

    def find_class(self, module, name):
        obj = self.allowed.get((module, name))
        if obj is None:
            raise UnsafePickleError(
                f"{self.source}: refused to load: the pickle calls {module}.{name}, which is not a tensor, "
                "container or EDM persistence record (nothing was executed)"
            )
        return obj

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.source}: refused to load: unexpected persistent id in the pickle")


def loads_snapshot(data: bytes, source: str = "snapshot"):
    """Unpickle bytes with the allowlist; see `load_snapshot`."""
    try:
        # walk the opcodes first: a damaged length field then fails here instead of making the unpickler
        # allocate a huge buffer before noticing the data is short
        for _ in pickletools.genops(data):
            pass
        with warnings.catch_warnings():  # torch.load's notes about odd protocols in damaged storage blobs
            warnings.simplefilter("ignore")
            return _Unpickler(io.BytesIO(data), source).load()
    except UnsafePickleError as e:
        msg = str(e)
        raise UnsafePickleError(msg if msg.startswith(source) else f"{source}: refused to load: {msg}") from None
    except Exception as e:  # any parse failure of a damaged stream (torch.load asserts on some)
        msg = " ".join(str(e).split())[:160] or type(e).__name__
        raise CheckpointError(
            f"{source}: not a readable EDM/EDM2 snapshot pickle (truncated or corrupt? {msg})"
        ) from None


def load_snapshot(path: str | Path):
    """The object tree of an EDM / EDM2 snapshot `.pkl`, with persistent objects as `PersistentObject` records.

    Raises `UnsafePickleError` (one line naming the global) for anything outside the allowlist and
    `CheckpointError` for a missing, truncated or corrupt file. Nothing stored in the file is executed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"snapshot file not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror or e}") from None
    return loads_snapshot(data, path.name)


def _is_module(obj) -> bool:
    return isinstance(obj, (PersistentObject, ModuleContainer))


def module_state_dict(record, prefix: str = "") -> dict[str, torch.Tensor]:
    """`state_dict()` of a module record tree: parameters and persistent buffers under dotted names."""
    if not _is_module(record):
        raise CheckpointError(f"{prefix or 'network'}: not a module record")
    st = getattr(record, "state", {})
    out: dict[str, torch.Tensor] = {}
    non_persistent = st.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        items = st.get(group) or {}
        if not isinstance(items, dict):
            raise CheckpointError(f"{prefix or 'network'}: malformed {group}")
        for name, t in items.items():
            if t is None or (group == "_buffers" and name in non_persistent):
                continue
            if not torch.is_tensor(t):
                raise CheckpointError(f"{prefix}{name}: not a tensor")
            out[prefix + name] = t
    for name, child in (st.get("_modules") or {}).items():
        if child is None:
            continue
        out.update(module_state_dict(child, f"{prefix}{name}."))
    return out
