"""The static "forbidden API" analyser (grader/judge/static_api.py): what it must catch, what it
must leave alone, and that no input makes it raise."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grader.judge.static_api import ApiUse, canonical, code_of, find_forbidden

SDPA = "torch.nn.functional.scaled_dot_product_attention"
MHA = "torch.nn.MultiheadAttention"
LSTM_CELL = "torch.nn.LSTMCell"
FORBIDDEN = [SDPA, MHA, LSTM_CELL]


def notebook(*cells: str) -> dict:
    """A notebook whose code cells are `cells` (dedented), with a markdown cell first so that
    cell positions count every cell."""
    out = [{"cell_type": "markdown", "metadata": {}, "source": "# F.scaled_dot_product_attention"}]
    out += [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
             "source": textwrap.dedent(c).strip("\n")} for c in cells]
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": out}


def found(source, roots=("attention",), forbidden=FORBIDDEN) -> list[ApiUse]:
    return find_forbidden(source, roots, forbidden)


def resolved(source, roots=("attention",), forbidden=FORBIDDEN) -> set[str]:
    return {u.resolved for u in found(source, roots, forbidden)}


IMPORTS = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F"


# --- what it must catch -------------------------------------------------------------------------


def test_a_direct_call_names_the_cell_the_line_and_the_code():
    nb = notebook(IMPORTS, """
        def attention(q, k, v):
            scale = q.shape[-1] ** -0.5
            return F.scaled_dot_product_attention(q, k, v)
    """)
    assert found(nb) == [ApiUse(root="attention", api=SDPA, resolved=SDPA, cell=3, line=3,
                                code="return F.scaled_dot_product_attention(q, k, v)", via=("attention",))]


@pytest.mark.parametrize("imports, call", [
    ("import torch", "torch.nn.functional.scaled_dot_product_attention(q, k, v)"),
    ("from torch.nn import functional as F", "F.scaled_dot_product_attention(q, k, v)"),
    ("from torch.nn.functional import scaled_dot_product_attention as sdpa", "sdpa(q, k, v)"),
    ("from torch.nn.functional import scaled_dot_product_attention", "scaled_dot_product_attention(q, k, v)"),
    ("import torch.nn", "torch.nn.functional.scaled_dot_product_attention(q, k, v)"),
    ("import torch.nn.functional", "torch.nn.functional.scaled_dot_product_attention(q, k, v)"),
    ("from torch.nn.functional import *", "scaled_dot_product_attention(q, k, v)"),
    ("import importlib", "importlib.import_module('torch.nn.functional').scaled_dot_product_attention(q, k, v)"),
])
def test_every_import_form_is_followed(imports, call):
    nb = notebook(imports, f"def attention(q, k, v):\n    return {call}")
    uses = found(nb)
    assert [(u.api, u.resolved, u.cell, u.line) for u in uses] == [(SDPA, SDPA, 3, 2)]


@pytest.mark.parametrize("imports", ["from torch import nn", "import torch.nn as nn", "import torch as nn_root\nnn = nn_root.nn"])
def test_module_classes_through_nn(imports):
    nb = notebook(imports, """
        def attention(x):
            layer = nn.MultiheadAttention(8, 2)
            return layer(x, x, x)
    """)
    assert resolved(nb) == {MHA}


def test_imports_inside_the_function_body():
    nb = notebook("""
        def attention(q, k, v):
            import torch.nn.functional as G
            from torch.nn import LSTMCell
            cell = LSTMCell(4, 4)
            return G.scaled_dot_product_attention(q, k, v)
    """)
    assert [(u.resolved, u.line) for u in found(nb)] == [(LSTM_CELL, 4), (SDPA, 5)]


def test_module_level_aliases_are_reported_where_the_root_uses_them():
    nb = notebook(IMPORTS, """
        attn = F.scaled_dot_product_attention
        mha_cls = nn.MultiheadAttention
        attn2, cell_cls = F.scaled_dot_product_attention, nn.LSTMCell
    """, """
        def attention(q, k, v):
            layer = mha_cls(8, 2)
            cell = cell_cls(4, 4)
            return attn(q, k, v) + attn2(q, k, v)
    """)
    uses = found(nb)
    assert [(u.resolved, u.cell, u.line) for u in uses] == [(MHA, 4, 2), (LSTM_CELL, 4, 3), (SDPA, 4, 4)]
    assert uses[-1].code == "return attn(q, k, v) + attn2(q, k, v)"


def test_getattr_with_a_constant_name_is_resolved():
    nb = notebook(IMPORTS, """
        def attention(q, k, v):
            fn = getattr(F, "scaled_dot_product_attention")
            return getattr(torch.nn.functional, "scaled_dot_product_attention")(q, k, v)
    """)
    assert [(u.resolved, u.line) for u in found(nb)] == [(SDPA, 2), (SDPA, 3)]


def test_computed_names_are_left_to_the_dynamic_layer():
    nb = notebook(IMPORTS, """
        def attention(q, k, v):
            name = "scaled_dot_" + "product_attention"
            return getattr(F, "scaled_dot_" + "product_attention")(q, k, v) + getattr(F, name)(q, k, v)
    """)
    assert found(nb) == []


def test_references_without_a_call_count():
    nb = notebook(IMPORTS, """
        def run(fn, q):
            return fn(q, q, q)

        def attention(q):
            table = {"fast": F.scaled_dot_product_attention}
            return run(F.scaled_dot_product_attention, q)
    """)
    assert [u.line for u in found(nb)] == [5, 6]


def test_a_class_root_its_methods_its_bases_and_init_attributes():
    nb = notebook(IMPORTS, """
        class Wrapped(nn.MultiheadAttention):
            pass

        class MyMHA(nn.Module):
            def __init__(self, d):
                super().__init__()
                self.attn = nn.MultiheadAttention(d, 2)

            def forward(self, x):
                return self.attn(x, x, x)
    """)
    assert [(u.root, u.line, u.code) for u in found(nb, roots=["MyMHA", "Wrapped"])] == [
        ("MyMHA", 7, "self.attn = nn.MultiheadAttention(d, 2)"),
        ("Wrapped", 1, "class Wrapped(nn.MultiheadAttention):"),
    ]


def test_a_root_reaches_the_methods_of_a_class_it_instantiates():
    nb = notebook(IMPORTS, """
        class Block(nn.Module):
            def forward(self, q, k, v):
                return F.scaled_dot_product_attention(q, k, v)
    """, """
        def attention(q, k, v):
            return Block()(q, k, v)

        def by_method(q, k, v):
            return Block.forward(None, q, k, v)
    """)
    uses = found(nb, roots=["attention", "by_method"])
    assert [(u.root, u.via, u.cell, u.line) for u in uses] == [
        ("attention", ("attention", "Block"), 3, 3),
        ("by_method", ("by_method", "Block"), 3, 3),
    ]


def test_helpers_at_any_depth_with_recursion_and_the_shortest_chain():
    nb = notebook(IMPORTS, """
        def _inner(q):
            return F.scaled_dot_product_attention(q, q, q)

        def _middle(q, n):
            return _inner(q) if n == 0 else _middle(q, n - 1) + _outer(q, n - 1)

        def _outer(q, n):
            return _middle(q, n)

        def attention(q):
            return _outer(q, 3)

        def shortcut(q):
            return _outer(q, 1) + _inner(q)
    """)
    assert [u.via for u in found(nb, roots=["attention", "shortcut"])] == [
        ("attention", "_outer", "_middle", "_inner"), ("shortcut", "_inner")]


def test_lambdas_nested_functions_and_decorators_are_part_of_the_code():
    nb = notebook(IMPORTS, """
        def fast(fn):
            return lambda *a: F.scaled_dot_product_attention(*a)

        def attention(q, k, v):
            def inner(a):
                return nn.LSTMCell(4, 4)
            pick = lambda: nn.MultiheadAttention(4, 2)
            return inner(q), pick()

        @fast
        def decorated(q, k, v):
            return q
    """)
    assert [(u.resolved, u.via) for u in found(nb, roots=["attention", "decorated"])] == [
        (LSTM_CELL, ("attention",)), (MHA, ("attention",)), (SDPA, ("decorated", "fast"))]


def test_the_last_definition_of_a_name_is_the_one_analysed():
    wrapped_first = notebook(IMPORTS, """
        def attention(q, k, v):
            return F.scaled_dot_product_attention(q, k, v)
    """, """
        def attention(q, k, v):
            w = (q @ k.transpose(-2, -1)).softmax(-1)
            return w @ v
    """)
    assert found(wrapped_first) == []
    wrapped_last = notebook(IMPORTS, wrapped_first["cells"][3]["source"], wrapped_first["cells"][2]["source"])
    assert [(u.cell, u.line) for u in found(wrapped_last)] == [(4, 2)]


def test_module_level_values_the_root_uses_are_followed():
    nb = notebook(IMPORTS, """
        import functools
        ops = {"attn": F.scaled_dot_product_attention}
        fused = functools.partial(F.scaled_dot_product_attention, dropout_p=0.0)

        def attention(q, k, v):
            return ops["attn"](q, k, v) + fused(q, k, v)
    """)
    assert [(u.via, u.line) for u in found(nb)] == [(("attention", "ops"), 2), (("attention", "fused"), 3)]


def test_a_root_that_is_itself_an_alias_of_the_library():
    nb = notebook(IMPORTS, "attention = F.scaled_dot_product_attention",
                  "from torch.nn import MultiheadAttention as MyAttention")
    uses = found(nb, roots=["attention", "MyAttention"])
    assert [(u.root, u.resolved, u.cell, u.line) for u in uses] == [
        ("attention", SDPA, 3, 1), ("MyAttention", MHA, 4, 1)]


def test_a_default_argument_is_what_the_parameter_stands_for():
    nb = notebook(IMPORTS, """
        def attention(q, k, v, G=torch.nn.functional, *, mod=nn):
            return G.scaled_dot_product_attention(q, k, v), mod.LSTMCell(2, 2)
    """)
    assert resolved(nb) == {SDPA, LSTM_CELL}


def test_an_import_with_a_fallback_value_still_counts():
    nb = notebook("""
        try:
            import torch.nn.functional as F
        except ImportError:
            F = None
    """, "def attention(q, k, v):\n    return F.scaled_dot_product_attention(q, k, v)")
    assert resolved(nb) == {SDPA}


# --- names, prefixes and canonical forms ------------------------------------------------------


def test_prefix_semantics_on_dotted_boundaries():
    nb = notebook(IMPORTS, """
        from torch.nn.attention import sdpa_kernel, SDPBackend

        def attention(q, k, v):
            with sdpa_kernel(SDPBackend.MATH):
                a = F.scaled_dot_product_attention_something_else(q, k, v)
            return F.scaled_dot_product_attention.__name__, a
    """)
    uses = found(nb, forbidden=["torch.nn.attention", SDPA])
    assert [(u.api, u.resolved) for u in uses] == [
        ("torch.nn.attention", "torch.nn.attention.sdpa_kernel"),
        ("torch.nn.attention", "torch.nn.attention.SDPBackend.MATH"),
        (SDPA, SDPA + ".__name__"),
    ]


def test_overlapping_entries_each_get_the_use_most_specific_first():
    nb = notebook(IMPORTS, "def attention(q):\n    return F.scaled_dot_product_attention(q, q, q)")
    uses = found(nb, forbidden=["torch.nn", SDPA, "torch.nn.functional", "torch"])
    assert [u.api for u in uses] == [SDPA, "torch.nn.functional", "torch.nn", "torch"]
    assert {(u.resolved, u.line) for u in uses} == {(SDPA, 2)}


def test_private_aliases_are_matched_as_their_public_names():
    nb = notebook("import torch", """
        def attention(q, k, v, h, c, w):
            a = torch._C._nn.scaled_dot_product_attention(q, k, v)
            b = torch._VF.lstm_cell(q, (h, c), w, w)
            m = torch.nn.modules.activation.MultiheadAttention(4, 2)
            return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default(q, k, v)
    """)
    flash = "torch.ops.aten._scaled_dot_product_flash_attention_for_cpu"
    uses = found(nb, forbidden=[SDPA, "torch.lstm_cell", MHA, flash])
    assert [(u.api, u.resolved) for u in uses] == [
        (SDPA, "torch._C._nn.scaled_dot_product_attention"),
        ("torch.lstm_cell", "torch._VF.lstm_cell"),
        (MHA, "torch.nn.modules.activation.MultiheadAttention"),
        (flash, flash + ".default"),
    ]
    assert canonical("torch._C._VariableFunctions.lstm_cell") == "torch.lstm_cell"
    assert canonical("torch.nn.modules.rnn") == "torch.nn.modules.rnn"  # a module keeps its name


# --- what it must not flag -------------------------------------------------------------------


def test_comments_strings_and_markdown_are_not_code():
    nb = notebook(IMPORTS, '''
        def attention(q, k, v):
            """Unlike F.scaled_dot_product_attention, this is written by hand."""
            # return F.scaled_dot_product_attention(q, k, v)
            note = "nn.MultiheadAttention"
            return (q @ k.transpose(-2, -1)).softmax(-1) @ v
    ''')
    assert found(nb) == []


def test_a_local_named_f_is_not_the_functional_module():
    nb = notebook(IMPORTS, """
        def attention(q, k, v, nn=None):
            F = q.shape[-1]
            def inner(torch):
                return torch.nn.functional.scaled_dot_product_attention
            rows = [F for F in range(3)]
            return F.scaled_dot_product_attention, nn.MultiheadAttention, inner
    """)
    assert found(nb) == []


def test_a_comprehension_variable_does_not_shadow_the_module_outside_it():
    nb = notebook(IMPORTS, """
        def attention(q, k, v):
            heads = [F for F in range(3)]
            return F.scaled_dot_product_attention(q, k, v)
    """)
    assert resolved(nb) == {SDPA}


def test_class_level_names_are_not_seen_by_methods():
    nb = notebook(IMPORTS, """
        class attention(nn.Module):
            F = 3
            def forward(self, q, k, v):
                return F.scaled_dot_product_attention(q, k, v)
    """)
    assert [u.line for u in found(nb)] == [4]


def test_allowed_building_blocks_are_not_flagged():
    nb = notebook(IMPORTS, """
        class MultiheadAttention(nn.Module):
            def __init__(self, d, h):
                super().__init__()
                self.proj = nn.Linear(d, 3 * d)
                self.drop = torch.nn.Dropout(0.1)

            def forward(self, x, mask):
                q, k, v = self.proj(x).chunk(3, -1)
                s = torch.einsum("bid,bjd->bij", q, k).masked_fill(mask, float("-inf"))
                w = torch.softmax(s, -1) + F.softmax(s, -1) + F.relu(s) + F.elu(s)
                return self.drop(w) @ v

        def attention(x, mask):
            return MultiheadAttention(8, 2)(x, mask)
    """)
    assert found(nb, forbidden=[SDPA, MHA]) == []


def test_uses_no_root_reaches_are_allowed():
    nb = notebook(IMPORTS, """
        def attention(q, k, v):
            return (q @ k.transpose(-2, -1)).softmax(-1) @ v

        def compare_with_torch(q, k, v):
            return F.scaled_dot_product_attention(q, k, v)
    """, """
        q = torch.randn(2, 4, 8)
        expected = F.scaled_dot_product_attention(q, q, q)
        print((attention(q, q, q) - expected).abs().max(), nn.MultiheadAttention(8, 2))
    """)
    assert found(nb) == []


def test_a_root_that_is_not_defined_yields_nothing():
    nb = notebook(IMPORTS, "def other(q):\n    return F.scaled_dot_product_attention(q, q, q)")
    assert found(nb, roots=["attention", "missing"]) == []
    assert found(nb, roots=["other"], forbidden=[]) == []


# --- robustness ---------------------------------------------------------------------------------


def test_magics_and_a_cell_that_does_not_parse_hide_nothing_else():
    nb = notebook("%matplotlib inline\n!pip install nothing\n" + IMPORTS, """
        def attention(q, k, v):
            return F.scaled_dot_product_attention(q, k, v)

        this line is not python (
    """, """
        def broken(:
            pass
    """, "%%timeit\nattention(1, 2, 3)")
    assert [(u.cell, u.line) for u in found(nb)] == [(3, 2)]
    text, where = code_of(nb)
    assert "# %matplotlib inline" in text and "def broken" not in text
    assert where[text.splitlines().index("def attention(q, k, v):")] == (3, 1)


def test_plain_module_source_has_no_cell():
    source = IMPORTS + "\n\nx = 'a\\fb'\n\nclass Attention:\n    def __call__(self, q):\n" \
        "        return F.scaled_dot_product_attention(q, q, q)\n"
    assert [(u.cell, u.line, u.via) for u in found(source, roots=["Attention"])] == [(None, 9, ("Attention",))]


def test_a_form_feed_inside_a_cell_keeps_line_numbers():
    nb = notebook("import torch.nn.functional as F\nnote = 'a\fb'\n\ndef attention(q):\n"
                  "    return F.scaled_dot_product_attention(q, q, q)")
    assert [(u.cell, u.line) for u in found(nb)] == [(2, 5)]


@pytest.mark.parametrize("source", [
    None, 42, b"import torch.nn.functional as F", {}, {"cells": "nope"}, {"cells": [None, 3, {"cell_type": "code"}]},
    {"cells": [{"cell_type": "code", "source": ["def attention(", None, 7]}]},
    "def attention(:\n", "\x00", "def attention(q):\n    return " + "(" * 500 + "q" + ")" * 500,
    "def attention(q):\n    return q" + ".a" * 5000, "def attention(q):\n    return " + "q + " * 20000 + "q",
])
def test_odd_input_never_raises(source):
    assert isinstance(find_forbidden(source, ["attention"], FORBIDDEN), list)


_TOKENS = ["import torch.nn.functional as F\n", "from torch import nn\n", "def attention(q):\n", "class attention(",
           "    ", "\t", "\n", "return ", "F", ".", "scaled_dot_product_attention", "nn.MultiheadAttention",
           "getattr(", ",", "'", '"', "(", ")", "[", "]", "{", "}", ":", "=", "@", "lambda ", "%", "!", "q", "\\",
           "for F in ", "global ", "import ", "*", "async ", "yield ", "del ", "\f", "\r"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=60).map("".join))
def test_fuzzed_source_never_raises(text):
    uses = find_forbidden(text, ["attention"], FORBIDDEN)
    assert all(u.root == "attention" and u.api in FORBIDDEN for u in uses)


def test_a_long_notebook_is_analysed_whole():
    helpers = "\n\n".join(f"def h{i}(x):\n    y = x * {i}\n    return h{i + 1}(y) if x else y" for i in range(300))
    nb = notebook(IMPORTS, helpers, "def h300(x):\n    return F.scaled_dot_product_attention(x, x, x)",
                  "def attention(x):\n    return h0(x)")
    uses = found(nb)
    assert len(uses) == 1 and len(uses[0].via) == 302 and (uses[0].cell, uses[0].line) == (4, 2)


def test_a_module_level_wrapper_keeps_the_function_it_wraps():
    nb = notebook(IMPORTS, """
        def attention(q, k, v):
            return F.scaled_dot_product_attention(q, k, v)
    """, "attention = torch.compile(attention)\nattention: object")
    assert [(u.via, u.cell, u.line) for u in found(nb)] == [(("attention", "attention"), 3, 2)]


def test_a_required_function_named_like_the_library_one():
    """w6 asks for `scaled_dot_product_attention` itself: the student's own is not the library's,
    a wrapper around the library's is, and an import after the def replaces the def."""
    own = notebook(IMPORTS, """
        def scaled_dot_product_attention(q, k, v, mask=None):
            w = (q @ k.transpose(-2, -1)).softmax(-1)
            return w @ v, w

        def chunked_attention(q, k, v, chunk_size=64):
            return scaled_dot_product_attention(q, k, v)[0]
    """)
    roots = ["scaled_dot_product_attention", "chunked_attention"]
    assert found(own, roots=roots) == []
    wrapper = notebook(IMPORTS, """
        def scaled_dot_product_attention(q, k, v, mask=None):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), None

        def chunked_attention(q, k, v, chunk_size=64):
            return scaled_dot_product_attention(q, k, v)[0]
    """)
    assert [(u.root, u.via, u.line) for u in found(wrapper, roots=roots)] == [
        ("scaled_dot_product_attention", ("scaled_dot_product_attention",), 2),
        ("chunked_attention", ("chunked_attention", "scaled_dot_product_attention"), 2)]
    replaced = notebook(IMPORTS, own["cells"][2]["source"],
                        "from torch.nn.functional import scaled_dot_product_attention")
    assert [(u.root, u.via, u.cell, u.line) for u in found(replaced, roots=roots)] == [
        ("scaled_dot_product_attention", ("scaled_dot_product_attention",), 4, 1),
        ("chunked_attention", ("chunked_attention",), 3, 6)]


def test_a_dotted_root_is_its_class_and_a_broken_cell_salvages_its_other_statements():
    nb = notebook(IMPORTS, """
        변수 = 1
        class Block(nn.Module):
            def forward(self, x):
                return nn.MultiheadAttention(4, 2)(x, x, x)
        print(변수 +)
        def attention(q):
            return F.scaled_dot_product_attention(q, q, q)
    """)
    uses = found(nb, roots=["Block.forward", "attention"])
    assert [(u.root, u.resolved, u.cell, u.line) for u in uses] == [("Block.forward", MHA, 3, 4), ("attention", SDPA, 3, 7)]
