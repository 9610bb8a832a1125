"""Lightning callbacks that show what the network learned; each one concern, each optional.

A callback that has numbers for metrics.json exposes them as `run_summary` (a plain dict).
"""
