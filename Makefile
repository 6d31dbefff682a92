# The two commands a newcomer types: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LEVELS ?= 1,2,4
STAGE_TIME ?= 20s
USERS ?= 10

.PHONY: setup system-deps demo demo-autoscale demo-faults test test-fast bench lint clean \
	docker-images kube-build

setup: system-deps $(VENV)/.installed

system-deps:
	@sh scripts/system-deps.sh

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,shop]'  # shop: examples/shop's web stack, for its tests and docs
	@touch $@

demo: setup
	$(VENV)/bin/locust -f loadtest/hello.py --headless -u $(USERS) -r $(USERS) \
		--scale-levels $(LEVELS) --stage-time $(STAGE_TIME) --only-summary \
		--exit-code-on-error 0
	$(PY) analyze.py reports/latest; status=$$?; \
		echo "Run and report: reports/latest/ (open reports/latest/report.html)"; \
		[ $$status -ne 2 ]  # a verdict (pass, fail, inconclusive) was reached

# Autoscaling on CPU, about 3 minutes: each replica limited to a quarter of a core and each
# request costing 5 ms of CPU (about 50 req/s per replica), open-model load rising to
# 150 req/s and back, an HPA on CPU utilisation (target 60 % of the request, 3 s sync
# period, 20 s scale-down window) following it. The limits need root (cgroups).
demo-autoscale: setup
	CPU_MS=5 $(VENV)/bin/locust -f loadtest/hello.py --headless --only-summary \
		--exit-code-on-error 0 \
		--load-model open --load-profile 0s:20,20s:150,80s:150,95s:20,180s:20 \
		--autoscale hpa --autoscale-metric cpu --autoscale-target 60 --replica-cpus 0.25 \
		--min-replicas 1 --max-replicas 4 --autoscale-period 3s --scale-down-window 20s \
		--slo-p95-ms 100
	$(PY) analyze.py reports/latest; status=$$?; \
		echo "Run and report: reports/latest/ (open reports/latest/report.html)"; \
		[ $$status -ne 2 ]  # a verdict (pass, fail, inconclusive) was reached

# Faults, about 2 minutes: one of each kind on 3 replicas, dead replicas replaced.
demo-faults: setup
	$(VENV)/bin/locust -f loadtest/hello.py --headless -u $(USERS) -r $(USERS) --only-summary \
		--exit-code-on-error 0 \
		--scale-levels 3,2 --stage-time 60s --replace-dead \
		--fault 10s:kill-replica --fault 22s:pause-replica:3s --fault 34s:pause-redis:3s \
		--fault 46s:latency:redis:50ms:5s --fault 58s:reset:redis:2s \
		--fault 70s:restart-redis:persist --fault 82s:restart-balancer \
		--fault 96s:restart-redis
	$(PY) analyze.py reports/latest; status=$$?; \
		echo "Run and report: reports/latest/ (open reports/latest/report.html)"; \
		[ $$status -ne 2 ]  # a verdict (pass, fail, inconclusive) was reached

test: setup kube-build
	@SCALECHECK_WITH_DOCKER=1 sh scripts/system-deps.sh
	$(PY) -m pytest

# The fast loop, under two minutes: the unit tests and those that start only processes of
# their own (analyze.py, scalecheck), no stack, no Docker, no cluster (markers: pyproject).
test-fast: setup
	$(PY) -m pytest -q -m "not slow and not stack and not docker and not kubernetes"

bench: setup
	$(PY) -m benchmarks $(BENCH)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports  # the layers: pyproject's [tool.importlinter]

clean:
	rm -rf $(VENV) reports .pytest_cache

# The throwaway Kubernetes of tests/kubernetes: Debian packages (as root), then its
# components built from the Go module proxy into ~/.cache/scalecheck/kube/<version>/
# (about 8 minutes on 2 cores the first time, nothing the next).
kube-build: setup
	@SCALECHECK_WITH_KUBE=1 sh scripts/system-deps.sh
	@if command -v go >/dev/null 2>&1; then sh scripts/kube-build.sh >/dev/null; \
	else echo "scalecheck: go not found: the Kubernetes tests will be skipped (and fail under CI)"; fi

# Images for the Compose stack, built without a registry (root, dockerd running).
docker-images: setup
	PYTHON=$(PY) sh scripts/docker-images.sh
