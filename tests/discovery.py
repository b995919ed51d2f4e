"""What a Kubernetes 1.3x API server's discovery says it serves (a representative part), for planner
tests of resources sources; the tests on the real control plane use its real discovery."""
from __future__ import annotations

from lifeline.sources.resources import Served

RW = frozenset({"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"})
_TABLE = (
    # group, version, plural, kind, namespaced, verbs
    ("", "v1", "configmaps", "ConfigMap", True, RW),
    ("", "v1", "endpoints", "Endpoints", True, RW),
    ("", "v1", "events", "Event", True, RW),
    ("", "v1", "namespaces", "Namespace", False, RW),
    ("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, RW),
    ("", "v1", "persistentvolumeclaims/status", "PersistentVolumeClaim", True, frozenset({"get", "patch"})),
    ("", "v1", "persistentvolumes", "PersistentVolume", False, RW),
    ("", "v1", "pods", "Pod", True, RW),
    ("", "v1", "secrets", "Secret", True, RW),
    ("", "v1", "serviceaccounts", "ServiceAccount", True, RW),
    ("", "v1", "services", "Service", True, RW),
    ("", "v1", "bindings", "Binding", True, frozenset({"create"})),
    ("apps", "v1", "controllerrevisions", "ControllerRevision", True, RW),
    ("apps", "v1", "deployments", "Deployment", True, RW),
    ("apps", "v1", "replicasets", "ReplicaSet", True, RW),
    ("apps", "v1", "statefulsets", "StatefulSet", True, RW),
    ("batch", "v1", "cronjobs", "CronJob", True, RW),
    ("batch", "v1", "jobs", "Job", True, RW),
    ("coordination.k8s.io", "v1", "leases", "Lease", True, RW),
    ("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True, RW),
    ("dr.lifeline.io", "v1alpha1", "backuppolicies", "BackupPolicy", True, RW),
    ("dr.lifeline.io", "v1alpha1", "recoverypoints", "RecoveryPoint", True, RW),
    ("dr.lifeline.io", "v1alpha1", "restores", "Restore", True, RW),
    ("events.k8s.io", "v1", "events", "Event", True, RW),
    ("his.example.org", "v1", "wards", "Ward", True, RW),
    ("metrics.k8s.io", "v1beta1", "pods", "PodMetrics", True, frozenset({"get", "list"})),
    ("networking.k8s.io", "v1", "ingresses", "Ingress", True, RW),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, RW),
    ("rbac.authorization.k8s.io", "v1", "roles", "Role", True, RW),
    ("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, RW),
)
SERVED: tuple[Served, ...] = tuple(Served(*row) for row in _TABLE)
