"""End-to-end and fault-injection tests on a real Kubernetes control plane (tests/cluster_fixtures.py):
the real kopf operator as the chart's ServiceAccount, in-process or as a killable process, Jobs run
by the real Job controller and the process kubelet running the real agent, real OpenBao and moto
S3 where a test needs them: a destination down, Vault down, the agent killed, the API server
gone and back, the operator killed mid-backup, mid-drill and mid-failover. The operator's clock
moves only when a test moves it; the agent runs on real time."""
