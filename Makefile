# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create (or reuse) .venv and install CPU torch 2.13.0 *first* (any other torch request on this
# machine can pull a multi-GB CUDA build), then the package with the exact versions CI used
# (constraints.txt; `make lock` refreshes it).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONSTRAINTS := constraints.txt
PIP_INSTALL := $(PY) -m pip install --quiet -c $(CONSTRAINTS)
FUZZ_FACTOR ?= 10
# Reference losses whose packages declare torchvision (unusable with this CPU torch) but whose loss modules run
# without it: installed without their declared dependencies, for the tests (the [references] extra brings the rest).
NO_DEPS_REFERENCES := libauc dlordinal

.PHONY: demo test docs fuzz lint install lock clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# One stamp per extra: the demo needs only [demo]; the tests need [dev] (which includes [demo] and [text]).
$(VENV)/.installed-%: pyproject.toml $(CONSTRAINTS) | $(PY)
	$(PIP_INSTALL) --upgrade pip
	$(PIP_INSTALL) torch==2.13.0
	$(PIP_INSTALL) -e '.[$*]'
	$(if $(filter dev,$*),$(PIP_INSTALL) --no-deps $(NO_DEPS_REFERENCES))
	touch $@

install: $(VENV)/.installed-dev

demo: $(VENV)/.installed-demo
	$(VENV)/bin/metricloss demo

test: $(VENV)/.installed-dev
	$(PY) -m ruff check src tests benchmarks scripts
	$(PY) -m pytest -q -n 2

# The documentation site (mkdocs.yml) into site/, strictly: a broken link, a missing page or reference, or a docstring
# that does not parse fails it. `make test` builds it too (tests/test_docs.py), so CI checks it.
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

# The property tests with FUZZ_FACTOR times the examples and fresh random draws (CI's profile is derandomised).
# A failure prints its @reproduce_failure blob: add the case to the test as an explicit @example.
fuzz: $(VENV)/.installed-dev
	HYPOTHESIS_PROFILE=fuzz METRICLOSS_FUZZ_FACTOR=$(FUZZ_FACTOR) $(PY) -m pytest -q -n 2 -m hypothesis -p no:cacheprovider

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check src tests benchmarks scripts

# Re-resolve every dependency to the newest versions pyproject.toml allows and write them to constraints.txt.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet torch==2.13.0
	.lock-venv/bin/python -m pip install --quiet '.[dev]'
	.lock-venv/bin/python -m pip install --quiet --no-deps $(NO_DEPS_REFERENCES)
	{ echo "# The exact versions CI installed (\`make test\` and \`make demo\` install with \`-c constraints.txt\`)."; \
	  echo "# Refresh: \`make lock\` (a fresh venv, the newest versions pyproject.toml allows, pip freeze); commit the result."; \
	  .lock-venv/bin/python -m pip freeze --all --exclude-editable | grep -v -i '^metricloss' \
	    | sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/'; } > $(CONSTRAINTS)
	rm -rf .lock-venv build

clean:
	rm -rf $(VENV) .lock-venv build dist site src/*.egg-info
