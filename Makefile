# The two commands a newcomer types: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LEVELS ?= 1,2,4
STAGE_TIME ?= 20s
USERS ?= 10

.PHONY: setup system-deps demo test bench lint clean docker-images

setup: system-deps $(VENV)/.installed

system-deps:
	@sh scripts/system-deps.sh

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

demo: setup
	$(VENV)/bin/locust -f loadtest/hello.py --headless -u $(USERS) -r $(USERS) \
		--scale-levels $(LEVELS) --stage-time $(STAGE_TIME) --only-summary
	$(PY) analyze.py reports/latest; status=$$?; \
		echo "Run and report: reports/latest/ (open reports/latest/report.html)"; \
		[ $$status -le 1 ]

test: setup
	@SCALECHECK_WITH_DOCKER=1 sh scripts/system-deps.sh
	$(PY) -m pytest

bench: setup
	$(PY) -m benchmarks $(BENCH)

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) reports .pytest_cache

# Images for the Compose stack, built without a registry (root, dockerd running).
docker-images: setup
	PYTHON=$(PY) sh scripts/docker-images.sh
