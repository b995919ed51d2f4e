"""Demo scenes: each `async def run(emulator, kubeconfig, workdir, say) -> dict` shows one area at work."""
