"""Starting a container as a local process: private mount namespace, bind mounts, own process group."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from .volumes import Mount, ensure_mountpoint

# What stands in for the image: the project checkout (sources of the editable install) and the venv.
KEEP = sorted({str(Path(__file__).resolve().parents[3]), sys.prefix})

# Runs (python -I -S: stdlib only, ~20ms) as the container's first process, in its own session:
# enters a private mount namespace, bind-mounts the volumes, makes / read-only if asked, then
# exec()s the container command in place, so the pid the kubelet holds is the container's.
# Volume sources are opened first and mounted from /proc/self/fd/N: a mount on, say, /tmp must
# not hide the source of the next volume when the kubelet's workdir is itself under /tmp.
LAUNCHER = r"""
import ctypes, json, os, sys
spec = json.loads(sys.argv[1])
argv = sys.argv[2:]
libc = ctypes.CDLL(None, use_errno=True)
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18
CLONE_NEWNS = 0x00020000

def fail(what, code=128):
    sys.stderr.write("loopback-kubelet: " + what + "\n")
    sys.stderr.flush()
    os._exit(code)

def mount(src, dst, flags):
    if libc.mount(src.encode() if src else None, dst.encode(), None, flags, None) != 0:
        fail("mount %s on %s: %s" % (src, dst, os.strerror(ctypes.get_errno())))

if libc.unshare(CLONE_NEWNS) != 0:
    fail("unshare(CLONE_NEWNS): " + os.strerror(ctypes.get_errno()))
mount(None, "/", MS_REC | MS_PRIVATE)
# Open every source before the first mount (fds of this namespace: a bind from a mount of another
# namespace is refused with EINVAL).
fds = []
keep = []
for path in spec.get("keep", []):
    try:
        keep.append((path, os.open(path, os.O_PATH | os.O_CLOEXEC)))
    except OSError:
        pass
for m in spec["mounts"]:
    try:
        fds.append(os.open(m["source"], os.O_PATH | os.O_CLOEXEC))
    except OSError as e:
        fail("volume source %s: %s" % (m["source"], e))
for fd, m in zip(fds, spec["mounts"]):
    mount("/proc/self/fd/%d" % fd, m["target"], MS_BIND | MS_REC)
    if m["ro"]:
        mount(None, m["target"], MS_REMOUNT | MS_BIND | MS_RDONLY)
for fd in fds:
    os.close(fd)
# The "image" is the project's checkout and venv on this host: a volume mounted over one of their
# parents (an emptyDir on /tmp, with the checkout under /tmp) must not hide them. Put them back.
for path, fd in keep:
    try:
        seen, want = os.stat(path), os.fstat(fd)
        hidden = (seen.st_dev, seen.st_ino) != (want.st_dev, want.st_ino)
    except OSError:
        hidden = True
    if hidden:
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            fail("cannot restore %s under a volume: %s" % (path, e))
        mount("/proc/self/fd/%d" % fd, path, MS_BIND | MS_REC)
        mount(None, path, MS_REMOUNT | MS_BIND | MS_RDONLY)
    os.close(fd)
if spec["ro_root"]:
    # Only the root mount turns read-only: the bind mounts above are mounts of their own and
    # keep their flags (what readOnlyRootFilesystem + emptyDir volumes mean in Kubernetes).
    mount(None, "/", MS_REMOUNT | MS_BIND | MS_RDONLY)
try:
    os.chdir(spec["cwd"])
except OSError as e:
    fail("workingDir %s: %s" % (spec["cwd"], e))
try:
    os.execvpe(argv[0], argv, os.environ)
except OSError as e:
    fail("exec %s: %s" % (argv[0], e), 127 if isinstance(e, FileNotFoundError) else 126)
"""


def launch(
    argv: Sequence[str],
    env: Mapping[str, str],
    mounts: Sequence[Mount],
    read_only_root: bool,
    working_dir: str,
    log: Path,
) -> subprocess.Popen[bytes]:
    """Start the container process (its own session/process group); output appended to `log`."""
    specs = []
    # Parents before children, so a nested mountPath lands on the right filesystem.
    for m in sorted(mounts, key=lambda m: len(Path(m.target).parts)):
        ensure_mountpoint(m.target, m.source.is_dir())
        specs.append({"source": str(m.source), "target": m.target, "ro": m.read_only})
    spec = {"mounts": specs, "ro_root": read_only_root, "cwd": working_dir, "keep": KEEP}
    full = [sys.executable, "-I", "-S", "-c", LAUNCHER, json.dumps(spec), *argv]
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
