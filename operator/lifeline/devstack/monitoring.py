"""A real Prometheus as a StatefulSet: what the failover demo's sites run and its checks query.

Debian's ``prometheus`` serves it (the image table maps ``prom/prometheus``). It scrapes itself
every second, so ``up{job="prometheus"} == 1`` holds while it runs, and it listens on 127.0.0.1 at
the port given: pods here share the machine's network, so each server needs a port of its own.
"""
from __future__ import annotations

import yaml

IMAGE = "prom/prometheus:v2.42.0"


def config(port: int) -> str:
    return yaml.safe_dump({"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                           "scrape_configs": [{"job_name": "prometheus",
                                               "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}]})


def prometheus(name: str, namespace: str, port: int, *, labels: dict | None = None,
               replicas: int = 1) -> list[tuple[str, dict]]:
    """(API path, body) of the ConfigMap and the StatefulSet, in the order to create them."""
    selector = {"app": name}
    pod_labels = {**selector, **(labels or {})}
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-config"},
                 "data": {"prometheus.yml": config(port)}}
    statefulset = {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "labels": pod_labels},
        "spec": {"replicas": replicas, "serviceName": name, "selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": pod_labels}, "spec": {
                     "terminationGracePeriodSeconds": 5,
                     "containers": [{
                         "name": "prometheus", "image": IMAGE,
                         "args": ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus",
                                  f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
                         "ports": [{"name": "web", "containerPort": port}],
                         "readinessProbe": {"httpGet": {"path": "/-/ready", "port": port}, "periodSeconds": 1},
                         "volumeMounts": [{"name": "config", "mountPath": "/etc/prometheus"},
                                          {"name": "data", "mountPath": "/prometheus"}]}],
                     "volumes": [{"name": "config", "configMap": {"name": f"{name}-config"}},
                                 {"name": "data", "emptyDir": {}}]}}}}
    return [(f"/api/v1/namespaces/{namespace}/configmaps", configmap),
            (f"/apis/apps/v1/namespaces/{namespace}/statefulsets", statefulset)]


__all__ = ["IMAGE", "config", "prometheus"]
