"""Similarity report at class scale: 300 submissions, timed.

    python benchmarks/similarity.py [--students 300] [--seed 7] [--keep DIR]

Builds a batch folder as `grade batch` leaves it (OUT/<student>/{result.json, record.json,
executed.ipynb} and INPUT/<student>.zip with the submitted notebook, results.csv and two PNGs)
from the w6-self-attention student template, every student's five functions filled in with code
of their own (random programs over the torch idioms of the assignment: different statements,
names, constants and structure, as independent work is), their own answers, timings and plot. Then
it plants what the report must find: disguised code copies (every name changed, comments
rewritten, cells reordered), shared free-text answers, shared figures and copied timing tables.
Every student has the template's mask picture (common: not evidence).

It times `similarity_report` (reading, fingerprinting, comparing every pair, writing the CSV and
the HTML), says how much CPU the machine's other processes took meanwhile, and checks what was
found against what was planted. Target: under 2 minutes for 300 students on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from grader.similarity.core import similarity_report  # noqa: E402
from tests.similarity_cases import (ANSWER_TAGS, FUNCTIONS, _cell_source, _function_cell_index,  # noqa: E402
                                    mask_png, png, results_csv, template_notebook, write_student)

TORCH_CALLS = ["torch.exp", "torch.amax", "torch.sum", "torch.where", "torch.maximum", "torch.matmul",
               "torch.softmax", "torch.zeros_like", "torch.ones_like", "torch.isinf", "torch.tril", "torch.arange",
               "torch.logsumexp", "torch.einsum", "torch.clamp", "torch.full_like", "torch.cat", "torch.stack"]
METHODS = ["float", "transpose", "masked_fill", "sum", "max", "exp", "view", "reshape", "expand", "unsqueeze",
           "to", "clamp_min", "matmul", "new_zeros", "new_full", "size", "contiguous", "permute", "mean"]
WORDS = ("attention softmax maximum running sum chunk memory fp16 overflow exponent rescale key query value "
         "score mask batch sequence length time linear quadratic numerically stable block row column float32 "
         "accumulate subtract normalise factor exact online partial").split()
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "qu", "ex", "om", "ip", "ul", "ar", "en"]


def name(rng: random.Random, taken: set[str]) -> str:
    while True:
        candidate = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3))) + rng.choice(["", "_", "2", "s"])
        if candidate.isidentifier() and candidate not in taken and candidate not in ("as", "if", "in", "is", "or"):
            taken.add(candidate)
            return candidate


def expression(rng: random.Random, names: list[str], depth: int = 0) -> str:
    """A random torch-flavoured expression over `names`."""
    roll = rng.random()
    if depth >= 3 or roll < 0.25:
        return rng.choice(names) if rng.random() < 0.7 else str(rng.choice([0, 1, 2, -1, -2, 0.5, 1e-9, 128, 3.0]))
    if roll < 0.45:
        op = rng.choice(["+", "-", "*", "/", "@", "<", ">=", "&", "**"])
        return f"({expression(rng, names, depth + 1)} {op} {expression(rng, names, depth + 1)})"
    if roll < 0.7:
        args = ", ".join(expression(rng, names, depth + 1) for _ in range(rng.randint(1, 3)))
        extra = rng.choice(["", ", dim=-1", ", keepdim=True", ", dim=-1, keepdim=True", ", diagonal=1"])
        return f"{rng.choice(TORCH_CALLS)}({args}{extra})"
    if roll < 0.85:
        args = ", ".join(expression(rng, names, depth + 1) for _ in range(rng.randint(0, 2)))
        return f"{rng.choice(names)}.{rng.choice(METHODS)}({args})"
    return f"{rng.choice(names)}[..., {rng.choice(['', ':'])}{rng.randint(0, 4)}:{rng.choice(names)}]"


def body(rng: random.Random, params: list[str], indent: str = "    ") -> str:
    """A function body of random statements (assignments, ifs, loops, a helper call), then a return."""
    taken = set(params)
    names = list(params)
    lines = []
    for _ in range(rng.randint(8, 18)):
        kind = rng.random()
        if kind < 0.55 or len(names) < 2:
            target = name(rng, taken)
            lines.append(f"{indent}{target} = {expression(rng, names)}")
            names.append(target)
        elif kind < 0.75:
            lines.append(f"{indent}if {expression(rng, names)}:")
            lines.append(f"{indent}    {rng.choice(names)} = {expression(rng, names)}")
            if rng.random() < 0.4:
                lines.append(f"{indent}else:")
                lines.append(f"{indent}    {rng.choice(names)} = {expression(rng, names)}")
        elif kind < 0.92:
            loop = name(rng, taken)
            lines.append(f"{indent}for {loop} in range({rng.choice(names)}, {rng.choice(names)}, {rng.randint(1, 64)}):")
            inner = names + [loop]
            for _ in range(rng.randint(1, 3)):
                lines.append(f"{indent}    {rng.choice(names)} = {expression(rng, inner)}")
        else:
            lines.append(f"{indent}# {' '.join(rng.choice(WORDS) for _ in range(rng.randint(3, 8)))}")
    lines.append(f"{indent}return {expression(rng, names)}")
    return "\n".join(lines) + "\n"


PARAMS = {"padding_mask": ["lengths", "max_len"], "causal_mask": ["T"], "combine_masks": ["masks"],
          "scaled_dot_product_attention": ["q", "k", "v", "mask"], "chunked_attention": ["q", "k", "v", "mask", "chunk_size"]}


def own_notebook(rng: random.Random) -> dict:
    """The template with the five functions filled in by a random program of this student's."""
    notebook = template_notebook()
    for function in FUNCTIONS:
        index = _function_cell_index(notebook, function)
        source = _cell_source(notebook["cells"][index])
        own = body(rng, PARAMS[function])
        source = re.sub(r"(?m)^    raise NotImplementedError\(.*\)\n?", lambda m: own, source)
        if rng.random() < 0.3:  # a helper of their own before the function
            helper = name(rng, set())
            source = f"def {helper}(x, y):\n{body(rng, ['x', 'y'])}\n\n" + source
        notebook["cells"][index]["source"] = source
    return notebook


def answers(rng: random.Random) -> dict[str, str]:
    return {tag: " ".join(rng.choice(WORDS) for _ in range(rng.randint(25, 60))).capitalize() + "."
            for tag in ANSWER_TAGS}


def disguised(notebook: dict, rng: random.Random) -> dict:
    """A copy with every identifier the student chose renamed, comments rewritten, function cells reordered."""
    copy = json.loads(json.dumps(notebook))
    indices = [_function_cell_index(copy, f) for f in FUNCTIONS]
    keep = set(PARAMS) | {p for ps in PARAMS.values() for p in ps} | {"torch", "range", "def", "return", "for",
                                                                      "in", "if", "else", "x", "y", "dim", "keepdim",
                                                                      "diagonal", "True", "False", "None"}
    mapping: dict[str, str] = {}
    taken: set[str] = set(keep)
    for i in indices:
        source = _cell_source(copy["cells"][i])
        code = re.sub(r'"""[\s\S]*?"""|#.*', "", source)
        for ident in re.findall(r"(?<![.\w])([A-Za-z_]\w*)\s*=(?!=)", code) + re.findall(r"def (\w+)\(", code):
            if ident not in keep and ident not in mapping:
                mapping[ident] = name(rng, taken) + "_v"
        source = re.sub(r"(?m)#.*$", lambda m: "# " + " ".join(rng.choice(WORDS) for _ in range(4)), source)
        source = re.sub(r"\b(" + "|".join(map(re.escape, mapping)) + r")\b" if mapping else r"(?!x)x",
                        lambda m: mapping[m.group(1)], source)
        copy["cells"][i]["source"] = source
    cells = [copy["cells"][i] for i in indices]
    rng.shuffle(cells)
    for i, cell in zip(sorted(indices), cells):
        copy["cells"][i] = cell
    return copy


def build(root: Path, students: int, seed: int) -> dict:
    rng = random.Random(seed)
    batch, inputs = root / "batch-out", root / "submissions"
    batch.mkdir(parents=True)
    ids = [f"s{i:03d}" for i in range(students)]
    notebooks = {s: own_notebook(rng) for s in ids}
    words = {s: answers(rng) for s in ids}
    figures = {s: png(10_000 + i) for i, s in enumerate(ids)}
    timings = {s: results_csv(20_000 + i) for i, s in enumerate(ids)}
    picks = rng.sample(ids, 24)
    planted = {"code": [], "answer": [], "image": [], "numbers": []}
    for original, copier in zip(picks[0:12:2], picks[1:12:2]):
        notebooks[copier] = disguised(notebooks[original], rng)
        planted["code"].append(tuple(sorted((original, copier))))
    for a, b in zip(picks[12:16:2], picks[13:16:2]):
        words[b] = dict(words[b], **{ANSWER_TAGS[0]: words[a][ANSWER_TAGS[0]]})
        planted["answer"].append(tuple(sorted((a, b))))
    for a, b in zip(picks[16:20:2], picks[17:20:2]):
        figures[b] = figures[a]
        planted["image"].append(tuple(sorted((a, b))))
    for a, b in zip(picks[20:24:2], picks[21:24:2]):
        timings[b] = timings[a]
        planted["numbers"].append(tuple(sorted((a, b))))
    common = mask_png()
    for student in ids:
        notebook = notebooks[student]
        for cell in notebook["cells"]:
            for tag in cell.get("metadata", {}).get("tags", []):
                if tag in words[student]:
                    cell["source"] = "**답 / Answer:**\n\n" + words[student][tag]
        write_student(batch, inputs, student, notebook,
                      {"masking_techniques/causal.png": common, "performance_benchmark/results.csv": timings[student],
                       "performance_benchmark/time_memory_vs_seq_len.png": figures[student]})
    (batch / "gradebook.csv").write_text("student,status\n", encoding="utf-8")
    return {"batch": batch, "planted": planted}


def other_cpu_s() -> float:
    """CPU seconds of every process on the machine (from /proc/stat), to subtract our own from."""
    with open("/proc/stat", encoding="ascii") as handle:
        fields = handle.readline().split()[1:]
    user, nice, system = (int(x) for x in fields[:3])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this process and of its finished children (the fingerprinting workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="build the batch here and keep it (default: a temporary folder)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="similarity-bench-"))
    try:
        started = time.monotonic()
        built = build(root, args.students, args.seed)
        print(f"built {args.students} submissions in {time.monotonic() - started:.1f} s ({root})")
        marks: list[tuple[str, float]] = []
        machine_before, own_before = other_cpu_s(), own_cpu_s()
        started = time.monotonic()
        report = similarity_report(built["batch"], lang="ko",
                                   progress=lambda m: marks.append((m, time.monotonic())))
        wall_s = time.monotonic() - started
        own_s = own_cpu_s() - own_before
        others_s = max(0.0, other_cpu_s() - machine_before - own_s)
        steps = [(m, (marks[i + 1][1] if i + 1 < len(marks) else started + wall_s) - t) for i, (m, t) in enumerate(marks)]
        print(f"similarity report: {wall_s:.1f} s for {len(report.documents)} students, {report.compared_pairs} pairs "
              f"(CPU: the report {own_s:.1f} s, other processes {others_s:.1f} s, load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
        print("  " + ", ".join(f"{m} {s:.1f} s" for m, s in steps))
        found = {kind: {tuple(sorted((p.a.key, p.b.key))) for p in report.pairs if kind in p.kinds}
                 for kind in ("code", "answer", "image", "numbers")}
        ok = True
        for kind, pairs in built["planted"].items():
            missed = set(pairs) - found[kind]
            extra = found[kind] - set(pairs)
            print(f"  {kind:8s}: planted {len(pairs)}, found {len(found[kind])}, missed {len(missed)}, "
                  f"not planted {len(extra)}")
            ok &= not missed and not extra
        scores = sorted((p.score for p in report.pairs if "code" in p.kinds), reverse=True)
        print(f"  code scores of the flagged pairs: {', '.join(f'{s:.2f}' for s in scores)}")
        print(f"  similarity.html {report.html_path.stat().st_size / 1e6:.1f} MB, similarity.csv "
              f"{report.csv_path.stat().st_size} bytes")
        target = wall_s < 120
        print(f"target under 120 s: {'met' if target else 'NOT met'}; planted evidence found exactly: "
              f"{'yes' if ok else 'NO'}")
        return 0 if target and ok else 1
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
