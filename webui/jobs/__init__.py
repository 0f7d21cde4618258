"""Orchestration: RQ job functions, per-job runner callbacks, locks, the reaper, workers."""
