# Two entry points: `make demo` (the main job on the bundled real sample) and `make test`.
# Both create .venv and install everything the project needs; torch comes as the CPU wheel first,
# so that the torch range in pyproject.toml does not pull a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_CPU := torch==2.13.0
MDT := mdt==1.2.7
DEMO := demo-output

.PHONY: demo test venv clean

$(BIN)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_CPU)
	$(BIN)/pip install --quiet -e ".[test,bench]"
	$(BIN)/pip install --quiet --no-deps $(MDT)
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/sirencompress sample $(DEMO) --force
	$(BIN)/sirencompress compress $(DEMO)/b1k_b2k.nii.gz -o $(DEMO)/b1k_b2k.sirz --force
	$(BIN)/sirencompress decompress $(DEMO)/b1k_b2k.sirz -o $(DEMO)/b1k_b2k_decoded.nii.gz --force
	$(BIN)/sirencompress info $(DEMO)/b1k_b2k.sirz

test: venv
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(DEMO)
