# Two entry points: `make demo` (the whole benchmark on the embedded data) and `make test`.
# Both install the Debian packages they use when missing (the real Fashion-MNIST images; Chromium
# for the leaderboard page test), create .venv when missing and install maebench into it.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
SYSTEM_PACKAGES := dataset-fashion-mnist chromium

.PHONY: demo test install system clean

install: $(STAMP)

# apt-get as root, or through non-interactive sudo; where neither works, one line with the command
system:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else \
	    echo "make: needs the Debian packages$$missing: run  sudo apt-get install -y$$missing" >&2; exit 1; fi; \
	  echo "make: installing$$missing (apt-get)"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq$$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: system $(STAMP)
	$(VENV)/bin/maebench demo $(DEMO_ARGS)

test: system $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
