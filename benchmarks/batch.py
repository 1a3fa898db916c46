"""Batch throughput: the same batch graded with 1 and 2 local workers and through Ray, in one run.

    python benchmarks/batch.py [--submissions 8] [--sandbox local] [--ray-cpus 2] [--no-ray]

The batch: copies of the reference solution (folders and zips) and seeded-bug variants
(tests/seeded_bugs.py), all smoke profile, one fixed --seed so that every run computes the same
grades (checked: the three gradebooks must agree). Each run grades into a fresh output folder.
The Ray run starts its own cluster on loopback (grader.batch.ray_local) after the local runs, so
its idle daemons do not slow them; the cluster's start-up is reported apart and not counted, as
a TA's cluster is already running; the driver's connection and the workers' start are counted.

Targets on a 2-core machine: 2 workers >= 1.7x one worker; Ray within 15% of the local pool.
Each line also says how much CPU the batch got and how much the machine's other processes took
(on a shared machine the second number explains the first).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from grader.batch import grade_batch  # noqa: E402
from grader.batch.worker import available_cpus  # noqa: E402
from grader.pipeline import GradeOptions  # noqa: E402
from tests.seeded_bugs import BUGS, SOLUTION_DIR, make_buggy_notebook  # noqa: E402


def build_batch(folder: Path, count: int) -> list[str]:
    """`count` submissions: every third a seeded bug, every other one zipped."""
    folder.mkdir(parents=True)
    bugs = sorted(BUGS)
    students = []
    for i in range(count):
        student = f"student{i:02d}"
        source = folder.parent / "sources" / student / "hw6"
        if i % 3 == 2:
            make_buggy_notebook(bugs[(i // 3) % len(bugs)], source)
        else:
            shutil.copytree(SOLUTION_DIR, source)
        if i % 2:
            with zipfile.ZipFile(folder / f"{student}.zip", "w", zipfile.ZIP_DEFLATED) as zf:
                for p in sorted(source.rglob("*")):
                    zf.write(p, Path("hw6") / p.relative_to(source))
        else:
            shutil.copytree(source, folder / student)
        students.append(student)
    return students


class CpuMeter:
    """CPU seconds used by this benchmark (every process it starts) and by the rest of the
    machine, so that a shared machine's load shows next to the rates. Ours comes from a cgroup-v1
    cpuacct group that this process joins (root, cgroup v1); without one only the machine's total
    is known."""

    ROOT = Path("/sys/fs/cgroup/cpuacct")

    def __init__(self) -> None:
        self.group: Path | None = None
        try:
            group = self.ROOT / f"grader-bench-{os.getpid()}"
            group.mkdir()
            (group / "cgroup.procs").write_text(str(os.getpid()))
            self.group = group
        except OSError:
            self.group = None

    def ours_s(self) -> float | None:
        return int((self.group / "cpuacct.usage").read_text()) / 1e9 if self.group else None

    @staticmethod
    def machine_busy_s() -> float:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        if self.group is not None:
            (self.ROOT / "cgroup.procs").write_text(str(os.getpid()))
            for pid in (self.group / "cgroup.procs").read_text().split():
                try:  # a straggler of ours (there should be none): back to the root group
                    (self.ROOT / "cgroup.procs").write_text(pid)
                except OSError:
                    pass
            try:
                self.group.rmdir()
            except OSError:
                pass


def timed_batch(meter: CpuMeter, label: str, inp: Path, out: Path, **kwargs) -> tuple[float, dict]:
    ours0, busy0 = meter.ours_s(), meter.machine_busy_s()
    started = time.perf_counter()
    summary = grade_batch(inp, out, **kwargs)
    wall_s = time.perf_counter() - started
    ours1, busy1 = meter.ours_s(), meter.machine_busy_s()
    if summary.counts["error"] or summary.counts["rejected"]:
        bad = [(r.student, r.status, r.reason) for r in summary.rows if r.status != "graded"]
        raise SystemExit(f"{label}: not every submission was graded: {bad}")
    scores = {r.student: (r.status, r.score, r.bonus) for r in summary.rows}
    rate = len(summary.rows) / wall_s * 60
    cpus = len(available_cpus())
    busy = busy1 - busy0
    if ours0 is not None:
        ours = ours1 - ours0
        load = (f"CPU: the batch {ours:5.1f} s ({ours / wall_s:.2f} cores), other processes "
                f"{max(0.0, busy - ours):5.1f} s ({max(0.0, busy - ours) / wall_s:.2f} cores) of {cpus}")
    else:
        load = f"CPU: machine busy {busy / wall_s:.2f} of {cpus} cores"
    print(f"{label:<18}: {wall_s:6.1f} s  {rate:5.2f} submissions/min   {load}", flush=True)
    return rate, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=8)
    parser.add_argument("--sandbox", default="local")
    parser.add_argument("--ray-cpus", type=int, default=2)
    parser.add_argument("--no-ray", action="store_true", help="only the local pool")
    args = parser.parse_args()
    meter = CpuMeter()
    try:
        run(args, meter)
    finally:
        meter.close()


def run(args: argparse.Namespace, meter: CpuMeter) -> None:
    options = GradeOptions(sandbox=args.sandbox, cell_timeout_s=120, timeout_s=600, memory_mb=4096, seed=2024)
    print(f"machine: {len(available_cpus())} CPUs available; batch of {args.submissions} smoke submissions, "
          f"sandbox {args.sandbox}", flush=True)
    with tempfile.TemporaryDirectory(prefix="grader-bench-batch-") as tmp:
        scratch = Path(tmp)
        inp = scratch / "in"
        build_batch(inp, args.submissions)
        one, scores_one = timed_batch(meter, "local, 1 worker", inp, scratch / "out-1", workers=1, options=options)
        two, scores_two = timed_batch(meter, "local, 2 workers", inp, scratch / "out-2", workers=2, options=options)
        ray_rate = None
        if not args.no_ray:
            from grader.batch.ray_local import LoopbackRayCluster

            started = time.perf_counter()
            with LoopbackRayCluster(num_cpus=args.ray_cpus) as cluster:
                print(f"ray cluster start : {time.perf_counter() - started:6.1f} s (not counted; "
                      f"{args.ray_cpus} CPUs on {cluster.address})", flush=True)
                time.sleep(3)  # let its daemons settle
                ray_rate, scores_ray = timed_batch(meter, f"ray, {args.ray_cpus} CPUs", inp, scratch / "out-ray",
                                                   engine="ray", ray_address=cluster.address, options=options)
            if scores_ray != scores_two:
                raise SystemExit(f"Ray and local grades differ: {scores_ray} vs {scores_two}")
        if scores_one != scores_two:
            raise SystemExit(f"1 and 2 workers graded differently: {scores_one} vs {scores_two}")
    print(f"ratio 2 workers / 1 worker : {two / one:.2f}x  (target >= 1.7)")
    if ray_rate is not None:
        print(f"ratio ray / 2 workers      : {ray_rate / two:.2f}   (target >= 0.85: within 15%)")


if __name__ == "__main__":
    main()
