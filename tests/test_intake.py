"""Intake: zips, folders and notebooks into a private working copy (all built here, in tmp_path)."""

from __future__ import annotations

import json
import os
import struct
import time
import unicodedata
import zipfile
import zlib
from pathlib import Path

import pytest

from grader.errors import SubmissionRejected, UnsafeArchive, UsageError
from grader.intake import Deliverable, IntakeLimits, Submission, intake

NB = "self_attention_optimized.ipynb"
DIRS = ("performance_benchmark", "masking_techniques")


def notebook_bytes(source: str = "print(1)") -> bytes:
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
          "cells": [{"id": "c1", "cell_type": "code", "metadata": {}, "source": source, "outputs": [],
                     "execution_count": None}]}
    return json.dumps(nb, indent=1).encode()


def full_tree(prefix: str = "", nb_name: str = NB) -> dict[str, bytes]:
    return {
        f"{prefix}{nb_name}": notebook_bytes(),
        f"{prefix}performance_benchmark/results.csv": b"t,ms\n1,2\n",
        f"{prefix}performance_benchmark/plot.png": b"\x89PNG fake",
        f"{prefix}masking_techniques/notes.md": "마스킹 노트\n".encode(),
    }


def make_zip(path: Path, files: dict[str, bytes], *, dirs: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for d in dirs:
            zf.writestr(d if d.endswith("/") else d + "/", b"")
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def make_folder(path: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        p = path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return path


# A raw zip writer: full control over name bytes, flags, declared sizes, modes.
_LOCAL = struct.Struct("<4s2B4HL2L2H")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_END = struct.Struct("<4s4H2LH")


def raw_entry(name: bytes, data: bytes, *, method: int = zipfile.ZIP_DEFLATED, flags: int = 0,
              size: int | None = None, crc: int | None = None, mode: int = 0o100644,
              compressed: bytes | None = None, extra: bytes = b"") -> dict:
    if compressed is None:
        if method == zipfile.ZIP_DEFLATED:
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            compressed = c.compress(data) + c.flush()
        else:
            compressed = data
    return {"name": name, "compressed": compressed, "method": method, "flags": flags,
            "size": len(data) if size is None else size,
            "crc": zlib.crc32(data) if crc is None else crc, "mode": mode, "extra": extra}


def write_raw_zip(path: Path, entries: list[dict]) -> Path:
    out = bytearray()
    central = bytearray()
    for e in entries:
        offset = len(out)
        out += _LOCAL.pack(b"PK\x03\x04", 20, 0, e["flags"], e["method"], 0, 0x21, e["crc"],
                           len(e["compressed"]), e["size"], len(e["name"]), len(e["extra"]))
        out += e["name"] + e["extra"] + e["compressed"]
        central += _CENTRAL.pack(b"PK\x01\x02", 20, 3, 20, 0, e["flags"], e["method"], 0, 0x21,
                                 e["crc"], len(e["compressed"]), e["size"], len(e["name"]), len(e["extra"]),
                                 0, 0, 0, e["mode"] << 16, offset)
        central += e["name"] + e["extra"]
    cd_offset = len(out)
    out += central
    out += _END.pack(b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), cd_offset, 0)
    path.write_bytes(bytes(out))
    return path


def tree(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    d = tmp_path / "work" / "dest"
    d.mkdir(parents=True)
    return d


def by_name(sub: Submission) -> dict[str, Deliverable]:
    return {d.name: d for d in sub.deliverables}


# ------------------------------------------------------------------------------------- good input


def test_good_zip(tmp_path, dest):
    src = make_zip(tmp_path / "sub.zip", full_tree())
    before = src.read_bytes()
    sub = intake(src, dest)
    assert sub.assignment.id == "w6-self-attention"
    assert sub.root == dest.resolve()
    assert sub.notebook == dest.resolve() / NB
    assert sub.source == src
    assert src.read_bytes() == before
    assert len(sub.sha256) == 64
    d = by_name(sub)
    assert list(d) == [NB, "performance_benchmark/", "masking_techniques/"]
    assert d[NB] == Deliverable(NB, "notebook", True, f"found at {NB}")
    assert d["performance_benchmark/"] == Deliverable("performance_benchmark/", "folder", True, "2 files")
    assert d["masking_techniques/"].detail == "1 file"
    assert (dest / "masking_techniques/notes.md").read_text() == "마스킹 노트\n"
    assert sub.notes == []


def test_wrapped_folder(tmp_path, dest):
    sub = intake(make_zip(tmp_path / "s.zip", full_tree("hw/"), dirs=("hw/",)), dest)
    assert sub.root == dest.resolve() / "hw"
    assert sub.notebook == sub.root / NB
    assert "unwrapped folder hw/" in sub.notes
    assert all(d.present for d in sub.deliverables)


def test_double_wrapped(tmp_path, dest):
    sub = intake(make_zip(tmp_path / "s.zip", full_tree("outer/hw6/")), dest)
    assert sub.root == dest.resolve() / "outer" / "hw6"
    assert "unwrapped folder outer/hw6/" in sub.notes
    assert by_name(sub)[NB].detail == f"found at outer/hw6/{NB}"


def test_korean_folder_with_utf8_flag(tmp_path, dest):
    src = make_zip(tmp_path / "s.zip", full_tree("과제6/"))
    with zipfile.ZipFile(src) as zf:
        assert all(i.flag_bits & 0x800 for i in zf.infolist())
    sub = intake(src, dest)
    assert sub.root == dest.resolve() / "과제6"
    assert "unwrapped folder 과제6/" in sub.notes


@pytest.mark.parametrize("encoding", ["utf-8", "cp949"])
def test_korean_folder_without_utf8_flag(tmp_path, dest, encoding):
    files = full_tree("과제6/")
    entries = [raw_entry(name.encode(encoding), data, flags=0) for name, data in files.items()]
    src = write_raw_zip(tmp_path / "s.zip", entries)
    with zipfile.ZipFile(src) as zf:  # what Python alone would make of it: cp437 mojibake
        assert not zf.infolist()[0].filename.startswith("과제6")
    sub = intake(src, dest)
    assert sub.root == dest.resolve() / "과제6"
    assert tree(dest) >= {"과제6", f"과제6/{NB}", "과제6/performance_benchmark/results.csv"}
    assert all(d.present for d in sub.deliverables)
    if encoding == "cp949":
        assert "file names were decoded as cp949 (the zip did not declare an encoding)" in sub.notes


def test_info_zip_unicode_path_extra_field(tmp_path, dest):
    # Legacy name bytes in an unknown code page, the real name in the 0x7075 extra field.
    entries = []
    for name, data in full_tree("과제6/").items():
        legacy = name.replace("과제6", "\xff\xfe6").encode("latin-1")
        body = b"\x01" + struct.pack("<L", zlib.crc32(legacy)) + name.encode()
        extra = struct.pack("<HH", 0x7075, len(body)) + body
        entries.append(raw_entry(legacy, data, extra=extra))
    sub = intake(write_raw_zip(tmp_path / "s.zip", entries), dest)
    assert sub.root == dest.resolve() / "과제6"


def test_nfd_names_are_normalised(tmp_path, dest):
    nfd = unicodedata.normalize("NFD", "과제6")
    assert nfd != "과제6"
    sub = intake(make_zip(tmp_path / "s.zip", full_tree(f"{nfd}/")), dest)
    assert sub.root == dest.resolve() / "과제6"
    assert [p.name for p in dest.iterdir()] == ["과제6"]


def test_macosx_junk_ignored(tmp_path, dest):
    files = full_tree("hw/")
    files.update({"__MACOSX/hw/._self_attention_optimized.ipynb": b"\x00\x05\x16\x07junk",
                  "hw/.DS_Store": b"junk", "hw/.ipynb_checkpoints/x-checkpoint.ipynb": b"{}",
                  "hw/__pycache__/m.cpython-311.pyc": b"junk"})
    sub = intake(make_zip(tmp_path / "s.zip", files), dest)
    assert tree(dest) == {"hw", f"hw/{NB}", "hw/performance_benchmark", "hw/masking_techniques",
                          "hw/performance_benchmark/results.csv", "hw/performance_benchmark/plot.png",
                          "hw/masking_techniques/notes.md"}
    assert sub.notes[:4] == ["ignored __MACOSX/ (1 entry)", "ignored .DS_Store (1 entry)",
                             "ignored .ipynb_checkpoints/ (1 entry)", "ignored __pycache__/ (1 entry)"]


# --------------------------------------------------------------------------------- unsafe archives


@pytest.mark.parametrize("bad, message", [
    ("../evil.py", "the zip entry ../evil.py points outside the archive (..)"),
    ("hw/../../evil.py", "the zip entry hw/../../evil.py points outside the archive (..)"),
    ("/abs.py", "the zip entry /abs.py has an absolute path"),
    ("C:/evil.py", "the zip entry C:/evil.py names a drive (C:)"),
    ("..\\evil.py", "points outside the archive (..)"),
])
def test_zip_slip_refused_and_nothing_written(tmp_path, dest, bad, message):
    files = full_tree()
    files[bad] = b"import os"
    src = make_zip(tmp_path / "s.zip", files)
    with pytest.raises(UnsafeArchive) as err:
        intake(src, dest)
    assert message in str(err.value)
    assert "zip your assignment folder itself" in str(err.value)
    assert list(dest.iterdir()) == []                      # checked before anything is written
    assert tree(tmp_path / "work") == {"dest"}
    assert not (tmp_path / "evil.py").exists() and not Path("/abs.py").exists()


def test_nul_in_name_refused(tmp_path, dest):
    src = write_raw_zip(tmp_path / "s.zip", [raw_entry(NB.encode(), notebook_bytes()),
                                             raw_entry(b"evil\x00.py", b"x")])
    with pytest.raises(UnsafeArchive, match="has a NUL character in its name"):
        intake(src, dest)
    assert list(dest.iterdir()) == []


def test_symlink_entry_refused(tmp_path, dest):
    files = full_tree()
    src = make_zip(tmp_path / "s.zip", files)
    with zipfile.ZipFile(src, "a") as zf:
        link = zipfile.ZipInfo("performance_benchmark/passwd")
        link.create_system = 3
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(UnsafeArchive, match="the zip entry performance_benchmark/passwd is a symbolic link"):
        intake(src, dest)
    assert list(dest.iterdir()) == []


def zero_bomb(gib: int = 1) -> bytes:
    """Raw deflate of `gib` GiB of zeros (~1 MB), built from one compressed MiB repeated."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(2**20)) + c.flush(zlib.Z_FULL_FLUSH)
    final = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    return block * (1024 * gib) + final


def test_zip_bomb_refused_fast(tmp_path, dest):
    bomb = zero_bomb()
    entries = [raw_entry(NB.encode(), notebook_bytes()),
               raw_entry(b"performance_benchmark/zeros.bin", b"", compressed=bomb, size=2**30, crc=0)]
    src = write_raw_zip(tmp_path / "bomb.zip", entries)
    assert src.stat().st_size < 2 * 2**20
    start = time.perf_counter()
    with pytest.raises(UnsafeArchive) as err:
        intake(src, dest, limits=IntakeLimits(max_file_bytes=2**31, max_total_bytes=2**31))
    assert time.perf_counter() - start < 2
    assert "performance_benchmark/zeros.bin in bomb.zip would unpack from 1.0 MB to 1.0 GB" in str(err.value)
    assert "looks like a zip bomb and was not extracted" in str(err.value)
    assert list(dest.iterdir()) == []


def test_many_small_entries_over_total_refused(tmp_path, dest):
    entries = [raw_entry(NB.encode(), notebook_bytes())]
    one_mib = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = one_mib.compress(bytes(2**20 - 1)) + one_mib.flush()
    entries += [raw_entry(f"d/{i}.bin".encode(), b"", compressed=chunk, size=2**20 - 1, crc=0)
                for i in range(300)]
    src = write_raw_zip(tmp_path / "s.zip", entries)
    with pytest.raises(UnsafeArchive, match=r"s.zip would unpack from .* to 300.0 MB: this looks like a zip bomb"):
        intake(src, dest)
    assert list(dest.iterdir()) == []


def test_declared_size_lie_caught(tmp_path, dest):
    # Declares 100 bytes (ratio check passes) but inflates to 1 GiB: stopped by the byte counter.
    entries = [raw_entry(NB.encode(), notebook_bytes()),
               raw_entry(b"performance_benchmark/lie.bin", b"", compressed=zero_bomb(), size=100, crc=0)]
    src = write_raw_zip(tmp_path / "s.zip", entries)
    start = time.perf_counter()
    with pytest.raises(UnsafeArchive, match="performance_benchmark/lie.bin in s.zip declares 100 bytes but "
                                            "unpacks to more: the archive lies about its sizes"):
        intake(src, dest)
    assert time.perf_counter() - start < 2
    assert list(dest.iterdir()) == []                      # partial output removed


def test_stored_size_lie_caught(tmp_path, dest):
    entries = [raw_entry(NB.encode(), notebook_bytes(), method=zipfile.ZIP_STORED),
               raw_entry(b"x.bin", bytes(5000), method=zipfile.ZIP_STORED, size=10)]
    with pytest.raises(UnsafeArchive, match="x.bin in s.zip declares 10 bytes but unpacks to more"):
        intake(write_raw_zip(tmp_path / "s.zip", entries), dest)


def test_too_many_entries(tmp_path, dest):
    files = full_tree()
    files.update({f"junk/{i}.txt": b"x" for i in range(30)})
    with pytest.raises(SubmissionRejected, match=r"the submission holds 34 files and folders, more than the "
                                                 r"limit of 20: submit only your assignment folder"):
        intake(make_zip(tmp_path / "s.zip", files), dest, limits=IntakeLimits(max_entries=20))


def test_file_too_big(tmp_path, dest):
    files = full_tree()
    files["data/big.bin"] = os.urandom(5000)
    with pytest.raises(SubmissionRejected, match=r"the file data/big.bin is 4.9 KB, more than the limit of "
                                                 r"4.0 KB per file: leave out data sets"):
        intake(make_zip(tmp_path / "s.zip", files), dest, limits=IntakeLimits(max_file_bytes=4096))


def test_total_too_big_is_not_a_bomb(tmp_path, dest):
    files = full_tree()
    files.update({f"data/{i}.bin": os.urandom(3000) for i in range(4)})
    with pytest.raises(SubmissionRejected) as err:
        intake(make_zip(tmp_path / "s.zip", files), dest, limits=IntakeLimits(max_total_bytes=10_000))
    assert not isinstance(err.value, UnsafeArchive)
    assert "the submission unpacks to" in str(err.value) and "more than the limit of 9.8 KB" in str(err.value)


# -------------------------------------------------------------------------------- broken archives


def test_not_a_zip(tmp_path, dest):
    src = tmp_path / "s.zip"
    src.write_bytes(b"Rar!\x1a\x07\x00 this is a rar archive")
    with pytest.raises(SubmissionRejected, match=r"s.zip is not a zip file \(.*\): compress your assignment "
                                                 r"folder as .zip \(not .rar, .7z or .tar\)"):
        intake(src, dest)


def test_truncated_zip(tmp_path, dest):
    src = make_zip(tmp_path / "s.zip", full_tree())
    src.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(SubmissionRejected, match=r"s.zip looks like a zip but is damaged or incomplete .*"
                                                 r"create the zip again"):
        intake(src, dest)


def test_bad_crc(tmp_path, dest):
    entries = [raw_entry(NB.encode(), notebook_bytes()),
               raw_entry(b"performance_benchmark/r.csv", b"a,b\n1,2\n", crc=12345)]
    with pytest.raises(SubmissionRejected, match=r"s.zip is damaged \(performance_benchmark/r.csv fails its "
                                                 r"checksum\): create the zip again"):
        intake(write_raw_zip(tmp_path / "s.zip", entries), dest)
    assert list(dest.iterdir()) == []


def test_empty_zip_file_and_zip_without_files(tmp_path, dest):
    empty = tmp_path / "empty.zip"
    empty.write_bytes(b"")
    with pytest.raises(SubmissionRejected, match=r"empty.zip is empty \(0 bytes\): zip your assignment folder"):
        intake(empty, dest)
    no_files = make_zip(tmp_path / "nofiles.zip", {}, dirs=("hw/", "hw/performance_benchmark/"))
    with pytest.raises(SubmissionRejected, match=r"nofiles.zip is empty \(no files\): zip your assignment "
                                                 r"folder with its notebook"):
        intake(no_files, dest)
    only_junk = make_zip(tmp_path / "junk.zip", {"__MACOSX/._x": b"j", ".DS_Store": b"j"})
    with pytest.raises(SubmissionRejected, match=r"junk.zip holds no files besides system metadata "
                                                 r"\(__MACOSX/, .DS_Store\)"):
        intake(only_junk, dest)


def test_encrypted_entry(tmp_path, dest):
    entries = [raw_entry(NB.encode(), notebook_bytes(), flags=0x1)]
    with pytest.raises(SubmissionRejected, match=f"{NB} in s.zip is password-protected: zip your folder again "
                                                 "without a password"):
        intake(write_raw_zip(tmp_path / "s.zip", entries), dest)


def test_unsupported_compression(tmp_path, dest):
    src = tmp_path / "s.zip"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_BZIP2) as zf:
        zf.writestr(NB, notebook_bytes())
    with pytest.raises(SubmissionRejected, match=f"{NB} in s.zip is compressed with bzip2, which the grader "
                                                 "does not read"):
        intake(src, dest)


def test_duplicate_entry(tmp_path, dest):
    entries = [raw_entry(NB.encode(), notebook_bytes()), raw_entry(NB.encode(), notebook_bytes("2"))]
    with pytest.raises(SubmissionRejected, match=f"the zip holds {NB} twice"):
        intake(write_raw_zip(tmp_path / "s.zip", entries), dest)


# ------------------------------------------------------------------------------------ the notebook


def test_broken_notebook_json(tmp_path, dest):
    files = full_tree("hw/")
    files[f"hw/{NB}"] = b'{\n "cells": [\n  {"cell_type": "code"\n  "source": "x"}\n ]\n}\n'
    with pytest.raises(SubmissionRejected, match=rf"the notebook hw/{NB} is not valid JSON \(line 4, column 3: "
                                                 r"Expecting ',' delimiter\): it was damaged"):
        intake(make_zip(tmp_path / "s.zip", files), dest)
    assert list(dest.iterdir()) == []


def test_old_nbformat_and_not_a_notebook(tmp_path, dest):
    files = full_tree()
    files[NB] = json.dumps({"nbformat": 3, "cells": []}).encode()
    with pytest.raises(SubmissionRejected, match=f"the notebook {NB} uses notebook format 3, older than 4"):
        intake(make_zip(tmp_path / "a.zip", files), dest)
    files[NB] = b"[1, 2]"
    with pytest.raises(SubmissionRejected, match=f"{NB} is JSON but not a Jupyter notebook"):
        intake(make_zip(tmp_path / "b.zip", files), dest)


@pytest.mark.parametrize("nb, aid", [("resnet_implementation.ipynb", "w5-resnet"),
                                     ("Transformer_Enc_Dec.ipynb", "w7-transformer")])
def test_assignment_detected(tmp_path, dest, nb, aid):
    sub = intake(make_zip(tmp_path / "s.zip", {f"hw/{nb}": notebook_bytes()}), dest)
    assert sub.assignment.id == aid
    assert sub.notebook.name == nb
    assert [d.present for d in sub.deliverables] == [True, False, False]


def test_several_assignments_detected(tmp_path, dest):
    files = {NB: notebook_bytes(), "multihead_analysis.ipynb": notebook_bytes()}
    with pytest.raises(SubmissionRejected, match=r"several assignments: multihead_analysis.ipynb \(w6-multihead\), "
                                                 rf"{NB} \(w6-self-attention\); .* --assignment ID"):
        intake(make_zip(tmp_path / "s.zip", files), dest)


def test_unknown_notebook_name_without_assignment(tmp_path, dest):
    with pytest.raises(SubmissionRejected, match=r"no notebook has an assignment's name \(found hw/mine.ipynb; "
                                                 r"expected one of resnet_implementation.ipynb, .*--assignment ID"):
        intake(make_zip(tmp_path / "s.zip", {"hw/mine.ipynb": notebook_bytes()}), dest)


def test_assignment_with_renamed_notebook(tmp_path, dest):
    sub = intake(make_zip(tmp_path / "s.zip", full_tree("hw/", nb_name="HW6_final.ipynb")), dest,
                 assignment="w6-self-attention")
    assert sub.notebook == dest.resolve() / "hw" / "HW6_final.ipynb"
    assert (f"expected {NB}, graded hw/HW6_final.ipynb: please keep the notebook name from the "
            "assignment sheet") in sub.notes
    assert by_name(sub)[NB].detail == f"graded hw/HW6_final.ipynb (expected the name {NB})"
    assert all(d.present for d in sub.deliverables)


def test_assignment_with_other_assignments_notebook(tmp_path, dest):
    src = make_zip(tmp_path / "s.zip", {"multihead_analysis.ipynb": notebook_bytes()})
    with pytest.raises(SubmissionRejected, match=f"expected {NB} for w6-self-attention but found "
                                                 "multihead_analysis.ipynb, the notebook of w6-multihead"):
        intake(src, dest, assignment="w6-self-attention")


def test_no_notebook(tmp_path, dest):
    src = make_zip(tmp_path / "s.zip", {"hw/performance_benchmark/r.csv": b"1", "hw/inner.zip": b"PK"})
    with pytest.raises(SubmissionRejected, match=rf"no notebook \(.ipynb\) found in the submission: expected {NB} "
                                                 r"\(the submission holds the zip hw/inner.zip"):
        intake(src, dest, assignment="w6-self-attention")


def test_unknown_and_ungradable_assignment(tmp_path, dest, monkeypatch):
    import dataclasses

    from grader.assignments.catalog import CATALOG

    src = make_zip(tmp_path / "s.zip", full_tree())
    with pytest.raises(UsageError, match=r"unknown assignment 'w6-selfattention': known assignments are "
                                         r"w5-resnet, w5-lstm, .*, w8-midterm"):
        intake(src, dest, assignment="w6-selfattention")
    # Every catalogued assignment has its notebook now (w8-midterm: report.ipynb): one without.
    monkeypatch.setitem(CATALOG, "w9-project", dataclasses.replace(CATALOG["w8-midterm"], id="w9-project",
                                                                    title="Final project", notebook=None))
    with pytest.raises(UsageError, match=r"w9-project \(Final project\) cannot be graded "
                                         r"automatically yet"):
        intake(src, dest, assignment="w9-project")
    assert list(dest.iterdir()) == []


# ---------------------------------------------------------------------------------- deliverables


def test_missing_and_empty_artifact_folders(tmp_path, dest):
    files = {f"hw/{NB}": notebook_bytes()}
    sub = intake(make_zip(tmp_path / "s.zip", files, dirs=("hw/masking_techniques/",)), dest)
    d = by_name(sub)
    assert d["performance_benchmark/"] == Deliverable(
        "performance_benchmark/", "folder", False,
        "missing: create the folder performance_benchmark/ next to the notebook")
    assert d["masking_techniques/"].present is False
    assert d["masking_techniques/"].detail.startswith("empty: put your results into masking_techniques/")


def test_artifact_folder_case_and_misplaced(tmp_path, dest):
    files = {f"hw/{NB}": notebook_bytes(), "hw/Performance_Benchmark/a.csv": b"1",
             "masking_techniques/b.md": b"x"}
    d = by_name(intake(make_zip(tmp_path / "s.zip", files), dest))
    assert d["performance_benchmark/"] == Deliverable("performance_benchmark/", "folder", True,
                                                      "1 file (folder named Performance_Benchmark/)")
    assert d["masking_techniques/"].present is False
    assert d["masking_techniques/"].detail == (f"missing next to the notebook: found masking_techniques/; "
                                               f"move it next to {NB}")


# ------------------------------------------------------------------------- notebook and folder input


def test_single_notebook_input(tmp_path, dest):
    src = tmp_path / NB
    src.write_bytes(notebook_bytes())
    sub = intake(src, dest)
    assert sub.root == dest.resolve() and sub.notebook == dest.resolve() / NB
    assert src.exists()
    assert [d.present for d in sub.deliverables] == [True, False, False]
    assert by_name(sub)["masking_techniques/"].detail == ("missing: create the folder masking_techniques/ "
                                                          "next to the notebook")
    assert "a single notebook was submitted" in sub.notes[0]


def test_folder_input(tmp_path, dest):
    src = make_folder(tmp_path / "hw6", full_tree())
    (src / ".DS_Store").write_bytes(b"junk")
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "x.pyc").write_bytes(b"junk")
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    os.symlink(secret, src / "performance_benchmark" / "leak.txt")
    os.symlink(src / "performance_benchmark" / "results.csv", src / "masking_techniques" / "copy.csv")
    sub = intake(src, dest)
    assert sub.root == dest.resolve()
    assert not any(p.is_symlink() for p in dest.rglob("*"))
    assert not (dest / "performance_benchmark" / "leak.txt").exists()
    assert (dest / "masking_techniques" / "copy.csv").read_bytes() == b"t,ms\n1,2\n"
    assert "skipped the link performance_benchmark/leak.txt (it points outside the submission)" in sub.notes
    assert "copied the link masking_techniques/copy.csv as a regular file" in sub.notes
    assert "ignored .DS_Store (1 entry)" in sub.notes and "ignored __pycache__/ (1 entry)" in sub.notes
    assert by_name(sub)["masking_techniques/"].detail == "2 files"
    assert (src / ".DS_Store").exists()                   # the original is untouched


def test_folder_input_limits(tmp_path, dest):
    src = make_folder(tmp_path / "hw6", full_tree())
    with pytest.raises(SubmissionRejected, match="more than the limit of 3: submit only your assignment folder"):
        intake(src, dest, limits=IntakeLimits(max_entries=3))
    with pytest.raises(UsageError, match="must not be inside the submission folder"):
        intake(src, src / "work")
    assert not (src / "work").exists()                    # the original is untouched


def test_sha256_same_for_zip_folder_and_wrapping(tmp_path):
    files = full_tree()
    a = intake(make_zip(tmp_path / "a.zip", files), tmp_path / "a")
    b = intake(make_folder(tmp_path / "hw6", files), tmp_path / "b")
    c = intake(make_zip(tmp_path / "c.zip", full_tree("wrap/hw/"), dirs=("wrap/",)), tmp_path / "c")
    assert a.sha256 == b.sha256 == c.sha256
    changed = dict(files)
    changed["masking_techniques/notes.md"] = b"other"
    d = intake(make_zip(tmp_path / "d.zip", changed), tmp_path / "d")
    assert d.sha256 != a.sha256


def test_dest_must_be_empty(tmp_path, dest):
    (dest / "x").write_text("mine")
    with pytest.raises(UsageError, match="must be empty"):
        intake(make_zip(tmp_path / "s.zip", full_tree()), dest)
    assert (dest / "x").read_text() == "mine"
