"""End-to-end and fault-injection tests through the embedded stack (emulator over HTTP, the real
kopf operator in-process or as a killable process, the job runner running the real agent, real
OpenBao and moto S3): a destination down, Vault down, the agent killed, the API restarted, the
operator killed mid-backup and mid-failover. Time moves only when a test moves the clock."""
