# ttpulse: the two commands are `make run` and `make test`.
CARGO ?= cargo

.PHONY: run build test test-unit test-integration fmt lint migrate clean up down status

## run: build (release) and start every role in one process on the embedded default; prints the URL
run:
	$(CARGO) build --release --locked --bin ttpulse
	./target/release/ttpulse run

## build: debug build of everything, tests included
build:
	$(CARGO) build --workspace --all-targets --locked

## test: every test (unit tests of the pure domain code, integration tests against a real server)
test:
	$(CARGO) test --workspace --locked

test-unit:
	$(CARGO) test --workspace --locked --lib

test-integration:
	$(CARGO) test --workspace --locked --tests

## migrate: create or upgrade the database schema, then exit
migrate:
	$(CARGO) run --release --locked --bin ttpulse -- migrate

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
