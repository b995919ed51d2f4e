"""Demo scenes: each `async def run(stack, say) -> dict` shows one area at work on the live stack."""
