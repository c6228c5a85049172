"""The Sweeps view's charts: Optuna's own plotly figures of a study, where it has enough trials for each."""

from __future__ import annotations

from typing import Any

import optuna
from optuna import visualization
from optuna.trial import TrialState

FIGURES = {
    "history": visualization.plot_optimization_history,
    "parallel": visualization.plot_parallel_coordinate,
    "importance": visualization.plot_param_importances,
}


def sweep_figures(study: optuna.Study) -> dict[str, Any]:
    """history, parallel and importance: a plotly figure each, or None while too few trials completed.

    Importance needs two completed trials that differ in a parameter (Optuna's fANOVA-based evaluator).
    """
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    needed = {"history": 1, "parallel": 1, "importance": 2}
    figures = {}
    for name, plot in FIGURES.items():
        figures[name] = None
        if len(completed) < needed[name]:
            continue
        try:
            figures[name] = plot(study)
        except (ValueError, RuntimeError):  # a parameter that never varied: nothing to rank or draw
            figures[name] = None
    return figures
