"""Evaluation: the goal-reaching protocol and what it compares, and frozen probes.

agents.py          learned (world model + planner), baseline and ceiling agents
protocol.py        start / goal pairs, the one episode runner, the results table, evaluate_policy
viz.py             energy landscape PNG, episode GIF
plan_benchmark.py  what `jepa-world plan` runs
probe_heads.py     linear / attentive heads and their (lr, wd) sweeps
probe.py           the probe protocol (encode once, train the sweeps, choose on val, report on test)
probe_command.py   what `jepa-world probe` runs (which encoder, which labelled data)
"""
