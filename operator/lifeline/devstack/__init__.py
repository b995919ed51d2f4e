"""The embedded default: a real Kubernetes control plane on this machine, a process kubelet, the
stand-ins a machine without a container runtime needs, and the demo scenes (`make demo`, the tests)."""
