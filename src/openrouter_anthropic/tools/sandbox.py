"""Runs untrusted commands inside bubblewrap: the one place that decides what a sandboxed
process can see and do.

The process sees a read-only system (/usr and the few /etc files programs need), a fresh
/proc, /dev and size-capped /tmp, and one writable directory (a code-execution container or
a workspace root). It has no network (its own empty network namespace) unless the caller
asks for one, runs as uid 65534 inside its own user and pid namespaces, and lives under
rlimits (CPU, address space, file size, processes, open files) and a wall-clock timeout.

bubblewrap itself never runs as root: a root gateway first drops to uid 65534 (`setpriv`),
so the process limit is enforced (the kernel exempts root from RLIMIT_NPROC) and files the
sandbox writes belong to 65534 on the host too. Limits are set by `prlimit` in the exec
chain rather than a `preexec_fn`, which is unsafe with threads and unsupported by uvloop.

When bubblewrap is missing or fails its self-test the sandbox is unavailable and callers
refuse to run anything: nothing ever runs unsandboxed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SANDBOX_UID = 65534
SANDBOX_GID = 65534
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What ordinary programs read from /etc (the dynamic linker, Debian's alternatives, the
# time zone); the rest of /etc (secrets, the gateway's own config) stays out of sight.
_ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives",
              "/etc/localtime", "/etc/mime.types")
_ETC_NETWORK = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf",
                "/etc/ssl", "/etc/ca-certificates", "/etc/pki")
_PASSWD = (f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
           f"sandbox:x:{SANDBOX_UID}:{SANDBOX_GID}:sandbox:/workspace:/bin/bash\n")
_GROUP = f"root:x:0:\nsandbox:x:{SANDBOX_GID}:\n"
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_SELF_TEST_TIMEOUT_S = 15.0


class SandboxUnavailable(RuntimeError):
    """No working sandbox on this machine; the message says why and what to install."""


@dataclass(frozen=True, slots=True)
class Limits:
    timeout_s: float = 30.0
    cpu_s: int = 60
    memory_bytes: int = 1 << 30
    file_size_bytes: int = 100 << 20
    # Counted per host user, across every sandbox that user runs (a kernel rule).
    max_processes: int = 128
    max_open_files: int = 256
    tmp_bytes: int = 64 << 20
    max_output_bytes: int = 100_000  # per stream


@dataclass(frozen=True, slots=True)
class Mount:
    """The one writable directory: `host` is mounted at `at`, the working directory."""

    host: Path
    at: str


@dataclass(frozen=True, slots=True)
class RunResult:
    stdout: str
    stderr: str
    return_code: int
    timed_out: bool = False
    truncated: bool = False


@dataclass(slots=True)
class Sandbox:
    bwrap: str = "bwrap"
    # Extra host paths visible read-only at the same place (a virtualenv, a toolchain).
    ro_binds: Sequence[str] = ()
    max_concurrent: int = 4
    _checked: str | None = field(default=None, init=False)  # None: not yet; "": passed
    _check_lock: asyncio.Lock | None = field(default=None, init=False)
    _slots: asyncio.Semaphore | None = field(default=None, init=False)
    _disable_userns: bool = field(default=False, init=False)

    async def check(self) -> str | None:
        """Why the sandbox cannot be used, or None when it works (tested once, then cached)."""
        if self._checked is None:
            if self._check_lock is None:
                self._check_lock = asyncio.Lock()
            async with self._check_lock:
                if self._checked is None:
                    self._checked = await self._self_test()
        return self._checked or None

    async def run(
        self,
        argv: Sequence[str],
        *,
        mount: Mount | None,
        limits: Limits,
        files: Mapping[str, bytes] | None = None,
        network: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> RunResult:
        """Run `argv` in the sandbox. `files` are read-only files placed at the given paths
        (the program text, for instance). Raises SandboxUnavailable, never runs unsandboxed."""
        reason = await self.check()
        if reason:
            raise SandboxUnavailable(reason)
        if self._slots is None:
            self._slots = asyncio.Semaphore(max(1, self.max_concurrent))
        async with self._slots:
            return await self._run(argv, mount=mount, limits=limits, files=files or {},
                                   network=network, env=env or {})

    async def _self_test(self) -> str:
        bwrap = shutil.which(self.bwrap)
        if bwrap is None:
            return (f"bubblewrap ({self.bwrap}) is not installed: install the `bubblewrap` "
                    "package to enable sandboxed execution")
        self.bwrap = bwrap
        for tool in ("prlimit", *(("setpriv",) if os.geteuid() == 0 else ())):
            if shutil.which(tool) is None:
                return f"{tool} (util-linux) is not installed; the sandbox needs it"
        try:
            version = await _output([bwrap, "--version"])
        except OSError as exc:
            return f"bubblewrap ({bwrap}) cannot run: {exc}"
        self._disable_userns = _version(version) >= (0, 8)
        try:
            result = await self._run(["/bin/sh", "-c", "test \"$(id -u)\" = 65534"],
                                     mount=None, files={}, network=False, env={},
                                     limits=Limits(timeout_s=_SELF_TEST_TIMEOUT_S))
        except OSError as exc:
            return f"bubblewrap ({bwrap}) cannot run: {exc}"
        if result.timed_out or result.return_code != 0:
            detail = result.stderr.strip()[:300] or f"exit status {result.return_code}"
            return f"bubblewrap ({bwrap}) failed its self-test: {detail}"
        return ""

    async def _run(self, argv: Sequence[str], *, mount: Mount | None, limits: Limits,
                   files: Mapping[str, bytes], network: bool,
                   env: Mapping[str, str]) -> RunResult:
        fds = {path: _memfd(data) for path, data in
               {"/etc/passwd": _PASSWD.encode(), "/etc/group": _GROUP.encode(),
                **files}.items()}
        try:
            command = self.command(argv, mount=mount, limits=limits, files=fds,
                                   network=network, env=env)
            proc = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, start_new_session=True,
                pass_fds=tuple(fds.values()), env={"PATH": _PATH, "LANG": "C.UTF-8"})
        finally:
            for fd in fds.values():
                os.close(fd)
        return await _collect(proc, limits)

    def command(self, argv: Sequence[str], *, mount: Mount | None, limits: Limits,
                files: Mapping[str, int], network: bool, env: Mapping[str, str]) -> list[str]:
        """The exec chain: [setpriv] prlimit bwrap ... -- argv."""
        chain: list[str] = []
        if os.geteuid() == 0:
            chain += ["setpriv", f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_GID}",
                      "--clear-groups"]
        chain += ["prlimit", f"--cpu={limits.cpu_s}", f"--as={limits.memory_bytes}",
                  f"--fsize={limits.file_size_bytes}", f"--nproc={limits.max_processes}",
                  f"--nofile={limits.max_open_files}", "--core=0", "--"]
        chain += [self.bwrap, "--unshare-all", "--unshare-user",
                  *(("--share-net",) if network else ()),
                  "--die-with-parent", "--new-session", "--hostname", "sandbox",
                  "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID),
                  *(("--disable-userns",) if self._disable_userns else ()),
                  "--ro-bind", "/usr", "/usr"]
        for path in _SYSTEM_DIRS:
            if os.path.islink(path):
                chain += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                chain += ["--ro-bind", path, path]
        for path in (*_ETC_FILES, *(_ETC_NETWORK if network else ()), *self.ro_binds):
            chain += ["--ro-bind-try", path, path]
        chain += ["--proc", "/proc", "--dev", "/dev", "--size", str(limits.tmp_bytes),
                  "--tmpfs", "/tmp"]
        for path, fd in files.items():
            chain += ["--ro-bind-data", str(fd), path]
        home = "/tmp"
        if mount is not None:
            chain += ["--bind", str(mount.host), mount.at, "--chdir", mount.at]
            home = mount.at
        chain += ["--clearenv", "--setenv", "PATH", _PATH, "--setenv", "HOME", home,
                  "--setenv", "LANG", "C.UTF-8", "--setenv", "TMPDIR", "/tmp",
                  "--setenv", "USER", "sandbox"]
        for name, value in env.items():
            chain += ["--setenv", name, value]
        # The root itself (a tmpfs bwrap made) is read-only too; /tmp and the mount are not.
        return [*chain, "--remount-ro", "/", "--", *argv]


class _Capped:
    """Keeps the first `limit` bytes of a stream and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        self.dropped += max(0, len(chunk) - max(room, 0))

    def text(self) -> str:
        text = self.data.decode("utf-8", "replace")
        if self.dropped:
            text += f"\n[output truncated: {self.dropped} more bytes not shown]"
        return text


async def _collect(proc: asyncio.subprocess.Process, limits: Limits) -> RunResult:
    out, err = _Capped(limits.max_output_bytes), _Capped(limits.max_output_bytes)

    async def pump(stream: asyncio.StreamReader | None, sink: _Capped) -> None:
        assert stream is not None
        while chunk := await stream.read(65536):
            sink.feed(chunk)

    timed_out = False
    try:
        async with asyncio.timeout(limits.timeout_s):
            await asyncio.gather(pump(proc.stdout, out), pump(proc.stderr, err), proc.wait())
    except TimeoutError:
        timed_out = True
    finally:
        if proc.returncode is None:
            # bwrap's children die with it (--die-with-parent, then the pid namespace).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.shield(proc.wait())
    code = proc.returncode if proc.returncode is not None else -signal.SIGKILL
    return RunResult(stdout=out.text(), stderr=err.text(), return_code=code,
                     timed_out=timed_out, truncated=bool(out.dropped or err.dropped))


def _memfd(data: bytes) -> int:
    fd = os.memfd_create("sandbox-file", 0)  # not CLOEXEC: bwrap reads it after exec
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        os.close(fd)
        raise
    return fd


async def _output(argv: Sequence[str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL)
    out, _ = await asyncio.wait_for(proc.communicate(), _SELF_TEST_TIMEOUT_S)
    return out.decode("utf-8", "replace")


def _version(text: str) -> tuple[int, ...]:
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(part) for part in match.groups(default="0")) if match else (0,)
