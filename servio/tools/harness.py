"""What the tests and benchmarks share to drive servio from outside, as an operator would: a
free loopback port, a command in its own process group (stopped with its children at the
end), and a file landed the way a sync tool lands one."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def process_group(
    args: list[str], env: dict[str, str], log: Path, cwd: Path | None = None, grace: float = 15
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `args` in a new session (its own process group), output to `log`; at the end,
    SIGTERM to the group, SIGKILL after `grace` seconds."""
    with log.open("w") as out:
        process = subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def land(source: Path, raw: Path, relative: str, name: str | None = None) -> str:
    """Copy `source/relative` into `raw` (as `name` in the same folder, if given) the way a
    sync tool does: written under an in-flight name, then renamed. Returns its raw path."""
    target = raw / Path(relative).parent / (name or Path(relative).name)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    shutil.copyfile(source / relative, partial)
    partial.rename(target)
    return target.relative_to(raw).as_posix()
