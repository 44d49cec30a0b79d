# Single-file build of raftpg: `make dist` leaves a self-contained executable at dist/raftpg that
# needs nothing on the target but PostgreSQL's server packages (and a glibc no older than the
# build machine's: build on the oldest Debian you deploy to, e.g. Debian 12).
#
# The build runs in its own virtualenv holding only raftpg's dependencies and PyInstaller, so
# whatever else is installed in the building Python never ends up in the binary.
# PIP_OPTS passes options to pip, e.g. PIP_OPTS="--no-index --find-links wheelhouse" to build
# from a local wheel directory without any network.

PYTHON ?= python3
PYINSTALLER ?= pyinstaller==6.22.3
PIP_OPTS ?=
VENV := build/venv
SOURCES := $(shell find raftpg -name '*.py') packaging/entry.py pyproject.toml Makefile

.PHONY: dist clean-dist

dist: dist/raftpg

$(VENV)/.ready: pyproject.toml
	$(PYTHON) -m venv --clear $(VENV)
	$(PYTHON) packaging/requirements.py pyproject.toml > build/requirements.txt
	$(VENV)/bin/python -m pip install -q $(PIP_OPTS) "$(PYINSTALLER)" -r build/requirements.txt
	touch $@

# multiprocessing and pkgutil are left out: neither raftpg nor its dependencies import them at run
# time (only concurrent.futures' process pool would, unused), but bundled they bring PyInstaller
# runtime hooks that import them at every start, 2.5 MiB of RSS in every process, the fence's too.
dist/raftpg: $(VENV)/.ready $(SOURCES)
	$(VENV)/bin/python -m PyInstaller --onefile --noconfirm --clean --log-level WARN --strip \
		--name raftpg --paths $(CURDIR) --collect-submodules raftpg \
		--exclude-module multiprocessing --exclude-module pkgutil \
		--distpath dist --workpath build/pyinstaller --specpath build \
		packaging/entry.py
	dist/raftpg version

clean-dist:
	rm -rf build dist
