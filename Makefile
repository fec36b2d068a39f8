# Two commands for a newcomer: `make run` and `make test` (README). Both create .venv and install.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install browser stunnel run test unit-tests integration-tests bench asyncapi clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP) stunnel
	$(BIN)/python -m tooling.launch

# The console's browser tests drive Debian's chromium through Playwright (never `playwright install`,
# which downloads a browser): installed here when missing and running as root; otherwise those
# tests fail saying how to install it. The Chinese font makes the page's screenshots readable.
browser:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	    && ! (command -v chromium >/dev/null && dpkg -s fonts-wqy-microhei >/dev/null 2>&1); then \
	  apt-get update && apt-get install -y --no-install-recommends chromium fonts-wqy-microhei; fi

# The local broker speaks TLS through Debian's stunnel (Tansu cannot serve TLS itself): installed
# here when missing and running as root; otherwise starting the local stack fails saying how.
stunnel:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	    && ! command -v stunnel >/dev/null && ! command -v stunnel4 >/dev/null; then \
	  apt-get update && apt-get install -y --no-install-recommends stunnel4; fi

# The whole suite on a UTC host, then the unit tests and the China-midnight module again on an
# Asia/Shanghai host: China dates must come from the platform's clock, never the host's zone.
test: $(STAMP) browser stunnel
	TZ=UTC $(BIN)/python -m pytest tests -q
	TZ=Asia/Shanghai $(BIN)/python -m pytest tests/unit tests/integration/test_china_midnight.py -q

unit-tests: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q

integration-tests: $(STAMP) browser stunnel
	$(BIN)/python -m pytest tests/integration -q

bench: $(STAMP) stunnel
	$(BIN)/python -m bench

# One AsyncAPI 3.0 document for every service under services/ that has an asyncapi.py;
# tests/unit/test_asyncapi.py fails when the committed file differs from what the code generates.
asyncapi: $(STAMP)
	$(BIN)/python -m shared.asyncapi docs/asyncapi.yaml
	@echo "AsyncAPI 3.0 document written to docs/asyncapi.yaml"

clean:
	rm -rf $(VENV) .run .pytest_cache .hypothesis
