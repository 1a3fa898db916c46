# Two entry points, each doing all the set-up it needs on a fresh machine:
#   make demo   grade the reference submission on the embedded defaults (local sandbox)
#   make test   run the test suite (unit tests first, then the notebook runs, 2 at a time)
.PHONY: demo test unit notebooks bench setup clean

VENV := .venv
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml scripts/setup.sh
	./scripts/setup.sh

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/grade reference/solutions/w6-self-attention --out grade-out/reference
	@echo "Report: grade-out/reference/feedback.html (and result.json, feedback.md, executed.ipynb)"

unit: $(STAMP)
	$(VENV)/bin/python -m pytest -m "not notebook" -q -n 2 --dist loadfile

notebooks: $(STAMP)
	$(VENV)/bin/python -m pytest -m notebook -q -n 2 --dist loadfile

test: unit notebooks

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/overhead.py

clean:
	rm -rf grade-out .pytest_cache
