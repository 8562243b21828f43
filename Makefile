# Two entry points for a fresh machine: `make demo` (meta-train + adapt on the embedded demo) and
# `make test` (the test suite). Both create .venv and install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: demo test test-core install bench clean install-vision install-learn2learn test-vision check-install

# A stamp file marks a completed torch install, so an interrupted setup is redone, not trusted.
$(VENV)/.torch-installed:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	touch $@

# A plain editable install, as users do; versions as CI tested them (.ci/constraints.txt).
install: $(VENV)/.torch-installed
	$(BIN)/pip install --quiet -c .ci/constraints.txt -e '.[test]'

# What the two steps show is explained in README.md ("Two commands").
demo: install
	@echo "== 1/2  piaa meta-train: learn a prior from the demo's training raters (about a minute) =="
	$(BIN)/piaa meta-train
	@echo
	@echo "== 2/2  piaa adapt --user 42 --shots 10: personalise to test rater 42 from 10 of their ratings =="
	$(BIN)/piaa adapt --user 42 --shots 10

test: test-core
	$(MAKE) test-vision

# Every test, slow ones included, one line per test file and the ten slowest at the end.
# The quick core suite alone: $(BIN)/pytest -m "not slow".
test-core: install
	@echo "== core suite: every test file in turn (slow tests included; -m 'not slow' skips them) =="
	$(BIN)/pytest -p no:cacheprovider --durations=10

# The vision extra (torchvision, open_clip) in its own venv: torchvision 0.29.1 only imports beside
# torch 2.14.1, which differs from the core venv's torch. A stamp file marks a completed torch install.
VISION_VENV ?= .venv-vision
VBIN := $(VISION_VENV)/bin
VISION_TORCH ?= torch==2.14.1 torchvision==0.29.1

$(VISION_VENV)/.torch-installed:
	$(PYTHON) -m venv $(VISION_VENV)
	$(VBIN)/pip install --quiet --upgrade pip
	$(VBIN)/pip install --quiet $(VISION_TORCH)
	touch $@

install-vision: $(VISION_VENV)/.torch-installed
	$(VBIN)/pip install --quiet -c .ci/constraints.txt -e '.[test,vision]'

# learn2learn 0.2.0 into the vision venv (its import needs torchvision), rebuilt from the sdist with
# current Cython because its shipped C files do not compile on Python 3.11; see docs/learn2learn.md.
# The wheel is cached in L2L_CACHE and a stamp marks the venv, so a second run does nothing.
L2L_CACHE ?= $(HOME)/.cache/piaa/learn2learn-0.2.0

$(VISION_VENV)/.learn2learn-installed: $(VISION_VENV)/.torch-installed .ci/install-learn2learn
	bash .ci/install-learn2learn $(VBIN)/python $(L2L_CACHE)
	touch $@

install-learn2learn: $(VISION_VENV)/.learn2learn-installed

test-vision: install-vision install-learn2learn
	$(VBIN)/pytest -m vision

# Fresh virtual environments installed the way users install (plain `pip install -e .` and
# `pip install .`), then the console script and a usage error; see .ci/check-install.
check-install:
	bash .ci/check-install

bench: install
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) $(VISION_VENV) build *.egg-info runs
