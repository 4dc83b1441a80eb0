# The two commands that matter: `make test` and `make demo`. Both install what they need first
# (Debian packages through apt-get, Python packages into .venv), and doing so twice costs nothing.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RADE := $(VENV)/bin/rade
PYTEST_ARGS ?=

# What the tests and the demo use from Debian: busybox-static and debootstrap for base images, skopeo,
# podman, umoci and docker-registry for image interoperability, crun/runc for side-by-side figures,
# Open MPI (with its headers, for mpi4py) for the MPI tests, iproute2 for test hosts in netns,
# Debian's mpi4py and numpy for the native MPI runs (the same Open MPI build as in the MPI image),
# hpcc for the Linpack, STREAM and RandomAccess figures of bench/felter.py, qemu-system-x86 to boot the
# cgroup-v2 test guest (its Debian kernel is fetched by `make test` with apt-get download, never installed).
APT_PACKAGES := busybox-static debootstrap skopeo podman umoci docker-registry crun runc \
	openmpi-bin libopenmpi-dev libseccomp2 zstd iproute2 tar gzip python3-mpi4py python3-numpy openssl hpcc \
	qemu-system-x86

.PHONY: test demo deps sysdeps venv bytecode lint bench clean soak guest-kernel

test: deps guest-kernel
	$(PY) -m pytest $(PYTEST_ARGS)

# The Debian kernel the cgroup-v2 test guest boots, into its cache (the tests themselves fetch nothing).
guest-kernel: venv
	$(PY) tests/engine/cgroups/guest.py fetch

# The fault-injection soak alone (also part of `make test`): 500 jobs through crashes and a network cut.
soak: deps
	$(PY) -m pytest tests/soak -s $(PYTEST_ARGS)

demo: deps
	bash examples/demo.sh $(RADE)

bench: deps
	$(PY) bench/run_all.py

deps: sysdeps venv bytecode

# Compiled bytecode for rade's own modules, written even where PYTHONDONTWRITEBYTECODE is set: without it
# every `rade` start and every container supervisor compiles its modules again (about 100 ms).
bytecode: venv
	$(PY) -m compileall -q jobs engine agent scheduler rade

sysdeps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,mpi]' --config-settings editable_mode=compat
	touch $@

lint: venv
	$(PY) -m pip install -q ruff && $(VENV)/bin/ruff check jobs engine agent scheduler rade tests bench

clean:
	rm -rf $(VENV) build *.egg-info
