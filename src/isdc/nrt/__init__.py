"""Near-real-time operations: the NRT daemon, quick-look analysis, burst trigger, alerts."""
