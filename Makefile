# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test demo clean

setup: $(STAMP)

# torch is pinned to the local CPU build and installed first, so no dependency can
# pull a CUDA build; the package itself is installed editable without dependencies.
$(STAMP): requirements.txt setup.py setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet torch==2.13.0
	$(VPY) -m pip install --quiet -r requirements.txt
	$(VPY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: setup
	$(VPY) -m pytest -q test

# record-sample -> bag_player -> perception_node -> bag_recorder over DDS on loopback -> report
demo: setup
	$(VPY) -m jointperception demo --out outputs/demo

clean:
	rm -rf $(VENV) outputs *.egg-info
