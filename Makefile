# Two commands for a newcomer: `make run` and `make test` (README). Both create .venv and install.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test unit-tests integration-tests bench asyncapi clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m shared.launch

test: $(STAMP)
	$(BIN)/python -m pytest tests -q

unit-tests: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q

integration-tests: $(STAMP)
	$(BIN)/python -m pytest tests/integration -q

bench: $(STAMP)
	$(BIN)/python -m bench

asyncapi: $(STAMP)
	mkdir -p .run/asyncapi
	for s in binding settlement notify; do $(BIN)/python -m services.$$s.asyncapi > .run/asyncapi/$$s.json; done
	@echo "AsyncAPI 3.0 documents written to .run/asyncapi/"

clean:
	rm -rf $(VENV) .run .pytest_cache .hypothesis
