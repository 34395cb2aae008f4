"""Design search: one searcher per module behind a small ask/tell base (:mod:`tasks.search.base`), and the one
budgeted driver that runs any of them against any designer (:mod:`tasks.search.driver`).

The searchers: :mod:`~tasks.search.design_loop` (the model-based loop), :mod:`~tasks.search.one_shot` (gradient
trajectories, the top-k verified once), and the black boxes :mod:`~tasks.search.random_edits`,
:mod:`~tasks.search.tpe_edits`, :mod:`~tasks.search.hill_climber` (token designers) and
:mod:`~tasks.search.cmaes`, :mod:`~tasks.search.random_gaussian` (box designers), by name in
:mod:`~tasks.search.registry`. :mod:`~tasks.search.black_box` runs a black box by name and reports its numbers
(``advdesign baselines``, ``benchmarks/equal_budget.py``; given one searcher per repeat, the driver runs a search's
repeats in lockstep); :mod:`~tasks.search.anytime` reads the anytime curve off the driver's table.
"""
