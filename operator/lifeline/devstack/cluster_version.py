"""The Kubernetes version the local control plane is built at: one place for the pin.

``tools/kube/go.mod`` requires ``k8s.io/kubernetes`` at this tag and ``scripts/build-kube.sh``
stamps the binary with it; a test checks the three agree.
"""
KUBE_VERSION = "v1.35.4"
