"""A thin ctypes binding over libbpf 1.x: objects, programs, maps, links, test runs.

Only what tenfold uses is bound. Every libbpf call that fails is turned into a
:class:`BpfError` naming the call and the errno; a verifier rejection carries the
verifier log. Objects own their file descriptors: closing an object (or the
process exiting) detaches every link it created unless the link was pinned.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from tenfold.cloud_kernel.errors import BpfError, MapEntryExists, NotPermitted, VerifierRejected
from tenfold.core.lifecycle import Closing

__all__ = ["BpfLink", "BpfMap", "BpfObject", "BpfProgram", "num_possible_cpus"]

BPF_ANY = 0
BPF_NOEXIST = 1
BPF_XDP = 37
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2

_lib: ctypes.CDLL | None = None


class _TestRunOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


class _LinkCreateOpts(ctypes.Structure):
    # The tail union is left zeroed; libbpf accepts a larger struct whose unknown
    # trailing bytes are zero (its forward-compatibility rule).
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("flags", ctypes.c_uint32),
        ("iter_info", ctypes.c_void_p),
        ("iter_info_len", ctypes.c_uint32),
        ("target_btf_id", ctypes.c_uint32),
        ("tail", ctypes.c_uint8 * 64),
    ]


def lib() -> ctypes.CDLL:
    """libbpf, loaded once, with argument and return types declared."""
    global _lib
    if _lib is not None:
        return _lib
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        handle = ctypes.CDLL(name, use_errno=True)
    except OSError:
        raise BpfError("libbpf not found (install the Debian package libbpf-dev)") from None
    vp, ci, cs = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
    sigs: dict[str, tuple[type | None, list[type]]] = {
        "bpf_object__open_file": (vp, [cs, vp]),
        "bpf_object__load": (ci, [vp]),
        "bpf_object__close": (None, [vp]),
        "bpf_object__find_program_by_name": (vp, [vp, cs]),
        "bpf_object__find_map_by_name": (vp, [vp, cs]),
        "bpf_program__fd": (ci, [vp]),
        "bpf_program__set_log_buf": (ci, [vp, ctypes.c_char_p, ctypes.c_size_t]),
        "bpf_program__set_log_level": (ci, [vp, ctypes.c_uint32]),
        "bpf_program__attach": (vp, [vp]),
        "bpf_map__fd": (ci, [vp]),
        "bpf_map__value_size": (ctypes.c_uint32, [vp]),
        "bpf_map__key_size": (ctypes.c_uint32, [vp]),
        "bpf_map__max_entries": (ctypes.c_uint32, [vp]),
        "bpf_map__set_max_entries": (ci, [vp, ctypes.c_uint32]),
        "bpf_map__set_initial_value": (ci, [vp, vp, ctypes.c_size_t]),
        "bpf_map_update_elem": (ci, [ci, vp, vp, ctypes.c_uint64]),
        "bpf_map_lookup_elem": (ci, [ci, vp, vp]),
        "bpf_map_delete_elem": (ci, [ci, vp]),
        "bpf_map_get_next_key": (ci, [ci, vp, vp]),
        "bpf_map_lookup_batch": (ci, [ci, vp, vp, vp, vp, ctypes.POINTER(ctypes.c_uint32), vp]),
        "bpf_prog_test_run_opts": (ci, [ci, ctypes.POINTER(_TestRunOpts)]),
        "bpf_link_create": (ci, [ci, ci, ctypes.c_int, ctypes.POINTER(_LinkCreateOpts)]),
        "bpf_link__destroy": (ci, [vp]),
        "bpf_link__fd": (ci, [vp]),
        "bpf_link__pin": (ci, [vp, cs]),
        "bpf_obj_pin": (ci, [ci, cs]),
        "bpf_obj_get": (ci, [cs]),
        "bpf_map__pin": (ci, [vp, cs]),
        "libbpf_num_possible_cpus": (ci, []),
    }
    for fn_name, (restype, argtypes) in sigs.items():
        fn = getattr(handle, fn_name)
        fn.restype = restype
        fn.argtypes = argtypes
    _lib = handle
    return handle


def _fail(call: str, code: int | None = None) -> BpfError:
    err = abs(code) if code else ctypes.get_errno()
    text = os.strerror(err) if err else "unknown error"
    if err in (errno.EPERM, errno.EACCES):
        return NotPermitted(f"{call}: {text} (BPF needs root or CAP_BPF)")
    return BpfError(f"{call}: {text}")


def num_possible_cpus() -> int:
    n = int(lib().libbpf_num_possible_cpus())
    if n <= 0:
        raise _fail("libbpf_num_possible_cpus", n)
    return n


@dataclass
class BpfLink:
    """An attachment owned by this process: destroyed (detached) on close unless pinned."""

    handle: int | None  # struct bpf_link *, or None for a raw link fd
    fd: int
    what: str

    def pin(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        rc = (
            lib().bpf_link__pin(self.handle, str(path).encode())
            if self.handle
            else lib().bpf_obj_pin(self.fd, str(path).encode())
        )
        if rc < 0:
            raise _fail(f"pin {self.what} at {path}", rc)

    def close(self) -> None:
        if self.handle:
            lib().bpf_link__destroy(self.handle)
            self.handle = None
        elif self.fd >= 0:
            os.close(self.fd)
        self.fd = -1


class BpfMap:
    """A map of a loaded object (or opened from a pin): raw byte keys and values, per-CPU aware."""

    def __init__(
        self,
        handle: int | None,
        name: str,
        per_cpu: bool = False,
        *,
        fd: int | None = None,
        sizes: tuple[int, int, int] | None = None,
    ) -> None:
        self.handle = handle
        self.name = name
        if handle is not None:
            self.fd = int(lib().bpf_map__fd(handle))
            self.key_size = int(lib().bpf_map__key_size(handle))
            self.value_size = int(lib().bpf_map__value_size(handle))
            self.max_entries = int(lib().bpf_map__max_entries(handle))
        else:
            if fd is None or sizes is None:
                raise BpfError(f"map {name}: need a handle, or an fd and sizes")
            self.fd = fd
            self.key_size, self.value_size, self.max_entries = sizes
        self.per_cpu = per_cpu
        self._cpus = num_possible_cpus() if per_cpu else 1
        self._slot = (self.value_size + 7) // 8 * 8 if per_cpu else self.value_size

    @classmethod
    def open_pinned(cls, path: Path, *, per_cpu: bool, sizes: tuple[int, int, int]) -> BpfMap:
        ctypes.set_errno(0)
        fd = int(lib().bpf_obj_get(str(path).encode()))
        if fd < 0:
            raise _fail(f"open pinned map {path}", fd)
        return cls(None, path.name, per_cpu, fd=fd, sizes=sizes)

    def pin(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        rc = lib().bpf_obj_pin(self.fd, str(path).encode())
        if rc < 0:
            raise _fail(f"pin map {self.name} at {path}", rc)

    def close(self) -> None:
        """Close a map opened from a pin (maps of an object close with it)."""
        if self.handle is None and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _key(self, key: bytes) -> ctypes.Array[ctypes.c_char]:
        if len(key) != self.key_size:
            raise BpfError(f"map {self.name}: key must be {self.key_size} bytes, got {len(key)}")
        return ctypes.create_string_buffer(key, self.key_size)

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        total = self._slot * self._cpus
        if self.per_cpu and len(value) == self.value_size:
            value = b"".join(value.ljust(self._slot, b"\0") for _ in range(self._cpus))
        if len(value) != total:
            raise BpfError(f"map {self.name}: value must be {total} bytes, got {len(value)}")
        kbuf = self._key(key)
        vbuf = ctypes.create_string_buffer(value, total)
        ctypes.set_errno(0)
        rc = lib().bpf_map_update_elem(self.fd, kbuf, vbuf, flags)
        if rc < 0:
            # A full hash map answers E2BIG, a full trie ENOSPC.
            if abs(rc) in (errno.ENOSPC, errno.E2BIG):
                raise BpfError(f"map {self.name} is full ({self.max_entries} entries)")
            if abs(rc) == errno.EEXIST:
                raise MapEntryExists(f"map {self.name}: key already present")
            raise _fail(f"update {self.name}", rc)

    def lookup(self, key: bytes) -> bytes | None:
        kbuf = self._key(key)
        vbuf = ctypes.create_string_buffer(self._slot * self._cpus)
        rc = lib().bpf_map_lookup_elem(self.fd, kbuf, vbuf)
        if rc < 0:
            if abs(rc) == errno.ENOENT:
                return None
            raise _fail(f"lookup {self.name}", rc)
        return vbuf.raw

    def lookup_per_cpu(self, key: bytes) -> list[bytes]:
        raw = self.lookup(key)
        if raw is None:
            return []
        return [raw[i * self._slot : i * self._slot + self.value_size] for i in range(self._cpus)]

    def lookup_batch_per_cpu(self) -> list[tuple[bytes, list[bytes]]]:
        """Every (key, per-CPU values) of the map in one BPF_MAP_LOOKUP_BATCH call."""
        n = self.max_entries
        keys = ctypes.create_string_buffer(self.key_size * n)
        values = ctypes.create_string_buffer(self._slot * self._cpus * n)
        token = ctypes.create_string_buffer(max(self.key_size, 8))
        count = ctypes.c_uint32(n)
        ctypes.set_errno(0)
        rc = int(lib().bpf_map_lookup_batch(self.fd, None, token, keys, values, count, None))
        if rc < 0 and abs(rc) != errno.ENOENT:  # ENOENT: the last batch, which is all of it
            raise _fail(f"batch lookup of {self.name}", rc)
        out = []
        stride = self._slot * self._cpus
        raw_keys, raw_values = keys.raw, values.raw
        for i in range(count.value):
            cell = raw_values[i * stride : (i + 1) * stride]
            out.append(
                (
                    raw_keys[i * self.key_size : (i + 1) * self.key_size],
                    [
                        cell[c * self._slot : c * self._slot + self.value_size]
                        for c in range(self._cpus)
                    ],
                )
            )
        return out

    def delete(self, key: bytes) -> bool:
        rc = lib().bpf_map_delete_elem(self.fd, self._key(key))
        if rc < 0:
            if abs(rc) == errno.ENOENT:
                return False
            raise _fail(f"delete from {self.name}", rc)
        return True

    def keys(self) -> Iterator[bytes]:
        prev: ctypes.Array[ctypes.c_char] | None = None
        nxt = ctypes.create_string_buffer(self.key_size)
        while True:
            rc = lib().bpf_map_get_next_key(self.fd, prev, nxt)
            if rc < 0:
                return
            key = nxt.raw
            yield key
            prev = ctypes.create_string_buffer(key, self.key_size)


class BpfProgram:
    def __init__(self, obj: BpfObject, handle: int, name: str) -> None:
        self.obj = obj
        self.handle = handle
        self.name = name

    @property
    def fd(self) -> int:
        fd = int(lib().bpf_program__fd(self.handle))
        if fd < 0:
            raise BpfError(f"program {self.name} is not loaded")
        return fd

    def test_run(self, data: bytes, repeat: int = 1) -> tuple[int, int]:
        """Run the program on ``data`` in the kernel (BPF_PROG_TEST_RUN): (retval, ns per run)."""
        buf = ctypes.create_string_buffer(data, len(data))
        out = ctypes.create_string_buffer(max(len(data), 64) + 256)
        opts = _TestRunOpts(
            sz=ctypes.sizeof(_TestRunOpts),
            data_in=ctypes.cast(buf, ctypes.c_void_p),
            data_size_in=len(data),
            data_out=ctypes.cast(out, ctypes.c_void_p),
            data_size_out=len(out),
            repeat=max(1, repeat),
        )
        rc = lib().bpf_prog_test_run_opts(self.fd, ctypes.byref(opts))
        if rc < 0:
            raise _fail(f"test run of {self.name} on a {len(data)}-byte frame", rc)
        return int(opts.retval), int(opts.duration)

    def attach(self) -> BpfLink:
        """Attach by the program's section (tracepoints); detached when the link closes."""
        ctypes.set_errno(0)
        handle = lib().bpf_program__attach(self.handle)
        if not handle:
            raise _fail(f"attach {self.name}")
        fd = int(lib().bpf_link__fd(handle))
        link = BpfLink(handle, fd, self.name)
        self.obj.links.append(link)
        return link

    def attach_xdp(self, ifindex: int, mode: str = "auto") -> tuple[BpfLink, str]:
        """Attach as XDP through a BPF link (native mode, falling back to generic)."""
        modes = {"native": [XDP_FLAGS_DRV_MODE], "generic": [XDP_FLAGS_SKB_MODE]}.get(
            mode, [XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE]
        )
        last = 0
        for flags in modes:
            opts = _LinkCreateOpts(sz=ctypes.sizeof(_LinkCreateOpts), flags=flags)
            fd = int(lib().bpf_link_create(self.fd, ifindex, BPF_XDP, ctypes.byref(opts)))
            if fd >= 0:
                link = BpfLink(None, fd, f"{self.name}@{ifindex}")
                self.obj.links.append(link)
                return link, "native" if flags == XDP_FLAGS_DRV_MODE else "generic"
            last = fd
        if abs(last) == errno.EBUSY:
            raise BpfError(f"interface {ifindex} already has an XDP program attached")
        raise _fail(f"attach XDP program {self.name} to interface {ifindex}", last)


class BpfObject(Closing):
    """A compiled BPF object file, opened and loaded into the kernel."""

    def __init__(self, path: Path, *, log_size: int = 1 << 20) -> None:
        self.path = path
        self.links: list[BpfLink] = []
        ctypes.set_errno(0)
        handle = lib().bpf_object__open_file(str(path).encode(), None)
        if not handle:
            raise _fail(f"open {path}")
        self.handle: int | None = handle
        self._log = ctypes.create_string_buffer(log_size)

    def load(self, programs: list[str]) -> Self:
        for name in programs:
            prog = self._find_program(name)
            lib().bpf_program__set_log_buf(prog, self._log, len(self._log))
            lib().bpf_program__set_log_level(prog, 1)
        rc = int(lib().bpf_object__load(self.handle))
        if rc < 0:
            log = self._log.value.decode(errors="replace").strip()
            self.close()
            if abs(rc) in (errno.EPERM, errno.EACCES) and not log:
                raise NotPermitted(
                    f"loading {self.path.name}: not permitted (BPF needs root or CAP_BPF)"
                )
            if log:
                tail = "\n".join(log.splitlines()[-25:])
                raise VerifierRejected(f"the verifier rejected {self.path.name}:\n{tail}")
            raise _fail(f"load {self.path.name}", rc)
        return self

    def _find_map(self, name: str) -> int:
        handle = lib().bpf_object__find_map_by_name(self.handle, name.encode())
        if not handle:
            raise BpfError(f"{self.path.name} has no map {name!r}")
        return int(handle)

    def set_max_entries(self, name: str, entries: int) -> None:
        """Resize map ``name`` before :meth:`load`."""
        rc = int(lib().bpf_map__set_max_entries(self._find_map(name), entries))
        if rc < 0:
            raise _fail(f"resize map {name} to {entries} entries", rc)

    def set_initial_value(self, name: str, data: bytes) -> None:
        """Fill a global-data map (``.rodata``, ``.data``) before :meth:`load`."""
        buf = ctypes.create_string_buffer(data, len(data))
        rc = int(lib().bpf_map__set_initial_value(self._find_map(name), buf, len(data)))
        if rc < 0:
            raise _fail(f"set the initial value of {name} ({len(data)} bytes)", rc)

    def _find_program(self, name: str) -> int:
        handle = lib().bpf_object__find_program_by_name(self.handle, name.encode())
        if not handle:
            raise BpfError(f"{self.path.name} has no program {name!r}")
        return int(handle)

    def program(self, name: str) -> BpfProgram:
        return BpfProgram(self, self._find_program(name), name)

    def map(self, name: str, *, per_cpu: bool = False) -> BpfMap:
        return BpfMap(self._find_map(name), name, per_cpu)

    def close(self) -> None:
        for link in self.links:
            link.close()
        self.links.clear()
        if self.handle:
            lib().bpf_object__close(self.handle)
            self.handle = None
