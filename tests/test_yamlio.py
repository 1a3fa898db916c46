"""The grader's YAML reader (libyaml, with PyYAML's own loader as the last word) reads every file
of ours as yaml.safe_load does, and what libyaml refuses still loads or fails as before."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from grader import yamlio

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted([*ROOT.glob("rubrics/*.yaml"), *ROOT.glob("grader/i18n/*.yaml"), ROOT / "course.yaml"])


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_our_files_read_the_same_as_with_pyyaml(path):
    text = path.read_text(encoding="utf-8")
    assert yamlio.safe_load(text) == yaml.safe_load(text)


def test_escapes_libyaml_lacks_still_load():
    value = {"name": "line\u2028sep\x85next"}
    assert yamlio.safe_load(yaml.safe_dump(value)) == value  # written as "\L" and "\N"


def test_broken_yaml_raises_pyyamls_error():
    with pytest.raises(yaml.YAMLError, match="mapping values are not allowed here"):
        yamlio.safe_load("a: b: c\n")


def test_no_python_objects():
    with pytest.raises(yaml.YAMLError):
        yamlio.safe_load("!!python/object/apply:os.system ['true']\n")
