"""Synthetic batch folders for tests/test_similarity.py: what `grade batch` leaves, built directly
(no notebook runs): OUT/<student>/{result.json, record.json, executed.ipynb} and the submissions
they name, INPUT/<student>.zip (the submitted notebook, performance_benchmark/results.csv,
PNG figures).

Four independent solutions of w6-self-attention (A-D, written in different styles), a copy of B
with every name changed, the comments rewritten and the cells reordered, two students who only
handed in the template, and two partial solutions whose authors share a free-text answer and a
figure.
"""

from __future__ import annotations

import copy
import io
import json
import random
import re
import zipfile
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "student_template" / "w6-self-attention" / "self_attention_optimized.ipynb"
NOTEBOOK = "self_attention_optimized.ipynb"
ASSIGNMENT = "w6-self-attention"
FUNCTIONS = ("padding_mask", "causal_mask", "combine_masks", "scaled_dot_product_attention", "chunked_attention")

# Per solution: function -> (helper code placed before the def, the body replacing the template's
# `raise NotImplementedError` line).
SOLUTIONS: dict[str, dict[str, tuple[str, str]]] = {
    "A": {
        "padding_mask": ("", """\
    lengths = torch.as_tensor(lengths)
    keep = torch.arange(max_len)[None, :] < lengths[:, None]
    return keep[:, None, None, :]
"""),
        "causal_mask": ("", """\
    return torch.tril(torch.ones(T, T, dtype=torch.bool))
"""),
        "combine_masks": ("", """\
    masks = [m for m in masks if m is not None]
    if len(masks) == 0:
        return None
    if all(m.dtype == torch.bool for m in masks):
        result = masks[0]
        for m in masks[1:]:
            result = result & m
        return result
    result = 0.0
    for m in masks:
        if m.dtype == torch.bool:
            m = torch.where(m, 0.0, float("-inf"))
        result = result + m.float()
    return result
"""),
        "scaled_dot_product_attention": ("", """\
    scale = q.shape[-1] ** -0.5
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask.float()
    peak = scores.max(dim=-1, keepdim=True).values
    peak = torch.nan_to_num(peak, neginf=0.0)
    weights = (scores - peak).exp()
    denom = weights.sum(-1, keepdim=True)
    weights = weights / denom.clamp(min=1e-20)
    return torch.matmul(weights, v.float()).to(q.dtype), weights
"""),
        "chunked_attention": ("", """\
    B, H, Tq, d = q.shape
    Tk = k.shape[2]
    qs = q.float() * d ** -0.5
    m = torch.full((B, H, Tq, 1), float("-inf"))
    l = torch.zeros(B, H, Tq, 1)
    acc = torch.zeros(B, H, Tq, v.shape[-1])
    if mask is not None:
        mask = mask.expand(B, H, Tq, Tk)
    for s in range(0, Tk, chunk_size):
        e = min(s + chunk_size, Tk)
        block = torch.matmul(qs, k[:, :, s:e].float().transpose(-1, -2))
        if mask is not None:
            part = mask[..., s:e]
            block = block.masked_fill(~part, float("-inf")) if part.dtype == torch.bool else block + part.float()
        m_new = torch.maximum(m, block.max(-1, keepdim=True).values)
        m_safe = torch.nan_to_num(m_new, neginf=0.0)
        p = (block - m_safe).exp()
        corr = (m - m_safe).exp()
        l = l * corr + p.sum(-1, keepdim=True)
        acc = acc * corr + torch.matmul(p, v[:, :, s:e].float())
        m = m_new
    return (acc / l.clamp(min=1e-20)).to(q.dtype)
"""),
    },
    "B": {
        "padding_mask": ("", """\
    batch = len(lengths)
    out = torch.zeros(batch, max_len, dtype=torch.bool)
    for row, n in enumerate(list(lengths)):
        out[row, : int(n)] = True  # the real keys of this row
    return out.reshape(batch, 1, 1, max_len)
"""),
        "causal_mask": ("", """\
    idx = torch.arange(T)
    return idx.unsqueeze(1) >= idx.unsqueeze(0)  # row i sees columns up to i
"""),
        "combine_masks": ("", """\
    kept = []
    for item in masks:
        if item is not None:
            kept.append(item)
    if not kept:
        return None
    any_float = any(item.is_floating_point() for item in kept)
    if not any_float:
        acc = torch.ones((), dtype=torch.bool)
        for item in kept:
            acc = torch.logical_and(acc, item)
        return acc
    acc = torch.zeros(())
    for item in kept:
        if item.dtype == torch.bool:
            add = torch.full(item.shape, float("-inf")).masked_fill(item, 0.0)  # allowed -> 0
        else:
            add = item.to(torch.float32)
        acc = acc + add
    return acc
"""),
        "scaled_dot_product_attention": ('''\
def _stable_softmax(x):
    """Softmax over the last axis that survives rows of -inf."""
    biggest = torch.amax(x, dim=-1, keepdim=True)
    biggest = torch.where(torch.isfinite(biggest), biggest, torch.zeros_like(biggest))
    numer = torch.exp(x - biggest)
    denom = torch.sum(numer, dim=-1, keepdim=True)
    return torch.where(denom > 0, numer / denom, torch.zeros_like(numer))


def _masked(x, mask):
    # apply a boolean or additive mask
    if mask is None:
        return x
    if mask.dtype == torch.bool:
        return x.masked_fill(mask.logical_not(), -math.inf)
    return x + mask.to(x.dtype)


''', """\
    head_dim = q.size(-1)
    logits = torch.einsum("bhqd,bhkd->bhqk", q.to(torch.float32), k.to(torch.float32))
    logits = _masked(logits / math.sqrt(head_dim), mask)
    probs = _stable_softmax(logits)
    context = torch.einsum("bhqk,bhkd->bhqd", probs, v.to(torch.float32))
    return context.to(q.dtype), probs
"""),
        "chunked_attention": ("", """\
    b, h, n_q, head_dim = q.shape
    n_k = k.size(2)
    queries = q.to(torch.float32) / math.sqrt(head_dim)
    run_max = queries.new_full((b, h, n_q, 1), -math.inf)
    run_sum = queries.new_zeros((b, h, n_q, 1))
    out = queries.new_zeros((b, h, n_q, v.size(-1)))
    start = 0
    while start < n_k:  # one chunk of keys per step
        end = min(n_k, start + chunk_size)
        logits = torch.einsum("bhqd,bhkd->bhqk", queries, k[:, :, start:end].to(torch.float32))
        if mask is not None:
            logits = _masked(logits, mask.expand(b, h, n_q, n_k)[..., start:end])
        new_max = torch.maximum(run_max, torch.amax(logits, dim=-1, keepdim=True))
        safe = torch.where(torch.isfinite(new_max), new_max, torch.zeros_like(new_max))
        weights = torch.exp(logits - safe)
        factor = torch.exp(run_max - safe)  # rescale what was summed so far
        run_sum = factor * run_sum + torch.sum(weights, dim=-1, keepdim=True)
        out = factor * out + torch.einsum("bhqk,bhkd->bhqd", weights, v[:, :, start:end].to(torch.float32))
        run_max = new_max
        start = end
    return torch.where(run_sum > 0, out / run_sum, torch.zeros_like(out)).to(q.dtype)
"""),
    },
    "C": {
        "padding_mask": ("", """\
    device = lengths.device if torch.is_tensor(lengths) else None
    lens = torch.tensor(lengths, device=device) if not torch.is_tensor(lengths) else lengths
    grid = torch.arange(max_len, device=lens.device).expand(lens.numel(), max_len)
    valid = grid < lens.unsqueeze(-1)
    return valid.unsqueeze(1).unsqueeze(1)
"""),
        "causal_mask": ("", """\
    upper = torch.triu(torch.ones(T, T), diagonal=1)
    return upper == 0
"""),
        "combine_masks": ("", """\
    def to_additive(x):
        return torch.zeros_like(x, dtype=torch.float32).masked_fill(~x, -float("inf"))

    items = list(filter(lambda x: x is not None, masks))
    if not items:
        return None
    bools = [x for x in items if x.dtype == torch.bool]
    if len(bools) == len(items):
        from functools import reduce
        return reduce(torch.logical_and, items)
    total = sum(to_additive(x) if x.dtype == torch.bool else x.float() for x in items)
    return total
"""),
        "scaled_dot_product_attention": ("", """\
    qf, kf, vf = (t.float() for t in (q, k, v))
    s = qf.matmul(kf.transpose(2, 3)).div(math.sqrt(qf.size(3)))
    if mask is not None and mask.dtype == torch.bool:
        s = torch.where(mask, s, torch.tensor(float("-inf")))
    elif mask is not None:
        s = s + mask
    blocked = torch.isneginf(s).all(dim=-1, keepdim=True)
    s = torch.where(blocked, torch.zeros_like(s), s)
    w = torch.softmax(s - s.max(dim=-1, keepdim=True)[0], dim=-1)
    w = w.masked_fill(blocked, 0.0)
    return w.matmul(vf).type(q.dtype), w
"""),
        "chunked_attention": ("", """\
    Tk = k.size(-2)
    sums, maxes, accs = None, None, None
    for lo in range(0, Tk, chunk_size):
        hi = lo + chunk_size
        kc, vc = k[..., lo:hi, :].float(), v[..., lo:hi, :].float()
        sc = q.float().matmul(kc.transpose(-1, -2)) / math.sqrt(q.size(-1))
        if mask is not None:
            mc = mask[..., lo:hi] if mask.size(-1) == Tk else mask
            sc = torch.where(mc, sc, torch.tensor(float("-inf"))) if mc.dtype == torch.bool else sc + mc
        cmax = sc.max(dim=-1, keepdim=True)[0]
        if maxes is None:
            maxes = cmax
            safe = torch.where(torch.isinf(maxes), torch.zeros_like(maxes), maxes)
            ex = (sc - safe).exp()
            sums, accs = ex.sum(-1, keepdim=True), ex.matmul(vc)
        else:
            grown = torch.max(maxes, cmax)
            safe = torch.where(torch.isinf(grown), torch.zeros_like(grown), grown)
            old = torch.where(torch.isinf(maxes), torch.zeros_like(maxes), (maxes - safe).exp())
            ex = (sc - safe).exp()
            sums = sums * old + ex.sum(-1, keepdim=True)
            accs = accs * old + ex.matmul(vc)
            maxes = grown
    result = torch.where(sums > 0, accs / sums.clamp_min(1e-30), torch.zeros_like(accs))
    return result.type(q.dtype)
"""),
    },
    "D": {
        "padding_mask": ("", """\
    rows = []
    for n in lengths:
        rows.append([j < int(n) for j in range(max_len)])
    return torch.tensor(rows, dtype=torch.bool)[:, None, None]
"""),
        "causal_mask": ("", """\
    m = torch.zeros((T, T), dtype=torch.bool)
    for i in range(T):
        m[i, : i + 1] = True
    return m
"""),
        "combine_masks": ("", """\
    ms = [x for x in masks if x is not None]
    if not ms:
        return None
    if not any(torch.is_floating_point(x) for x in ms):
        out = ms[0]
        for x in ms[1:]:
            out = out * x
        return out.bool()
    out = torch.zeros(1)
    for x in ms:
        out = out + (x.float().log() if x.dtype == torch.bool else x)  # log(1) = 0, log(0) = -inf
    return out
"""),
        "scaled_dot_product_attention": ("import torch.nn.functional as F\n\n\n", """\
    d_k = k.shape[-1]
    att = (q.double() @ k.double().mT).float() / d_k ** 0.5
    if mask is not None:
        att = att + (mask.float().log() if mask.dtype == torch.bool else mask)
    att = F.softmax(att, dim=-1)
    att = torch.nan_to_num(att, nan=0.0)
    y = att @ v.float()
    return y.to(dtype=q.dtype), att
"""),
        "chunked_attention": ("", """\
    n_keys = k.shape[-2]
    bounds = list(range(0, n_keys, chunk_size)) + [n_keys]
    lse = None
    num = None
    for a, b in zip(bounds[:-1], bounds[1:]):
        part = (q.float() @ k[..., a:b, :].float().mT) / q.shape[-1] ** 0.5
        if mask is not None:
            mpart = mask[..., a:b] if mask.shape[-1] != 1 else mask
            part = part + (mpart.float().log() if mpart.dtype == torch.bool else mpart)
        chunk_lse = torch.logsumexp(part, dim=-1, keepdim=True)
        chunk_out = torch.nan_to_num(F.softmax(part, dim=-1)) @ v[..., a:b, :].float()
        if lse is None:
            lse, num = chunk_lse, chunk_out
        else:
            new = torch.logaddexp(lse, chunk_lse)
            num = num * torch.nan_to_num((lse - new).exp()) + chunk_out * torch.nan_to_num((chunk_lse - new).exp())
            lse = new
    return num.to(q.dtype)
"""),
    },
    # Partial work: one function each.
    "E": {"causal_mask": ("", "    return torch.ones(T, T).tril().bool()\n")},
    "F": {"padding_mask": ("", "    return (torch.arange(max_len) < torch.as_tensor(lengths).view(-1, 1)).view(-1, 1, 1, max_len)\n")},
    "T": {},  # the template as it was handed out
}

# B's copy: every name of B's own changed (functions, helpers, variables), comments rewritten.
RENAMES = {
    "_stable_softmax": "_softmax_safe", "_masked": "_apply_mask", "biggest": "top", "numer": "expo",
    "denom": "total_w", "head_dim": "dk", "logits": "att", "probs": "attn_w", "context": "ctx",
    "queries": "qq", "run_max": "mx", "run_sum": "sm", "out": "res", "start": "lo", "end": "hi",
    "new_max": "mx_next", "safe": "ref", "weights": "pw", "factor": "scale_back", "n_q": "tq", "n_k": "tk",
    "kept": "valid", "acc": "total", "item": "mm", "idx": "pos", "batch": "nb", "row": "i", "any_float": "has_f",
    "add": "term",
}
COMMENTS = {
    "# the real keys of this row": "# positions before the length are valid",
    "# row i sees columns up to i": "# lower triangle, diagonal included",
    "# allowed -> 0": "# zero where attention is allowed",
    '"""Softmax over the last axis that survives rows of -inf."""': '"""Numerically safe softmax (handles fully masked rows)."""',
    "# apply a boolean or additive mask": "# bool masks block, float masks add",
    "# one chunk of keys per step": "# walk over the key blocks",
    "# rescale what was summed so far": "# correct the old partial sums",
}


def disguise(code: str) -> str:
    for old, new in COMMENTS.items():
        code = code.replace(old, new)
    return re.sub(r"\b(" + "|".join(map(re.escape, RENAMES)) + r")\b", lambda m: RENAMES[m.group(1)], code)


def template_notebook() -> dict:
    return json.loads(TEMPLATE.read_text(encoding="utf-8"))


def _function_cell_index(notebook: dict, function: str) -> int:
    for index, cell in enumerate(notebook["cells"]):
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "code" and re.search(rf"(?m)^def {function}\(", source):
            return index
    raise KeyError(function)


def _cell_source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def student_notebook(solution: str, *, answers: dict[str, str] | None = None, copy_of_b: bool = False) -> dict:
    """The template with `solution`'s functions filled in and `answers` in the answer cells."""
    notebook = template_notebook()
    for function, (helpers, body) in SOLUTIONS[solution].items():
        index = _function_cell_index(notebook, function)
        source = _cell_source(notebook["cells"][index])
        source = re.sub(r"(?m)^    raise NotImplementedError\(.*\)\n?", body, source)
        source = helpers + source
        if copy_of_b:
            source = disguise(source)
        notebook["cells"][index]["source"] = source
    for cell in notebook["cells"]:
        for tag in cell.get("metadata", {}).get("tags", []):
            if tag.startswith("answer:") and answers and tag in answers:
                cell["source"] = "**답 / Answer:**\n\n" + answers[tag]
    if copy_of_b:
        # Reordered: the attention cell before the mask cells, the combine cell last of them.
        cells = notebook["cells"]
        order = [_function_cell_index(notebook, f) for f in ("padding_mask", "causal_mask", "combine_masks",
                                                               "scaled_dot_product_attention")]
        moved = [cells[i] for i in order]
        first = min(order)
        for i in sorted(order, reverse=True):
            del cells[i]
        for offset, cell in enumerate([moved[3], moved[1], moved[0], moved[2]]):
            cells.insert(first + offset, cell)
    return notebook


def executed(notebook: dict) -> dict:
    """What the batch keeps: papermill's injected parameters after the parameters cell."""
    out = copy.deepcopy(notebook)
    for index, cell in enumerate(out["cells"]):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            injected = nbformat.v4.new_code_cell('# Parameters\nSEED = 0\nDEVICE = "cpu"\nDATA_DIR = "data"\n'
                                                 'PROFILE = "smoke"\n')
            injected.metadata["tags"] = ["injected-parameters"]
            out["cells"].insert(index + 1, json.loads(json.dumps(injected)))
            break
    return out


def png(seed: int, size: tuple[int, int] = (400, 300)) -> bytes:
    """A line plot-like picture, different for every seed."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.line([(30, 10), (30, size[1] - 30), (size[0] - 10, size[1] - 30)], fill="black", width=2)
    for colour in ("#1f77b4", "#ff7f0e", "#2ca02c"):
        points = [(30 + x * (size[0] - 50) // 9, rng.randint(20, size[1] - 40)) for x in range(10)]
        draw.line(points, fill=colour, width=3)
        for p in points:
            draw.ellipse([p[0] - 4, p[1] - 4, p[0] + 4, p[1] + 4], fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def mask_png() -> bytes:
    """The template's mask picture: the same for every student whose masks are right."""
    from PIL import Image

    image = Image.new("L", (120, 120), 0)
    for i in range(120):
        for j in range(i + 1):
            image.putpixel((j, i), 255)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def results_csv(seed: int) -> str:
    rng = random.Random(seed)
    rows = ["method,seq_len,batch_size,time_ms,peak_mem_mb"]
    for method in ("naive", "chunked"):
        for seq_len in (64, 128, 256):
            for batch in (1, 4):
                time_ms = rng.uniform(0.05, 9.0) * batch * seq_len / 64
                peak = batch * 4 * seq_len * (seq_len if method == "naive" else min(32, seq_len)) * 4 / 2**20
                rows.append(f"{method},{seq_len},{batch},{time_ms:.4f},{peak:.4f}")
    return "\n".join(rows) + "\n"


def write_submission(path: Path, notebook: dict, files: dict[str, bytes | str]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"hw6/{NOTEBOOK}", json.dumps(notebook, ensure_ascii=False))
        for name, data in files.items():
            archive.writestr(f"hw6/{name}", data)


def write_student(batch: Path, inputs: Path, student: str, notebook: dict, files: dict[str, bytes | str],
                  *, score: float = 20.0) -> None:
    """OUT/<student>/ as `grade batch` leaves it, and INPUT/<student>.zip."""
    inputs.mkdir(parents=True, exist_ok=True)
    source = inputs / f"{student}.zip"
    write_submission(source, notebook, files)
    folder = batch / student
    folder.mkdir(parents=True)
    result = {"assignment": ASSIGNMENT, "title": "Optimised self-attention", "status": "graded", "score": score,
              "max_score": 30.0, "bonus": 0.0, "criteria": {}, "checks": [], "student": student, "lang": "en",
              "submission": {"source": str(source), "sha256": "0" * 64, "notebook": NOTEBOOK, "notes": []},
              "executed_notebook": "executed.ipynb"}
    (folder / "result.json").write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    (folder / "record.json").write_text(json.dumps({"seed": 1, "source": str(source.resolve()),
                                                    "student": student}), encoding="utf-8")
    (folder / "executed.ipynb").write_text(json.dumps(executed(notebook), ensure_ascii=False), encoding="utf-8")


ANSWER_TAGS = ("answer:theory-online-softmax", "answer:theory-fp16-stability", "answer:exp-analysis")
# Each student's own words (distinct texts); E and F hand in the same first answer.
OWN_WORDS = {
    "A": ("The running maximum only shifts the exponent; rescaling by exp(m_old - m_new) keeps every partial sum exact.",
          "Half precision tops out at 65504 so exp of a score above about 11 overflows; float32 and the max shift avoid it.",
          "Naive time grows roughly with T squared while chunked memory stays linear in T for a fixed chunk."),
    "B": ("Because softmax is invariant to subtracting a constant, each chunk can use its own max and be corrected later.",
          "fp16 saturates quickly; computing logits in fp32 with the row max removed keeps exp in [0, 1].",
          "Chunking costs a few percent of time at small T but saves most of the score memory at T=256."),
    "B2": ("Softmax does not change when a constant is removed from all logits, so partial results can be rescaled later.",
           "In fp16 exp overflows to inf very early; fp32 accumulation and max subtraction keep the values bounded.",
           "With chunks, time is a little higher for short sequences but the memory for scores is far smaller."),
    "C": ("The online algorithm stores m, l and acc; when m grows the old l and acc are multiplied by the correction factor.",
          "Large dot products exceed the fp16 range; subtracting the maximum first keeps every exponent non-positive.",
          "Memory of the naive method quadruples from T=128 to T=256, chunked only doubles."),
    "D": ("Exactness follows from exp(a - b) = exp(a - c) * exp(c - b): the partial sums can always be re-based.",
          "Overflow happens because exp(x) for x > 11 is not representable in half precision.",
          "The measured exponent of naive time is close to 2, chunked close to 1.3 on this CPU."),
    "E": ("Rescaling by the exponential of the difference between the old and the new maximum makes the online "
          "softmax identical to the full softmax, because both normalise by the same total.",
          "E: fp16 overflow comes from exponentials of large scores.", "E: time and memory grow with T."),
    "F": ("Rescaling by the exponential of the difference between the old and  the new maximum makes the online\n"
          "softmax identical to the full softmax,   because both normalise by the same total.",
          "F: fp32 keeps the intermediate values finite.", "F: batch size scales time linearly."),
}


def build_class(root: Path) -> tuple[Path, Path]:
    """The synthetic batch: (batch folder, input folder). Students: indep-a, indep-b, copier
    (B's copy), indep-c, indep-d (D handed in C's timings), template-1, template-2 (the template as
    handed out), share-e, share-f (one identical answer and one figure)."""
    batch, inputs = root / "batch-out", root / "submissions"
    batch.mkdir(parents=True)
    common = {"masking_techniques/causal.png": mask_png()}
    plan = {
        "indep-a": ("A", "A", {}, 1),
        "indep-b": ("B", "B", {}, 2),
        "copier": ("B", "B2", {"copy_of_b": True}, 3),
        "indep-c": ("C", "C", {}, 4),
        "indep-d": ("D", "D", {}, 4),      # same timings as indep-c: D copied C's results.csv
        "template-1": ("T", None, {}, 6),
        "template-2": ("T", None, {}, 7),
        "share-e": ("E", "E", {}, 8),
        "share-f": ("F", "F", {}, 9),
    }
    for student, (solution, words, options, csv_seed) in plan.items():
        answers = dict(zip(ANSWER_TAGS, OWN_WORDS[words])) if words else None
        notebook = student_notebook(solution, answers=answers, **options)
        files = dict(common)
        files["performance_benchmark/results.csv"] = results_csv(csv_seed)
        figure_seed = 100 + csv_seed if student != "indep-d" else 200
        files["performance_benchmark/time_memory_vs_seq_len.png"] = png(figure_seed)
        if student == "share-f":
            # share-e's figure, saved again at another size: near-identical, not byte-identical.
            from PIL import Image

            image = Image.open(io.BytesIO(png(108))).resize((360, 270))
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            files["performance_benchmark/time_memory_vs_seq_len.png"] = buffer.getvalue()
        write_student(batch, inputs, student, notebook, files)
    (batch / "gradebook.csv").write_text("student,status\n", encoding="utf-8")
    return batch, inputs
