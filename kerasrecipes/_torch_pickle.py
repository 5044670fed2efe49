"""Reads a legacy (non-zip) `torch.save` state dict into NumPy arrays, without importing torch.

The legacy format (torch < 1.6, or `_use_new_zipfile_serialization=False`) is a sequence of
pickles followed by raw storage bytes:

1. the magic number `0x1950a86a20f9469cfc6c`, the protocol version `1001` and a dict of sys info;
2. the object itself (here an `OrderedDict` name → tensor). Each tensor is pickled as
   `torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks)`,
   where `storage` is a persistent id `("storage", <StorageType>, key, location, numel, view)`;
3. the list of storage keys, in the order their bytes follow;
4. for each key: its element count as an 8-byte little-endian integer, then its raw data.

The unpickler below only resolves the handful of globals this needs, so a malicious file cannot
run code through it (pickle's usual risk).
"""

import collections
import os
import pickle
import struct

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

# torch storage class name → little-endian NumPy dtype.
_STORAGE_DTYPES = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class _StorageType:
    """Stands in for `torch.FloatStorage` & co.: only remembers its dtype."""

    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    """A storage whose bytes come later in the file; filled in once they are read."""

    def __init__(self, dtype, numel):
        self.dtype = dtype
        self.numel = numel
        self.data = None


class _TensorRef:
    """A tensor's view onto a storage, resolved into an array once the storage bytes are read."""

    def __init__(self, storage, offset, size, stride):
        self.storage = storage
        self.offset = offset
        self.size = tuple(size)
        self.stride = tuple(stride)

    def to_numpy(self):
        storage = self.storage
        base = storage.data
        itemsize = base.dtype.itemsize
        if self.size and any(s == 0 for s in self.size):
            return np.zeros(self.size, base.dtype)
        # Furthest element the view touches must lie inside the storage.
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if self.offset < 0 or last >= storage.numel:
            raise ValueError(
                f"Corrupt tensor: offset={self.offset}, size={self.size}, stride={self.stride} "
                f"reaches past its storage of {storage.numel} elements."
            )
        view = np.lib.stride_tricks.as_strided(
            base[self.offset:],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.array(view)  # a contiguous copy, independent of the storage buffer


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    del requires_grad, backward_hooks, metadata  # irrelevant for arrays
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    del requires_grad, backward_hooks
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
    """Resolves only the globals a state dict needs; refuses everything else."""

    def __init__(self, file, storages):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(
            f"Refusing to load global {module}.{name}: a legacy torch state dict only needs "
            "OrderedDict, tensors and storages."
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"Unsupported persistent id: {pid!r}")
        _, storage_type, key, _location, numel, view_metadata = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"Unsupported storage type: {storage_type!r}")
        if view_metadata is not None:  # storage views: only written by torch < 0.4
            raise pickle.UnpicklingError("Storage views (torch < 0.4 files) are not supported.")
        if key not in self._storages:
            self._storages[key] = _Storage(storage_type.dtype, numel)
        return self._storages[key]


class _PlainUnpickler(pickle.Unpickler):
    """For the header values and the key list: plain data, no globals at all."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"Refusing to load global {module}.{name} in a header.")


def _safe_load(file):
    return _PlainUnpickler(file).load()


def load_state_dict(path):
    """Reads a legacy-format `torch.save` file of tensors into NumPy arrays.

    Args:
        path: str or path-like. A `.pth` file written by `torch.save(...,
            _use_new_zipfile_serialization=False)` (or by torch < 1.6).

    Returns:
        dict mapping each key (e.g. `"_conv_stem.weight"`) to a `np.ndarray` with the tensor's
        shape, dtype and values (storage offset and strides honoured).

    Raises:
        ValueError: the file is not a legacy torch file (a zip-format file, say) or is truncated.
        pickle.UnpicklingError: the file asks for a global other than the few a state dict needs.

    Example:
    >>> weights = load_state_dict("efficientnet-lite0-57934424.pth")
    >>> weights["_conv_stem.weight"].shape  # (32, 3, 3, 3)
    """
    with open(os.fspath(path), "rb") as f:
        head = f.read(4)
        f.seek(0)
        if head == b"PK\x03\x04":
            raise ValueError(
                f"{path} is a zip-format torch file; only the legacy format is supported "
                "(torch.save(..., _use_new_zipfile_serialization=False))."
            )
        try:
            magic = _safe_load(f)
            version = _safe_load(f)
            _sys_info = _safe_load(f)
        except (pickle.UnpicklingError, EOFError) as error:
            raise ValueError(f"{path} is not a legacy torch file: {error}") from error
        if magic != MAGIC_NUMBER:
            raise ValueError(f"{path} is not a legacy torch file (bad magic number {magic!r}).")
        if version != PROTOCOL_VERSION:
            raise ValueError(f"Unsupported torch protocol version {version!r} in {path}.")

        storages = {}
        obj = _Unpickler(f, storages).load()
        keys = _safe_load(f)
        for key in keys:
            storage = storages.get(key)
            (numel,) = struct.unpack("<q", _read_exactly(f, 8, path))
            if storage is None:  # torch only lists storages that tensors use
                raise ValueError(f"{path}: storage {key!r} is listed but never used.")
            nbytes = numel * storage.dtype.itemsize
            storage.data = np.frombuffer(_read_exactly(f, nbytes, path), storage.dtype)
            storage.numel = numel

    return _to_arrays(obj, path)


def _read_exactly(f, count, path):
    data = f.read(count)
    if len(data) != count:
        raise ValueError(f"{path} is truncated: expected {count} more bytes, got {len(data)}.")
    return data


def _to_arrays(obj, path):
    if not isinstance(obj, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(obj).__name__}).")
    arrays = {}
    for key, value in obj.items():
        if isinstance(value, _TensorRef):
            if value.storage.data is None:
                raise ValueError(f"{path}: the bytes of tensor {key!r} are missing.")
            arrays[key] = value.to_numpy()
    return arrays
