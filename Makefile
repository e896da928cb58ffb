# The two commands of the README: `make demo` and `make test`. Both set up first.
CARGO ?= cargo

.PHONY: setup demo test lint bench

setup:
	@tools/setup.sh

demo: setup
	$(CARGO) run --release -- render --force -o demo.mp4
	@echo "demo.mp4: the explainer video of the embedded model on the embedded demo scene"

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) check --lib --no-default-features

test: lint
	$(CARGO) test --all-targets
	$(CARGO) test --doc

bench: setup
	$(CARGO) bench
