"""Starting a container as a local process: private mount namespace, bind mounts, own process group."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from .volumes import Mount, ensure_mountpoint

UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"
MOUNT = shutil.which("mount") or "/usr/bin/mount"
SH = shutil.which("sh") or "/bin/sh"


def setup_script(mounts: Sequence[Mount], read_only_root: bool, working_dir: str) -> str:
    """Shell run inside the new mount namespace before exec'ing the container command."""
    lines = ["set -e"]
    # Parents before children, so a nested mountPath lands on the right filesystem.
    for m in sorted(mounts, key=lambda m: len(Path(m.target).parts)):
        src, dst = shlex.quote(str(m.source)), shlex.quote(m.target)
        lines.append(f"{MOUNT} --bind {src} {dst}")
        if m.read_only:
            lines.append(f"{MOUNT} -o remount,bind,ro {dst}")
    if read_only_root:
        # Only the root mount turns read-only; the bind mounts above are separate mounts and
        # keep their own flags (what readOnlyRootFilesystem + emptyDir means in Kubernetes).
        lines.append(f"{MOUNT} -o remount,bind,ro /")
    lines.append(f"cd {shlex.quote(working_dir)}")
    lines.append("unset OLDPWD")
    lines.append('exec "$@"')
    return "\n".join(lines)


def launch(
    argv: Sequence[str],
    env: Mapping[str, str],
    mounts: Sequence[Mount],
    read_only_root: bool,
    working_dir: str,
    log: Path,
) -> subprocess.Popen[bytes]:
    """Start the container process (its own session/process group); output appended to `log`.

    unshare(1) without --fork execs in place, and so does sh's `exec`: the returned pid is the
    container's main process, and its exit status is the container's exit code.
    """
    for m in mounts:
        ensure_mountpoint(m.target, m.source.is_dir())
    script = setup_script(mounts, read_only_root, working_dir)
    full = [UNSHARE, "--mount", "--propagation", "private", "--", SH, "-c", script, "container",
            *argv]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            full,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd="/",
            start_new_session=True,
            close_fds=True,
        )
