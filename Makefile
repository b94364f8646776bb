# inferd — the two commands are `make run` and `make test`.
SHELL := /bin/bash
CACHE ?= $(or $(INFERD_CACHE),$(HOME)/.cache/inferd)
ORT_VERSION := 1.31.1
export ORT_DYLIB_PATH := $(CACHE)/onnxruntime/$(ORT_VERSION)/libonnxruntime.so.$(ORT_VERSION)
export INFERD_MODELS := $(CACHE)/models
export INFERD_CACHE := $(CACHE)
export INFERD_BENCH_MODELS := $(CACHE)/bench-models
VENV := $(CACHE)/venv
# The importer package from this checkout, whichever checkout the venv's editable install names.
export PYTHONPATH := $(CURDIR)/models/importer
CARGO ?= cargo

GGUF := $(CACHE)/gguf/SmolLM2-135M-Instruct.Q4_1.gguf
PY := $(VENV)/bin/python
# Imports the end-to-end tests use, keyed by the importer's code so a change re-imports them.
IMPORTER_HASH := $(shell cat models/importer/inferd_import/*.py models/importer/inferd_import/sources/*.py models/intent/* models/testdata/*.py models/importer/tests/reference.py models/importer/tests/tiny_models.py models/importer/tests/test_{gemma2,llama3,mistral,phi3,qwen3}.py | sha256sum | cut -c1-12)
export INFERD_TEST_MODELS := $(CACHE)/test-models/$(IMPORTER_HASH)

.PHONY: gpu-bench bench-huge-pages bench-generation bench-footprint sizing bench-shapes bench-models builder-models run test test-models fetch models build check-tools lint pytest bench bench-check fixtures dbus-xml clean-cache deb package-check reliability soak fuzz

## Fetch ONNX Runtime and the default models, build in release, serve in the foreground.
run: models build
	scripts/run.sh target/release/inferd "$(INFERD_MODELS)"

## Everything CI runs: formatting, lints, unit tests, end-to-end tests, importer tests.
test: fetch check-tools lint test-models
	$(CARGO) build --workspace
	$(CARGO) test --workspace
	$(MAKE) --no-print-directory pytest
	$(MAKE) --no-print-directory package-check
	$(MAKE) --no-print-directory fuzz

## Each fuzz target for FUZZ_SECS seconds (CI: 30), seeded from fuzz/corpus/; cargo-fuzz is
## installed once into the cache.
FUZZ_SECS ?= 30
FUZZ_OUT ?= $(CURDIR)/target/fuzz-out
CARGO_FUZZ := $(CACHE)/tools/bin/cargo-fuzz
fuzz:
	@test -x "$(CARGO_FUZZ)" || $(CARGO) install cargo-fuzz --locked --version 0.13.2 --root "$(CACHE)/tools"
	PATH="$(CACHE)/tools/bin:$$PATH" scripts/fuzz.sh $(FUZZ_SECS) $(FUZZ_OUT)

## The reliability suite at the sizes in docs/reliability.md (R1-R6, R8, fuzzing 10 min a target);
## the results table there is rewritten from this run. `make test` runs short versions.
RELIABILITY_OUT := $(CURDIR)/target/reliability
reliability: fetch check-tools test-models
	$(CARGO) build --workspace
	rm -rf "$(RELIABILITY_OUT)" && mkdir -p "$(RELIABILITY_OUT)"
	INFERD_RELIABILITY=full INFERD_RELIABILITY_OUT="$(RELIABILITY_OUT)" \
	  $(CARGO) test -p inferd-e2e --test reliability --test bad_input --test hostile -- --test-threads=1 --skip soak
	$(MAKE) --no-print-directory fuzz FUZZ_SECS=600 FUZZ_OUT="$(RELIABILITY_OUT)"
	python3 scripts/reliability_report.py "$(RELIABILITY_OUT)" docs/reliability.md

## Mixed load for DURATION seconds (default 120), reporting RSS and latency drift into
## docs/reliability.md.
DURATION ?= 120
soak: fetch check-tools test-models
	$(CARGO) build --workspace
	mkdir -p "$(RELIABILITY_OUT)"
	INFERD_SOAK_SECS=$(DURATION) INFERD_RELIABILITY_OUT="$(RELIABILITY_OUT)" \
	  $(CARGO) test -p inferd-e2e --test reliability soak -- --ignored
	python3 scripts/reliability_report.py "$(RELIABILITY_OUT)" docs/reliability.md

## The importer's tests alone (needs `make fetch`).
pytest: $(VENV)/ok
	cd models/importer && $(PY) -m pytest -q tests
	$(PY) -m pytest -q scripts/test_bench_check.py

## LLM imports for the end-to-end tests (fp32 SmolLM2 for golden text, random tiny-qwen2 in both
## layouts, the scripted reasoning model `think`), and a tiny checkpoint of each family with its
## reference greedy text.
test-models: fetch $(VENV)/ok
	@test -f "$(INFERD_TEST_MODELS)/smollm2-fp32/model.onnx" || \
	  $(PY) -m inferd_import "$(GGUF)" --name smollm2-fp32 --precision fp32 --models "$(INFERD_TEST_MODELS)" --force
	@test -f "$(INFERD_TEST_MODELS)/intent/model.onnx" || \
	  $(PY) models/intent/build_intent.py "$(INFERD_MODELS)/minilm" "$(INFERD_TEST_MODELS)/intent"
	@test -f "$(INFERD_TEST_MODELS)/tiny-qwen2/model.onnx" || \
	  $(PY) -m inferd_import --random models/configs/tiny-qwen2.json --tokenizer "$(GGUF)" --name tiny-qwen2 \
	    --precision fp32 --models "$(INFERD_TEST_MODELS)" --force
	@test -f "$(INFERD_TEST_MODELS)/tiny-qwen2-genai/model.onnx" || \
	  $(PY) -m inferd_import --random models/configs/tiny-qwen2.json --tokenizer "$(GGUF)" --name tiny-qwen2-genai \
	    --precision fp32 --layout genai --models "$(INFERD_TEST_MODELS)" --force
	@test -f "$(INFERD_TEST_MODELS)/think/model.onnx" || \
	  $(PY) models/testdata/make_think_model.py "$(INFERD_TEST_MODELS)/smollm2-fp32" "$(INFERD_TEST_MODELS)/think"
	@test -f "$(INFERD_TEST_MODELS)/families/gemma2.json" || { rm -rf "$(INFERD_TEST_MODELS)/families" && \
	  $(PY) models/testdata/make_family_models.py "$(INFERD_TEST_MODELS)/tiny-qwen2/tokenizer.json" "$(INFERD_TEST_MODELS)/families"; }

## Download (once, sha256-verified) into $(CACHE).
fetch:
	@python3 models/fetch.py --cache "$(CACHE)" >/dev/null

## The default models: minilm (fetched) and smollm2 (imported natively from its GGUF, its own Q4_1
## quantization transcoded; again only when the native importer changes).
NATIVE_IMPORTER_HASH := $(shell cat importer/src/*.rs importer/src/*/*.rs | sha256sum | cut -c1-12)
models: fetch build $(VENV)/ok
	@test "$$(cat "$(INFERD_MODELS)/smollm2/.importer" 2>/dev/null)" = "native-$(NATIVE_IMPORTER_HASH)" || { \
	  target/release/inferctl import "$(GGUF)" --name smollm2 --models "$(INFERD_MODELS)" --force && \
	  echo "native-$(NATIVE_IMPORTER_HASH)" > "$(INFERD_MODELS)/smollm2/.importer"; }
	@test -f "$(INFERD_MODELS)/intent/model.onnx" || \
	  $(PY) models/intent/build_intent.py "$(INFERD_MODELS)/minilm" "$(INFERD_MODELS)/intent"

build:
	$(CARGO) build --release -p inferd -p inferd-client

## The Debian package (target/debian/inferd_*.deb), with cargo-deb installed once into the cache.
CARGO_DEB := $(CACHE)/tools/bin/cargo-deb
deb: build
	@test -x "$(CARGO_DEB)" || $(CARGO) install cargo-deb --locked --version 3.8.0 --root "$(CACHE)/tools"
	mkdir -p target/manual
	for s in bash zsh fish; do target/release/inferctl completions $$s > target/manual/inferctl.$$s; done
	target/release/inferctl man | gzip -9n > target/manual/inferctl.1.gz
	rm -f target/debian/*.deb
	"$(CARGO_DEB)" -p inferd --no-build -o target/debian/

## The unit passes systemd-analyze (exposure <= 2.0); the .deb has every file where it belongs.
package-check: deb
	scripts/check-unit.sh
	scripts/check-deb.sh target/debian/inferd_*.deb "$(GGUF)"

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	python3 scripts/module_cycles.py daemon/src

check-tools:
	@for t in dbus-daemon busctl gdbus gdbus-codegen pkg-config setpriv cc mosquitto mosquitto_pub mosquitto_sub mosquitto_passwd openssl systemd-analyze systemd-sysusers dpkg-deb unshare; do \
	  command -v $$t >/dev/null || { echo "missing $$t: run .ci/run, or apt-get install dbus systemd libglib2.0-bin libglib2.0-dev pkg-config util-linux gcc mosquitto mosquitto-clients openssl"; exit 1; }; \
	done

## Benchmarks; results go to docs/benchmarks.md.
# onnxruntime-genai runs in the bench's own process, and glibc's huge-page tunable backs its
# weights with huge pages, as inferd backs its own by itself (`execution.huge_pages`): both
# sides run at their best.
BENCH_ENV := GLIBC_TUNABLES=glibc.malloc.hugetlb=1

bench: bench-models
	$(CARGO) build --release -p inferd-e2e --bin inferd-bench
	$(BENCH_ENV) $(VENV)/bin/python scripts/bench.py --inferd target/release/inferd --inferctl target/release/inferctl \
	  --gguf "$(GGUF)" --out docs/benchmarks.md --json docs/bench.json

## The text-generation section of `make bench` alone (inferd with and without drafts vs
## onnxruntime-genai), its part of docs/benchmarks.md and docs/bench.json rewritten.
bench-generation: bench-models
	$(CARGO) build --release -p inferd
	cd scripts && $(BENCH_ENV) $(abspath $(PY)) bench_generation.py --inferd $(abspath target/release/inferd) \
	  --out $(abspath docs/benchmarks.md) --json $(abspath docs/bench.json)

## The Footprint section of `make bench` alone, printed: idle RSS, start → READY=1, binary sizes.
bench-footprint: models build
	python3 scripts/bench_footprint.py target/release/inferd target/release/inferctl "$(INFERD_MODELS)"

## The sizing table of docs/operations.md, printed: figures from the configs, checked against
## inferd loading the int4 imports.
sizing: bench-models
	python3 scripts/sizing.py target/release/inferd target/release/inferctl "$(INFERD_MODELS)/smollm2" \
	  "$(CACHE)/bench-models/r1-distill-qwen-1.5b-shape" "$(INFERD_TEST_MODELS)/smollm2-fp32"

bench-models: models test-models build $(VENV)/ok
	@test -f "$(CACHE)/bench-models/r1-distill-qwen-1.5b-shape/model.onnx" || \
	  $(PY) -m inferd_import --random models/configs/r1-distill-qwen-1.5b-shape.json --tokenizer "$(GGUF)" \
	    --name r1-distill-qwen-1.5b-shape --precision int4 --models "$(CACHE)/bench-models" --force

## inferd's decode with its weights in huge pages and without (docs/benchmarks.md, its section).
bench-huge-pages: bench-models
	$(CARGO) build --release -p inferd
	cd scripts && $(abspath $(PY)) bench_huge_pages.py --inferd $(abspath target/release/inferd) \
	  --out $(abspath docs/benchmarks.md)

## The DeepSeek-R1 distill shapes alone (1.5B, 7B, 8B; native int4 imports made once, minutes
## each), their section of docs/benchmarks.md rewritten.
bench-shapes: models build $(VENV)/ok
	cd scripts && $(abspath $(PY)) bench_shapes.py --inferd $(abspath target/release/inferd) \
	  --inferctl $(abspath target/release/inferctl) --gguf "$(GGUF)" --out $(abspath docs/benchmarks.md)

## A bench run compared with the committed one (docs/bench.json): every figure is a ratio to a
## reference measured in the same run; fails when one is more than 15% worse.
bench-check: bench-models
	$(CARGO) build --release -p inferd-e2e --bin inferd-bench
	mkdir -p target/bench-check
	$(VENV)/bin/python scripts/bench.py --inferd target/release/inferd --inferctl target/release/inferctl \
	  --gguf "$(GGUF)" --out target/bench-check/benchmarks.md --json target/bench-check/bench.json
	python3 scripts/bench_check.py docs/bench.json target/bench-check/bench.json

## On a machine with an NVIDIA GPU: scripts/gpu-check.sh (CUDA registers, every model lands on
## it), then inferd against onnxruntime-genai-cuda on the same files (scripts/gpu_bench.py):
## r1-distill-qwen-1.5b-shape in fp16 (genai layout) and int4 (optimum layout, wholly on CUDA),
## and SmolLM2 int4; plus SmolLM2's greedy text on CUDA against the transformers fixture. The
## table is appended to docs/benchmarks.md. ORT_DYLIB_PATH (or ORT_GPU_LIB) names
## onnxruntime-gpu's library; GPU_PY is a python with onnxruntime-genai-cuda and the importer's
## packages (torch too, for the bandwidth). ../shared/gpu/README.md has the lent H200's steps.
GPU_MODELS := $(CACHE)/gpu-bench-models
GPU_PY ?= python3
gpu-bench:
	$(CARGO) build --release -p inferd -p inferd-client
	ORT_GPU_LIB="$${ORT_GPU_LIB:-$$ORT_DYLIB_PATH}" scripts/gpu-check.sh
	for spec in "fp16 genai" "int4 optimum"; do set -- $$spec; \
	  test -f "$(GPU_MODELS)/r1-$$1/model.onnx" || (cd models/importer && $(GPU_PY) -m inferd_import \
	    --random ../configs/r1-distill-qwen-1.5b-shape.json --tokenizer "$(GGUF)" --name r1-$$1 \
	    --precision $$1 --layout $$2 --models "$(GPU_MODELS)" --force) || exit 1; done
	ORT_DYLIB_PATH="$${ORT_GPU_LIB:-$$ORT_DYLIB_PATH}" $(GPU_PY) scripts/gpu_bench.py \
	  --model r1-fp16="$(GPU_MODELS)/r1-fp16" --model r1-int4="$(GPU_MODELS)/r1-int4" \
	  --model smollm2-int4="$(INFERD_MODELS)/smollm2" \
	  --fixture-model "$(INFERD_TEST_MODELS)/smollm2-fp32" --out docs/benchmarks.md

## Regenerate committed test data (needs the dev venv; results are committed).
fixtures: fetch $(VENV)/ok
	$(VENV)/bin/python models/testdata/make_test_models.py tests/data
	$(VENV)/bin/python tests/fixtures/make_minilm_reference.py "$(INFERD_MODELS)/minilm"

## onnxruntime-genai builder exports made the way users make them (needs torch and transformers:
## a venv of its own under the cache, several GB, never in CI): the tiny test exports kept in
## tests/data with onnxruntime-genai's reference for them, and SmolLM2 at int4 and fp32 for
## `make bench`.
BUILDER_VENV := $(CACHE)/builder-venv
builder-models: fetch $(VENV)/ok $(BUILDER_VENV)/ok
	$(BUILDER_VENV)/bin/python models/builder/make_builder_models.py --gguf "$(GGUF)" \
	  --tests tests/data --bench "$(CACHE)/builder-models"
	$(PY) tests/fixtures/make_builder_reference.py tests/data tests/fixtures/builder_tiny_greedy.json

$(BUILDER_VENV)/ok: models/builder/requirements.txt models/importer/pyproject.toml
	python3 -m venv "$(BUILDER_VENV)"
	"$(BUILDER_VENV)/bin/pip" install --quiet -r models/builder/requirements.txt
	"$(BUILDER_VENV)/bin/pip" install --quiet --no-deps -e models/importer
	touch "$@"

## Rewrite packaging/dbus/org.inferd.Inferd1.xml from a running daemon (the introspection test
## writes what it would compare).
dbus-xml: fetch test-models
	$(CARGO) build --workspace
	INFERD_WRITE_DBUS_XML=1 $(CARGO) test -p inferd-e2e --test introspection live_introspection

$(VENV)/ok: scripts/requirements-dev.txt models/importer/pyproject.toml
	python3 -m venv "$(VENV)"
	"$(VENV)/bin/pip" install --quiet -r scripts/requirements-dev.txt
	"$(VENV)/bin/pip" install --quiet --no-deps -e models/importer
	touch "$@"

clean-cache:
	rm -rf "$(CACHE)"
