"""Paths a tool may touch: every one must resolve inside its workspace root.

A path is checked by name (`..`, absolute paths elsewhere) and by what it resolves to
(symlinks out). Files are then opened relative to their parent directory, itself re-checked
through the open descriptor, with O_NOFOLLOW on the last component: a symlink swapped in
between the check and the open (a sandboxed command can make symlinks) cannot redirect the
call outside the root.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path


class ToolError(Exception):
    """A refused or failed tool call; the message is what the model reads."""


class PathRefused(ToolError):
    pass


@dataclass(frozen=True, slots=True)
class WorkspaceRoot:
    path: Path  # resolved, absolute
    uid: int
    gid: int

    @classmethod
    def at(cls, root: str | Path) -> WorkspaceRoot:
        path = Path(root).expanduser().resolve(strict=True)
        if not path.is_dir():
            raise NotADirectoryError(f"workspace root {path} is not a directory")
        info = path.stat()
        return cls(path=path, uid=info.st_uid, gid=info.st_gid)

    def contains(self, path: Path | str) -> bool:
        path = Path(path)
        return path == self.path or self.path in path.parents

    def resolve(self, given: str) -> Path:
        """The real path `given` names (absolute, or relative to the root), or PathRefused."""
        if not isinstance(given, str) or not given.strip():
            raise PathRefused("a path is required")
        if "\x00" in given:
            raise PathRefused("the path contains a NUL character")
        candidate = Path(given).expanduser() if given.startswith("~") else Path(given)
        if not candidate.is_absolute():
            candidate = self.path / candidate
        lexical = Path(os.path.normpath(candidate))
        if not self.contains(lexical):
            raise PathRefused(f"{given} is outside the workspace ({self.path})")
        real = Path(os.path.realpath(lexical))
        if not self.contains(real):
            raise PathRefused(f"{given} leads outside the workspace ({self.path}) "
                              "through a symbolic link")
        return real

    def read_bytes(self, path: Path, limit: int) -> bytes:
        """At most `limit` bytes of a regular file (ToolError if it is larger)."""
        fd = self._open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ToolError(f"{path} is not a regular file")
            if info.st_size > limit:
                raise ToolError(f"{path} is {info.st_size} bytes, more than the {limit} "
                                "bytes this tool reads")
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def write_bytes(self, path: Path, data: bytes) -> bool:
        """Write a regular file, creating it and its folders; True if it was created."""
        self.make_dirs(path.parent)
        created = not os.path.lexists(path)
        fd = self._open(path, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK, 0o644)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ToolError(f"{path} is not a regular file")
            os.ftruncate(fd, 0)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        if created:
            self.adopt(path)
        return created

    def make_dirs(self, path: Path) -> None:
        missing: list[Path] = []
        probe = path
        while not probe.exists():
            if not self.contains(probe):
                raise PathRefused(f"{path} is outside the workspace ({self.path})")
            missing.append(probe)
            probe = probe.parent
        if not self.contains(Path(os.path.realpath(probe))):
            raise PathRefused(f"{path} is outside the workspace ({self.path})")
        for folder in reversed(missing):
            os.mkdir(folder, 0o755)
            if not self.contains(Path(os.path.realpath(folder))):
                raise PathRefused(f"{folder} is outside the workspace ({self.path})")
            self.adopt(folder)

    def adopt(self, path: Path) -> None:
        """New files belong to the root's owner, so a sandboxed command (which runs as that
        user, or 65534) can change what the gateway, running as root, created."""
        if os.geteuid() == 0 and (self.uid, self.gid) != (0, 0):
            os.chown(path, self.uid, self.gid, follow_symlinks=False)

    def _open(self, path: Path, flags: int, mode: int = 0o644) -> int:
        try:
            parent = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ToolError(f"{path.parent} does not exist") from None
        try:
            if not self.contains(os.readlink(f"/proc/self/fd/{parent}")):
                raise PathRefused(f"{path} is outside the workspace ({self.path})")
            try:
                return os.open(path.name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                               dir_fd=parent)
            except FileNotFoundError:
                raise ToolError(f"{path} does not exist") from None
            except IsADirectoryError:
                raise ToolError(f"{path} is a directory") from None
            except OSError as exc:
                raise ToolError(f"{path}: {exc.strerror}") from None
        finally:
            os.close(parent)
