# Container images: build them (docker, podman or buildah), and boot them as the chart runs them.
# Included from the root Makefile; k8s/README.md (Images) has the commands and what each checks.

IMAGES_PYTHON ?= python3
K8S_IMAGE_REGISTRY ?= ghcr.io/llmsuite
K8S_IMAGE_TAG ?= $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$$/\1/p' k8s/charts/llmsuite/Chart.yaml)
# Which images (default: all five), e.g. IMAGES="gateway model-server".
IMAGES ?=
# Base image of every stage; empty: the Dockerfiles' default (the official image pinned by digest).
PYTHON_IMAGE ?=
# auto: a running Docker daemon, else Podman, else Buildah.
IMAGE_ENGINE ?= auto
# Buildah/Podman: keep images in this directory (vfs driver) rather than the engine's default
# storage; make images-smoke uses /var/tmp/llmsuite-images/store.
IMAGE_STORE ?=
# Extra flags for the engine's build command, e.g. IMAGE_BUILD_FLAGS="--platform=linux/amd64".
IMAGE_BUILD_FLAGS ?=
# The llama-cpp-python wheel `make install` built (the Makefile's LLAMA_WHEELS) is offered to the
# model-server build, which then compiles nothing.
IMAGE_WHEELS := $(wildcard $(LLAMA_WHEELS))

IMAGES_ARGS = --registry $(K8S_IMAGE_REGISTRY) --tag $(K8S_IMAGE_TAG) \
	$(if $(PYTHON_IMAGE),--python-image $(PYTHON_IMAGE)) $(addprefix --wheels ,$(IMAGE_WHEELS))

.PHONY: images images-base images-smoke

# Every image from the repository root, with the first engine that works. Without one it fails
# (exit 2) rather than pretend: nothing was built.
images:
	$(IMAGES_PYTHON) k8s/images/images.py build --engine $(IMAGE_ENGINE) $(if $(IMAGE_STORE),--store $(IMAGE_STORE)) \
		$(IMAGES_ARGS) \
		$(foreach f,$(IMAGE_BUILD_FLAGS),--engine-flag=$(f)) $(IMAGES)

# localhost/llmsuite-base:bookworm, for machines that cannot pull the official base:
# make images-base && make images PYTHON_IMAGE=localhost/llmsuite-base:bookworm
images-base:
	$(IMAGES_PYTHON) k8s/images/images.py base --engine $(IMAGE_ENGINE) $(if $(IMAGE_STORE),--store $(IMAGE_STORE))

# Builds the five images with buildah (vfs storage under /var/tmp/llmsuite-images; a local
# Debian base when the official one cannot be pulled) and boots them as the chart's pods run
# them. Root only; 10-20 minutes on two cores, so not part of make test.
images-smoke: install
	$(BIN)/python k8s/images/images.py smoke $(IMAGES_ARGS)
