# Seshat's two commands:
#   make run    start a one-node server on 127.0.0.1:6379 (data in ./seshat-data)
#   make test   run every test
# Both install missing system packages first (scripts/deps.sh).

CARGO ?= cargo
SESHAT_ARGS ?=
# One build profile for everything, so RocksDB compiles once.
PROFILE_FLAGS := --release
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)

.PHONY: deps build run test fmt lint clean bench bench-micro

deps:
	@./scripts/deps.sh

build: deps
	$(CARGO) build $(PROFILE_FLAGS) --locked -p seshat -p seshat-loadgen

run: build
	$(TARGET_DIR)/release/seshat $(SESHAT_ARGS)

test: deps
	$(CARGO) test $(PROFILE_FLAGS) --locked --workspace --no-fail-fast

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy $(PROFILE_FLAGS) --locked --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean

# Seshat (3 nodes) against redis-server (AOF always / everysec) with
# redis-benchmark; prints a markdown table. SESHAT_BIN=path skips the build.
bench:
	./scripts/bench.sh

# Criterion micro-benchmarks of the request path (RESP decode/encode/dispatch,
# log entry codec, KV validate/apply). `cargo bench` uses the bench profile,
# which inherits release, so RocksDB is not rebuilt. The bench targets are
# named so criterion options in BENCH_ARGS (e.g. BENCH_ARGS=--quick, or a
# filter such as BENCH_ARGS=decode/) do not reach the libraries' libtest.
BENCH_ARGS ?=
bench-micro: deps
	$(CARGO) bench --locked -p seshat-protocol-resp -p seshat-raft --bench resp --bench codec -- $(BENCH_ARGS)
