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
