# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: env demo test test-fast lint bench clean system-deps fuzz

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

env: $(STAMP)

demo: env
	$(VENV)/bin/edgeseq demo

# apt packages for the remote-target tests (sshd, adb, qemu-user-static, debootstrap); a no-op when not root or
# when they are installed, so `make test` works for everyone (those tests then skip with a reason).
system-deps:
	@./.ci/setup-system.sh

# Two pytest-xdist workers (CI has 2 cores), whole files to each; they share one cache of converted models
# (tests/_zoo_cache.py). TEST_WORKERS=0 runs in one process; a failure's output reads the same either way.
# --durations: the slowest tests in every log (the zoo cache's prefetch, in one test's setup, is most of the time).
TEST_WORKERS ?= 2
test: env system-deps
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=25

test-fast: env
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow"

# Longer fuzzing of the .tflite reader (tests/robustness/test_fuzz_tflite.py; EDGESEQ_FUZZ_SEED picks another run).
fuzz: env
	EDGESEQ_FUZZ_ITERATIONS=20000 $(PY) -m pytest -q tests/robustness/test_fuzz_tflite.py

lint: env
	$(PY) -m ruff check .

bench: env
	$(PY) benchmarks/accuracy.py

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
