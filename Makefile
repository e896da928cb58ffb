# The two commands of the README: `make demo` and `make test`. Both set up first.
CARGO ?= cargo
# The Python package's test environment, made by tools/setup.sh.
VENV := $(CURDIR)/.venv

.PHONY: setup demo test lint bench pytest

setup:
	@tools/setup.sh

demo: setup
	$(CARGO) run --release -- render --force -o demo.mp4
	@echo "demo.mp4: the explainer video of the embedded model on the embedded demo scene"

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) check --lib --no-default-features
	$(CARGO) clippy -p swin-rollout-python -- -D warnings

test: lint
	$(CARGO) test --all-targets
	$(CARGO) test --doc
	$(MAKE) --no-print-directory pytest

# The Python package: built into .venv with maturin, then its tests, which also run the CLI.
pytest: setup
	$(CARGO) build --profile test --bin swin-rollout
	VIRTUAL_ENV=$(VENV) $(VENV)/bin/maturin develop --quiet --manifest-path python/Cargo.toml
	SWIN_ROLLOUT_BIN=$(CURDIR)/target/debug/swin-rollout $(VENV)/bin/python -m pytest python/tests -q

bench: setup
	$(CARGO) bench
