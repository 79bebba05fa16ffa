# The README's two commands: `make demo` and `make test`. Both build .venv first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test bench lock clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt constraints-litert-torch.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/pip check
	# litert-torch's own venv (PyTorch intake); pip check runs inside it too
	$(BIN)/python -m edgetqs.model.formats.torch_env
	touch $(STAMP)

demo: venv
	$(BIN)/edgetqs demo

test: venv
	$(BIN)/python -m pytest -q -n 2

bench: venv
	$(BIN)/python benchmarks/run_all.py

lock: venv
	$(BIN)/pip freeze --exclude-editable | grep -v '^edgetqs' > constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info
