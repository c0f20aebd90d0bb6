# Kubernetes packaging: manifests, offline chart checks (images: k8s/images/images.mk).
# Included from the root Makefile; also usable alone: make -f k8s/k8s.mk k8s-check

K8S_PYTHON ?= python3
K8S_VENV := k8s/.venv
# k8s/tools is installed into that venv (editable), like the project's packages into .venv.
K8S_TOOLS := $(K8S_VENV)/bin/python -m k8stools
# tests/k8s import the services' settings classes, so they run in the services' venv.
K8S_TEST_PYTHON ?= .venv/bin/python
K8S_BUILD_DIR := .data/k8s

.PHONY: manifests k8s-check k8s-venv

# A venv of its own: Helm's Go engine, the Kubernetes API schemas, BuildKit's Dockerfile parser.
# The lock keeps a concurrent pytest run (tests/k8s asks for this venv too) from racing the install.
# k8stools is built by the setuptools pinned there (no build isolation: no index needed).
$(K8S_VENV)/.installed: k8s/requirements.txt k8s/tools/pyproject.toml
	@mkdir -p $(K8S_VENV)
	flock $(K8S_VENV)/.lock sh -c '\
		test $@ -nt k8s/requirements.txt && test $@ -nt k8s/tools/pyproject.toml && exit 0; \
		test -x $(K8S_VENV)/bin/python || $(K8S_PYTHON) -m venv $(K8S_VENV) || exit 1; \
		$(K8S_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r k8s/requirements.txt \
		&& $(K8S_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
			--no-deps --no-build-isolation -e k8s/tools \
		&& touch $@'

k8s-venv: $(K8S_VENV)/.installed

manifests: $(K8S_VENV)/.installed
	$(K8S_TOOLS) manifests

# Every check runs offline. The steps and what each has caught are listed in k8s/README.md.
k8s-check: $(K8S_VENV)/.installed
	$(K8S_TOOLS) check
	@command -v kubectl >/dev/null || { echo "k8s-check: kubectl not found (its built-in kustomize is needed)" >&2; exit 1; }
	@mkdir -p $(K8S_BUILD_DIR)
	kubectl kustomize k8s/manifests > $(K8S_BUILD_DIR)/kustomized.yaml
	@echo "kubectl kustomize   k8s/manifests ok ($$(grep -c '^kind:' $(K8S_BUILD_DIR)/kustomized.yaml) objects)"
	$(K8S_VENV)/bin/kubernetes-validate --strict --quiet -k 1.30.0 $(K8S_BUILD_DIR)/kustomized.yaml
	$(K8S_VENV)/bin/kubernetes-validate --strict --quiet $(K8S_BUILD_DIR)/kustomized.yaml
	@echo "kubernetes schemas  kustomize output ok (1.30 and newest)"
	@test -x $(K8S_TEST_PYTHON) || { echo "k8s-check: $(K8S_TEST_PYTHON) missing; run 'make install' first" >&2; exit 1; }
	$(K8S_TEST_PYTHON) -m pytest -q -p no:cacheprovider tests/k8s
