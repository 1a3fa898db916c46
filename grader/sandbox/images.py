"""Building the sandbox images (one per course, reused across submissions and assignments).

- `cuda`: the production image for GPU runners, FROM a CUDA PyTorch image (needs a registry).
- `cpu`: buildable on a machine with no registry (CI): a Debian base made by `debootstrap` and
  imported, torch from the CPU wheel `pip download` finds (on disk here), the rest from PyPI.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from grader.errors import SandboxUnavailable, UsageError

IMAGES_DIR = Path(__file__).with_name("images")
BASE_TAG = "grader-debian:bookworm"
TORCH_PIN = "torch==2.13.0"
CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


def _say(progress: Callable[[str], None] | None, message: str) -> None:
    if progress:
        progress(message)


def ensure_debian_base(client, *, progress=None, suite: str = "bookworm") -> str:
    """The imported debootstrap base (made once per engine; ~30-100 s)."""
    import docker

    try:
        client.images.get(BASE_TAG)
        return BASE_TAG
    except docker.errors.ImageNotFound:
        pass
    if not shutil.which("debootstrap"):
        raise SandboxUnavailable("building the CPU image needs debootstrap: apt-get install debootstrap")
    with tempfile.TemporaryDirectory(prefix="grader-rootfs-") as tmp:
        rootfs, archive = Path(tmp) / "rootfs", Path(tmp) / "rootfs.tar"
        _say(progress, f"debootstrap {suite} (minbase + python3)")
        subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
                        suite, str(rootfs)], check=True, capture_output=True)
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(archive), "."], check=True)
        _say(progress, f"importing {BASE_TAG}")
        repository, tag = BASE_TAG.split(":")
        client.api.import_image(src=str(archive), repository=repository, tag=tag)
    return BASE_TAG


def _context(kind: str, target: Path) -> str:
    shutil.copy(IMAGES_DIR / "requirements.txt", target / "requirements.txt")
    dockerfile = f"Dockerfile.{kind}"
    shutil.copy(IMAGES_DIR / dockerfile, target / dockerfile)
    if kind == "cpu":
        bundle = next((Path(p) for p in CA_BUNDLES if Path(p).is_file()), None)
        if bundle is None:
            raise SandboxUnavailable("no CA bundle found on this machine for pip inside the build")
        shutil.copy(bundle, target / "ca-certificates.crt")
        (target / "wheels").mkdir()
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", TORCH_PIN, "--no-deps",
                        "--only-binary=:all:", "-d", str(target / "wheels")], check=True)
    return dockerfile


def build_image(client, kind: str = "cpu", tag: str | None = None, *, progress=None) -> str:
    """Build the sandbox image and return its tag."""
    import docker

    if kind not in ("cpu", "cuda"):
        raise UsageError(f"unknown image kind {kind!r}: cpu or cuda")
    tag = tag or f"grader-sandbox:{kind}"
    buildargs = {"BASE": ensure_debian_base(client, progress=progress)} if kind == "cpu" else {}
    with tempfile.TemporaryDirectory(prefix="grader-image-") as tmp:
        dockerfile = _context(kind, Path(tmp))
        _say(progress, f"building {tag}")
        try:
            client.images.build(path=tmp, dockerfile=dockerfile, tag=tag, buildargs=buildargs,
                                network_mode="host", rm=True, forcerm=True)
        except docker.errors.BuildError as exc:
            log = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)
            raise SandboxUnavailable(f"building {tag} failed: {exc.msg}\n{log[-3000:]}") from None
    return tag
