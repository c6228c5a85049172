"""The Sweeps view's charts: Optuna's own plotly figures of a study, where it has enough trials for each."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

# Optuna's plot functions, by figure. optuna.visualization is imported only when a chart is drawn: it imports
# matplotlib, about 0.9 s of every app's start (py-spy, 2-core Zen 3) for a tab that may never be opened.
FIGURES = {
    "history": "plot_optimization_history",
    "parallel": "plot_parallel_coordinate",
    "importance": "plot_param_importances",
}


def sweep_figures(study: optuna.Study) -> dict[str, Any]:
    """history, parallel and importance: a plotly figure each, or None while too few trials completed.

    Importance needs two completed trials that differ in a parameter (Optuna's fANOVA-based evaluator).
    """
    from optuna import visualization

    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    needed = {"history": 1, "parallel": 1, "importance": 2}
    figures = {}
    for name, plot in FIGURES.items():
        figures[name] = None
        if len(completed) < needed[name]:
            continue
        try:
            figures[name] = getattr(visualization, plot)(study)
        except (ValueError, RuntimeError):  # a parameter that never varied: nothing to rank or draw
            figures[name] = None
    return figures
