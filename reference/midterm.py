"""Reference of the w8-midterm assignment ("a transformer from scratch").

The midterm's package must expose what the w7-transformer template fixes (the same parameter
layout, masks, decoding rules and sinusoidal table), so its reference is w7-transformer's,
`reference/transformer.py` (Vaswani et al. 2017, "Attention Is All You Need"; Xiong et al. 2020
for pre-LN; Wu et al. 2016 for the length penalty), not a second copy of it. The probe names the
student's classes by their place in the package ("midterm.Transformer"); the judge looks up the
same names here, so each public name is also bound under its dotted name.
"""

from __future__ import annotations

from reference import transformer as _transformer

# The package's public names, plain and dotted: "midterm.Transformer" (the probe calls' function
# names) -> reference.transformer.Transformer.
globals().update({name: getattr(_transformer, name) for name in _transformer.__all__})
globals().update({f"midterm.{name}": getattr(_transformer, name) for name in _transformer.__all__})
