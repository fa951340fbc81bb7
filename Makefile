# The two commands of the README: `make demo` and `make test`. Both do the set-up
# they need first (scripts/setup.sh is idempotent and takes seconds when done).
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
PYTHON := $(VENV)/bin/python

# Network safety: DDS discovery and traffic stay on loopback for every process
# started from here (the profile also restricts UDP to 127.0.0.1 and adds shared memory).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export FASTDDS_DEFAULT_PROFILES_FILE := $(CURDIR)/config/fastdds_loopback.xml
export ROS_HOME := $(CURDIR)/build/ros_home
export ROS_LOG_DIR := $(CURDIR)/build/ros_home/log
export GS4_VENV := $(VENV)
# OpenMP threads that spin while waiting make 2-thread torch and kernel runs ~7x
# slower whenever anything else uses the CPU (measured on 2 cores); it must be set
# before torch is imported, so it is set here for every process.
export OMP_WAIT_POLICY := PASSIVE
# Big allocations from the heap instead of fresh mmaps: removes page-fault time that
# was up to half of each render on these machines.
export GLIBC_TUNABLES := glibc.malloc.hugetlb=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=100000000000

DEMO_OUT ?= output/demo
PYTEST_ARGS ?=

.PHONY: setup demo test colcon-check clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PYTHON) -m gs4_slam.cli demo --out $(DEMO_OUT)

# pytest's exit code 5 means "no test collected", which is not a failure.
test: setup
	@$(PYTHON) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests were collected"; exit 0; fi; exit $$rc

# Builds the repository as src/gs4_slam of a throw-away colcon workspace.
colcon-check: setup
	bash scripts/colcon_check.sh

clean:
	rm -rf build output .pytest_cache
