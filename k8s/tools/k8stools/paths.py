from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "k8s" / "charts" / "llmsuite"
CI_VALUES = CHART / "ci"
MANIFESTS = ROOT / "k8s" / "manifests"
# One for the four services (a target each), one per image of k8s/images; services/*/Dockerfile would
# be a stray copy, parsed so that tests/k8s see it.
DOCKERFILES = sorted(
    [
        *ROOT.glob("services/Dockerfile"),
        *ROOT.glob("services/*/Dockerfile"),
        *ROOT.glob("k8s/images/*/Dockerfile"),
    ]
)

RELEASE = "llmsuite"
NAMESPACE = "llmsuite"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and, beside it, the newest
# whose API schemas kubernetes-validate ships.
OLDEST_KUBE = "1.30.0"
