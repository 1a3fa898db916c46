"""Grading overhead: `grade` on the reference submission vs plain `papermill` on the same notebook.

    python benchmarks/overhead.py [--repeats 3] [--submission PATH]

Both run as fresh processes, as a TA would run them, interleaved so that machine noise hits both
alike; the medians and their ratio are printed (target: ratio <= 1.15). `grade` does strictly more
(sandbox, probe calls, reference values, checks, reports), so the ratio is the price of grading.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def timed(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--submission", type=Path, default=REPO / "reference" / "solutions" / "w6-self-attention")
    args = parser.parse_args()
    notebook = next(args.submission.glob("*.ipynb"))
    papermill_s, grade_s, sandbox_s = [], [], []
    with tempfile.TemporaryDirectory(prefix="grader-bench-") as tmp:
        scratch = Path(tmp)
        for i in range(args.repeats):
            work = scratch / f"pm-{i}"
            shutil.copytree(args.submission, work)
            papermill_s.append(timed([str(BIN / "papermill"), notebook.name, str(scratch / f"pm-{i}.ipynb"),
                                      "-p", "PROFILE", "smoke", "-k", "python3", "--language", "python", "--no-progress-bar"], cwd=work))
            out = scratch / f"grade-{i}"
            grade_s.append(timed([str(BIN / "grade"), str(args.submission), "--sandbox", "local", "--out", str(out), "-q"],
                                 cwd=scratch))
            result = json.loads((out / "result.json").read_text())
            sandbox_s.append(result["execution"]["duration_s"])
    docker_s, startup_s = _docker_timings(args)
    pm, gr = statistics.median(papermill_s), statistics.median(grade_s)
    print(f"submission        : {args.submission.relative_to(REPO) if args.submission.is_relative_to(REPO) else args.submission}")
    print(f"score             : {result['score']} / {result['max_score']} (+{result['bonus']} bonus), "
          f"sandbox isolation: {result['execution']['isolation']}")
    print(f"plain papermill   : median {pm:.2f} s  ({', '.join(f'{t:.2f}' for t in papermill_s)})")
    print(f"grade (whole CLI) : median {gr:.2f} s  ({', '.join(f'{t:.2f}' for t in grade_s)})")
    print(f"  of which sandbox: median {statistics.median(sandbox_s):.2f} s")
    print(f"ratio grade/papermill: {gr / pm:.2f}  (target <= 1.15)")
    if docker_s:
        dk = statistics.median(docker_s)
        print(f"docker container start-up (create+start+wait+remove of `true`): median "
              f"{statistics.median(startup_s):.2f} s")
        print(f"grade --sandbox docker: median {dk:.2f} s  ({', '.join(f'{t:.2f}' for t in docker_s)})")
        print(f"docker adds {dk - gr:+.2f} s per submission over the local sandbox (target < 1 s)")
    else:
        print("docker: skipped (no engine at DOCKER_HOST or no grader-sandbox image; see README)")


def _docker_timings(args) -> tuple[list[float], list[float]]:
    """Whole grades in the docker sandbox, and bare container start-ups, when an engine is there."""
    try:
        import docker

        client = docker.from_env()
        client.ping()
        image = os.environ.get("GRADER_DOCKER_IMAGE", "grader-sandbox:cpu")
        client.images.get(image)
    except Exception:  # noqa: BLE001 - no engine, no SDK or no image: the report says so
        return [], []
    startup_s, docker_s = [], []
    with tempfile.TemporaryDirectory(prefix="grader-bench-docker-") as tmp:
        for i in range(args.repeats):
            started = time.perf_counter()
            container = client.containers.run(image, ["true"], network_mode="none", detach=True)
            container.wait()
            container.remove(force=True)
            startup_s.append(time.perf_counter() - started)
            docker_s.append(timed([str(BIN / "grade"), str(args.submission), "--sandbox", "docker",
                                   "--out", str(Path(tmp) / f"d-{i}"), "-q"], cwd=Path(tmp)))
    return docker_s, startup_s


if __name__ == "__main__":
    main()
