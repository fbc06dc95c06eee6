"""Evaluation harness: datasets, scorers, sweeps (`python -m minions.eval`) and their reports.

    from minions.eval import load_config, run_sweep
    outcome = run_sweep(load_config("evals/offline.toml"))

A front end on top of the protocols: nothing below `minions.eval` imports it.
"""

from __future__ import annotations

from minions._lazy import lazy_getattr

_LAZY = {
    "SweepConfig": "minions.eval.config", "load_config": "minions.eval.config", "expand": "minions.eval.config",
    "EvalItem": "minions.eval.datasets", "load_dataset": "minions.eval.datasets",
    "get_scorer": "minions.eval.scorers", "Score": "minions.eval.scorers",
    "run_sweep": "minions.eval.runner", "arun_sweep": "minions.eval.runner", "SweepOutcome": "minions.eval.runner",
    "ResultRow": "minions.eval.results", "Summary": "minions.eval.report",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = list(_LAZY)
