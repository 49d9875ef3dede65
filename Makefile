# reactor developer tasks. `make install` then `make test` on a fresh machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROTOS := $(wildcard reactor/proto/*.proto)

.PHONY: install test test-media-range test-proto-range test-segment test-fast lint proto proto-check bench bench-soak publish upload docs docs-serve docs-gen clean

install: $(BIN)/reactor

$(BIN)/reactor: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# The distribution was called "reactor" before it became reactor-live; drop that install.
	@$(BIN)/pip uninstall --quiet --yes reactor 2>/dev/null || true
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@
	@echo "installed: $(BIN)/reactor (activate with: . $(VENV)/bin/activate)"

test: install
	$(BIN)/pytest -q

# test-media-range: the media tests at the LOW end of the aiortc/aioice pin (pyproject.toml),
# in a second venv. `make test` runs them at the HIGH end: pip gives .venv the newest
# versions the pin allows, which is its high end (aiortc 1.16.0, aioice 0.13.0) because the
# pin admits nothing past the versions tested. The registry's checked versions
# (reactor/media/patches/registry.py) name the same two ends.
MEDIA_VENV ?= .venv-media-low
AIORTC_LOW ?= 1.16.0
AIOICE_LOW ?= 0.12.0
MEDIA_TESTS ?= tests/unit/media tests/integration/test_media.py
test-media-range: $(MEDIA_VENV)/bin/reactor
	$(MEDIA_VENV)/bin/pytest -q -p no:cacheprovider $(MEDIA_TESTS)

# test-proto-range: every unit test and a daemon end to end on the LOWEST version of each
# runtime dependency pyproject.toml admits (tools/low_pins.py reads them: numpy, av, pydantic,
# pyzmq, aiohttp, ...), protobuf 4.21 among them, in a third venv without the dev extra
# (grpcio-tools needs a new protobuf); `make test` runs the highest. A model whose stack pins
# protobuf<5 or numpy<2 (MediaPipe, older TensorFlow) gets the low ends.
PROTO_VENV ?= .venv-proto-low
PROTOBUF_LOW ?= 4.21.12
PROTO_TESTS ?= tests/unit tests/integration/test_daemon.py
test-proto-range: $(PROTO_VENV)/bin/reactor
	$(PROTO_VENV)/bin/python -c "import google.protobuf as p; assert p.__version__ == '$(PROTOBUF_LOW)', p.__version__"
	$(PROTO_VENV)/bin/python tools/low_pins.py --check --except protobuf
	$(PROTO_VENV)/bin/pytest -q -p no:cacheprovider $(PROTO_TESTS)

$(PROTO_VENV)/bin/reactor: pyproject.toml
	$(PY) -m venv $(PROTO_VENV)
	$(PROTO_VENV)/bin/pip install --quiet --upgrade pip
	$(PROTO_VENV)/bin/pip install --quiet -e . protobuf==$(PROTOBUF_LOW) \
	    $$($(PY) tools/low_pins.py --except protobuf) \
	    'pytest>=8,<10' 'pytest-timeout>=2.3,<3' 'hypothesis>=6.100,<7'
	@touch $@

# test-segment: the segmentation example with its real model (reactor.examples.segment),
# in a venv with the segment extra: MediaPipe 0.10 pins protobuf<5, which the dev extra's
# grpcio-tools cannot share, so .venv runs those tests skipped.
SEGMENT_VENV ?= .venv-segment
SEGMENT_TESTS ?= tests/unit/test_segment_example.py
test-segment: $(SEGMENT_VENV)/bin/reactor
	$(SEGMENT_VENV)/bin/pytest -q -p no:cacheprovider $(SEGMENT_TESTS)

$(SEGMENT_VENV)/bin/reactor: pyproject.toml
	$(PY) -m venv $(SEGMENT_VENV)
	$(SEGMENT_VENV)/bin/pip install --quiet --upgrade pip
	$(SEGMENT_VENV)/bin/pip install --quiet -e '.[segment]' \
	    'pytest>=8,<10' 'pytest-timeout>=2.3,<3' 'hypothesis>=6.100,<7'
	@touch $@

$(MEDIA_VENV)/bin/reactor: pyproject.toml
	$(PY) -m venv $(MEDIA_VENV)
	$(MEDIA_VENV)/bin/pip install --quiet --upgrade pip
	$(MEDIA_VENV)/bin/pip install --quiet -e '.[dev]'
	$(MEDIA_VENV)/bin/pip install --quiet aiortc==$(AIORTC_LOW) aioice==$(AIOICE_LOW)
	@touch $@

test-fast: install
	$(BIN)/pytest -q -m "not slow and not browser"

# lint-imports: the layer rules, [tool.importlinter] in pyproject.toml.
lint: install
	$(BIN)/ruff check reactor tests tools
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

# proto: the generated modules, without protoc's runtime version check (tools/proto_check.py)
proto: install
	$(BIN)/python tools/proto_check.py --write

proto-check: install
	$(BIN)/python tools/proto_check.py

# bench: every section but soak (tools/bench.py all), the table on stdout and every figure
# in bench-results.json; BENCH_ARGS=--quick for a smoke run. bench-soak: MINUTES=10.
# Its network section runs daemons in network namespaces (root, iproute2, tc, nft); without
# them it says why in one line and measures only the pacer's CPU.
MINUTES ?= 10
bench: install
	$(BIN)/python tools/bench.py all $(BENCH_ARGS)

bench-soak: install
	$(BIN)/python tools/bench.py soak --minutes $(MINUTES) $(BENCH_ARGS)

# gpu-check: every `cuda`-marked test and the gpu bench (CudaRing hand-off, colour on the
# GPU, NVENC vs libx264, a torch model's fps and emit() share, all at 1080p) in <= 5
# minutes, written to gpu-results.json; without a CUDA device it says why and exits 0.
.PHONY: gpu-check
gpu-check: install
	$(BIN)/python tools/gpu_check.py $(GPU_CHECK_ARGS)

publish: install
	$(BIN)/python tools/publish.py $(PUBLISH_ARGS)

# Credentials come only from the environment: TWINE_API_KEY (a PyPI API token), or
# TWINE_USERNAME and TWINE_PASSWORD; TWINE_REPOSITORY_URL picks another index (TestPyPI).
upload: install
	@ls dist/*.whl dist/*.tar.gz >/dev/null 2>&1 || \
	    { echo "upload: no wheel or sdist in dist/; run 'make publish' first" >&2; exit 1; }
	@if [ -n "$$TWINE_API_KEY" ]; then export TWINE_USERNAME=__token__ TWINE_PASSWORD="$$TWINE_API_KEY"; fi; \
	if [ -z "$$TWINE_USERNAME" ] || [ -z "$$TWINE_PASSWORD" ]; then \
	    echo "upload: set TWINE_API_KEY, or TWINE_USERNAME and TWINE_PASSWORD" >&2; exit 1; fi; \
	$(BIN)/twine check --strict dist/*.whl dist/*.tar.gz && \
	$(BIN)/twine upload --non-interactive dist/*.whl dist/*.tar.gz

# The docs site (mkdocs.yml, docs/): strict, so a broken link or a missing page fails.
# docs-gen rewrites the generated references (config, CLI, HTTP API) from the code.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict

docs-gen: install
	$(BIN)/python tools/docs_gen.py

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache bench-results.json site
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
