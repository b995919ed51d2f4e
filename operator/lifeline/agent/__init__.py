"""The data-plane agent: `lifeline agent init|backup|restore|verify|check|prune|points|shred`."""
