"""Worker processes: CPUs to share under a cgroup quota, and readiness across workers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from modeldeploy_server.errors import ModelNotReady
from modeldeploy_server.workers import WorkerGroup, available_cpus

VISIBLE = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({}, VISIBLE),
        ({"cpu.max": "max 100000\n"}, VISIBLE),
        ({"cpu.max": "100000 100000\n"}, 1),
        ({"cpu.max": "50000 100000\n"}, 1),  # half a CPU still gets one thread
        ({"cpu.max": f"{150000 * VISIBLE} 100000\n"}, VISIBLE),  # never above what is visible
        ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, VISIBLE),
        ({"cpu/cpu.cfs_quota_us": "100000", "cpu/cpu.cfs_period_us": "100000"}, 1),
        ({"cpu.max": "garbage"}, VISIBLE),
    ],
)
def test_available_cpus_follows_the_quota(tmp_path: Path, files: dict[str, str], expected: int) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert available_cpus(tmp_path) == expected


def test_worker_group_counts_live_workers(tmp_path: Path) -> None:
    group = WorkerGroup(tmp_path / "ready", expected=2)
    with pytest.raises(ModelNotReady) as none:
        group.check()
    assert none.value.reason == "workers_loading"
    assert "0 of 2" in none.value.message
    group.mark_ready()
    (tmp_path / "ready" / "999999999").touch()  # dead
    (tmp_path / "ready" / "notes.txt").touch()  # not a pid
    assert group.ready_count() == 1
    (tmp_path / "ready" / str(os.getppid())).touch()
    group.check()
    group.mark_gone()
    assert group.ready_count() == 1
