"""A FUSE pass-through filesystem that injects errno failures and latency per operation and path.

``python -m tenfold.chaos_engine._fusefs SOURCE MOUNTPOINT RULES_FILE``

Every operation on ``MOUNTPOINT`` is served from ``SOURCE``. Before serving it,
the rules in ``RULES_FILE`` (JSON, rewritten atomically by the engine, re-read
when its mtime changes) are matched against the operation's path, relative to
the mount: a matching rule first sleeps ``latency_ms``, then fails the
operation with ``errno`` at ``probability``. An empty rules file is a plain
pass-through. The mount is the fault's kernel object: unmounting it
(``fusermount3 -u``) ends every disk fault on it at once.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import os
import random
import stat
import sys
from pathlib import Path
from typing import Any

import pyfuse3
import trio


class Rules:
    """The current fault rules, re-read when the engine rewrites the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mtime = 0
        self.rules: list[dict[str, Any]] = []
        self.rng = random.Random()

    def current(self) -> list[dict[str, Any]]:
        # One stat per operation: a rule is live for the very next operation after
        # the engine's atomic rename, so an inject that returned is in force.
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self.rules = []
            return self.rules
        if mtime != self.mtime:
            self.mtime = mtime
            with contextlib.suppress(ValueError):  # unreadable: keep the previous rules
                self.rules = json.loads(self.path.read_text() or "[]")
        return self.rules

    async def apply(self, op: str, rel: str) -> None:
        for rule in self.current():
            ops = rule.get("operations") or ()
            if ops and op not in ops:
                continue
            if not fnmatch.fnmatch(rel, rule["glob"]):
                continue
            if rule.get("latency_ms"):
                await trio.sleep(rule["latency_ms"] / 1000)
            number = rule.get("errno")
            if number and self.rng.random() < rule.get("probability", 1.0):
                raise pyfuse3.FUSEError(number)


class PassThrough(pyfuse3.Operations):
    def __init__(self, source: str, rules: Rules) -> None:
        super().__init__()
        self.source = source
        self.rules = rules
        self.paths: dict[int, str] = {pyfuse3.ROOT_INODE: source}
        self.fds: dict[int, tuple[int, str]] = {}

    # -- helpers ------------------------------------------------------------------
    def _path(self, inode: int) -> str:
        try:
            return self.paths[inode]
        except KeyError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None

    def _rel(self, path: str) -> str:
        return os.path.relpath(path, self.source)

    def _child(self, parent: int, name: bytes) -> str:
        return os.path.join(self._path(parent), os.fsdecode(name))

    def _attrs(self, path: str) -> pyfuse3.EntryAttributes:
        try:
            st = os.lstat(path)
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        inode = pyfuse3.ROOT_INODE if path == self.source else st.st_ino
        self.paths[inode] = path
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = inode
        for attr in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_rdev", "st_size"):
            setattr(entry, attr, getattr(st, attr))
        entry.st_blksize = st.st_blksize
        entry.st_blocks = st.st_blocks
        entry.st_atime_ns = st.st_atime_ns
        entry.st_mtime_ns = st.st_mtime_ns
        entry.st_ctime_ns = st.st_ctime_ns
        entry.generation = 0
        entry.entry_timeout = 0
        entry.attr_timeout = 0
        return entry

    async def _fault(self, op: str, path: str) -> None:
        await self.rules.apply(op, self._rel(path))

    @staticmethod
    def _os(call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None

    # -- operations ---------------------------------------------------------------
    async def lookup(self, parent_inode: int, name: bytes, ctx: Any = None) -> Any:
        path = self._child(parent_inode, name)
        await self._fault("lookup", path)
        return self._attrs(path)

    async def getattr(self, inode: int, ctx: Any = None) -> Any:
        path = self._path(inode)
        await self._fault("getattr", path)
        return self._attrs(path)

    async def setattr(self, inode: int, attr: Any, fields: Any, fh: Any, ctx: Any) -> Any:
        path = self._path(inode)
        await self._fault("setattr", path)
        if fields.update_size:
            self._os(os.truncate, path, attr.st_size)
        if fields.update_mode:
            self._os(os.chmod, path, stat.S_IMODE(attr.st_mode))
        return self._attrs(path)

    async def opendir(self, inode: int, ctx: Any) -> int:
        return inode

    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        path = self._path(fh)
        await self._fault("readdir", path)
        names = sorted(self._os(os.listdir, path))
        for index, name in enumerate(names[start_id:], start_id + 1):
            child = os.path.join(path, name)
            try:
                attrs = self._attrs(child)
            except pyfuse3.FUSEError:
                continue
            if not pyfuse3.readdir_reply(token, os.fsencode(name), attrs, index):
                break

    async def releasedir(self, fh: int) -> None:
        return None

    async def open(self, inode: int, flags: int, ctx: Any) -> Any:
        path = self._path(inode)
        await self._fault("open", path)
        fd = self._os(os.open, path, flags & ~os.O_CREAT)
        self.fds[fd] = (fd, path)
        # direct_io: no page cache, so every read meets the rules
        return pyfuse3.FileInfo(fh=fd, direct_io=True)

    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: Any) -> Any:
        path = self._child(parent_inode, name)
        await self._fault("create", path)
        fd = self._os(os.open, path, flags | os.O_CREAT | os.O_TRUNC, mode)
        self.fds[fd] = (fd, path)
        return pyfuse3.FileInfo(fh=fd, direct_io=True), self._attrs(path)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        await self._fault("read", self.fds[fh][1])
        data: bytes = self._os(os.pread, fh, size, off)
        return data

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        await self._fault("write", self.fds[fh][1])
        written: int = self._os(os.pwrite, fh, buf, off)
        return written

    async def fsync(self, fh: int, datasync: bool) -> None:
        await self._fault("fsync", self.fds[fh][1])
        self._os(os.fsync, fh)

    async def flush(self, fh: int) -> None:
        return None

    async def release(self, fh: int) -> None:
        self.fds.pop(fh, None)
        os.close(fh)

    async def unlink(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        path = self._child(parent_inode, name)
        await self._fault("unlink", path)
        self._os(os.unlink, path)

    async def mkdir(self, parent_inode: int, name: bytes, mode: int, ctx: Any) -> Any:
        path = self._child(parent_inode, name)
        await self._fault("mkdir", path)
        self._os(os.mkdir, path, mode)
        return self._attrs(path)

    async def rmdir(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        path = self._child(parent_inode, name)
        await self._fault("rmdir", path)
        self._os(os.rmdir, path)

    async def rename(
        self,
        parent_old: int,
        name_old: bytes,
        parent_new: int,
        name_new: bytes,
        flags: int,
        ctx: Any,
    ) -> None:
        old, new = self._child(parent_old, name_old), self._child(parent_new, name_new)
        await self._fault("rename", old)
        self._os(os.rename, old, new)

    async def statfs(self, ctx: Any) -> Any:
        st = os.statvfs(self.source)
        out = pyfuse3.StatvfsData()
        for attr in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                     "f_ffree", "f_favail", "f_namemax"):  # fmt: skip
            setattr(out, attr, getattr(st, attr))
        return out


def main(argv: list[str]) -> int:
    source, mountpoint, rules = os.path.abspath(argv[0]), argv[1], Path(argv[2])
    options = set(pyfuse3.default_options)
    options.add("fsname=tfchaos")
    options.discard("default_permissions")
    pyfuse3.init(PassThrough(source, Rules(rules)), mountpoint, options)
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
