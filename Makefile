# ttpulse: the two commands are `make run` and `make test`.
CARGO ?= cargo

.PHONY: run build test test-fairness deps bench bench-sessions bench-page bench-quick frontend test-frontend fuzz test-unit test-embedded test-distributed fmt lint migrate clean up down status

## run: build ttpulse (release) and the dashboard, start both on the embedded default (every role
## in one process); prints the dashboard URL
run:
	scripts/ensure-build-deps.sh
	$(CARGO) build --release --locked --bin ttpulse
	scripts/frontend-build.sh --if-needed
	frontend/scripts/run.sh ./target/release/ttpulse run

## build: debug build of everything, tests included
build:
	$(CARGO) build --workspace --all-targets --locked

## test: every test: unit tests of the pure domain code, integration tests against a real
## server, and the distributed tests against a real broker, Redis and PostgreSQL
test: deps
	$(CARGO) test --workspace --locked -- --skip $(FAIRNESS_TEST)
	$(MAKE) test-fairness
	scripts/frontend-test.sh
	python3 scripts/check-deploy.py && python3 scripts/check-deploy.py --self-test

## test-fairness: a steady client's p99 latency with and without a flooding client, compared in
## one run; alone, so that other tests' load does not fall on one phase only
FAIRNESS_TEST = security::a_flooding_client_does_not_raise_a_steady_clients_p99_latency
test-fairness:
	$(CARGO) test --locked -p ttpulse --test it -- --exact $(FAIRNESS_TEST) --nocapture

## deps: install or start what the tests need (packages, PostgreSQL, the nisshi broker)
deps:
	scripts/ensure-test-deps.sh

test-unit:
	$(CARGO) test --workspace --locked --lib
	$(CARGO) test --locked -p ttpulse-bench --bins

## test-embedded: everything but the distributed tests (needs no services)
test-embedded:
	$(CARGO) test --workspace --locked --lib --test it -- --skip distributed:: --skip $(FAIRNESS_TEST)

test-distributed: deps
	$(CARGO) test --workspace --locked --test it distributed::

## migrate: create or upgrade the database schema, then exit
migrate:
	$(CARGO) run --release --locked --bin ttpulse -- migrate

## bench: the benchmarks behind BENCHMARKS.md (about 15 minutes), written to bench/results/
bench: deps
	$(CARGO) build --release --locked -p ttpulse --bin ttpulse
	$(CARGO) build --release --locked -p ttpulse-bench
	./target/release/ttpulse-bench run --out bench/results
	$(MAKE) bench-sessions
	$(MAKE) bench-page

## bench-sessions: many sessions of one shape each (idle; quiet: one instrument, simulator at 100/s;
## dashboard: 12 instruments at max_rate 1 plus an account, wire v2; firehose: everything, beside
## the plain broadcast server), 1,000 to 10,000 sessions on one embedded process, and 10,000 to
## 50,000 quiet ones on three api processes of the distributed mode; markdown rows to
## bench/results/sessions/
SESSIONS_BENCH = ./target/release/ttpulse-bench sessions --sessions 1000,5000,10000
bench-sessions: deps
	$(CARGO) build --release --locked -p ttpulse --bin ttpulse
	$(CARGO) build --release --locked -p ttpulse-bench
	mkdir -p bench/results/sessions
	$(SESSIONS_BENCH) --profile idle > bench/results/sessions/idle.md
	$(SESSIONS_BENCH) --profile quiet --sim-rate 100 --broadcast > bench/results/sessions/quiet.md
	$(SESSIONS_BENCH) --profile dashboard --batched --broadcast > bench/results/sessions/dashboard.md
	$(SESSIONS_BENCH) --profile firehose > bench/results/sessions/firehose.md
	./target/release/ttpulse-bench sessions --sessions 10000,25000,50000 --profile quiet --sim-rate 100 \
		--api-nodes 3 > bench/results/sessions/quiet-distributed.md

## bench-page: what the dashboard costs the browser to keep open (headless Chromium, main
## thread busy at 200 and 2,000 events/s and quiet), to bench/results/page-cost.json
bench-page:
	$(CARGO) build --release --locked -p ttpulse --bin ttpulse
	scripts/frontend-build.sh --if-needed
	node frontend/bench/page-cost.mjs --out bench/results/page-cost.json

## bench-quick: the same in a few minutes (fewer rates, shorter windows), to bench/results/quick/
bench-quick: deps
	$(CARGO) build --release --locked -p ttpulse --bin ttpulse
	$(CARGO) build --release --locked -p ttpulse-bench
	./target/release/ttpulse-bench run --quick --out bench/results/quick

## fuzz: the property-based fuzz targets (event decoder, WebSocket message parser, ingest body)
## and extreme events through the whole engine, with 50,000 cases each instead of make test's
## 256; failures are kept in proptest-regressions/
fuzz:
	PROPTEST_CASES=50000 $(CARGO) test --workspace --locked --lib -- any_ arbitrary_fields json_shaped array_shaped valid_events extreme_events

## frontend: build the dashboard; test-frontend: its unit, hook and end-to-end tests
frontend:
	scripts/frontend-build.sh

test-frontend:
	scripts/frontend-test.sh

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

clean:
	$(CARGO) clean

## up: the distributed stack on this machine (broker, Redis, PostgreSQL database, one process per role)
up:
	scripts/stack.sh up

## down: stop what `make up` started
down:
	scripts/stack.sh down

status:
	scripts/stack.sh status
