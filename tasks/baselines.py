"""Black-box baselines on the true oracle: random SELFIES token edits and TPE over token edits for molecules,
CMA-ES and random perturbations for continuous designers (cars) (pure, no Prefect or MLflow).

They answer the campaign's control question: with the same seeds, the same constraints and the same number of
oracle calls, does a surrogate's input gradient beat search that never looks at a model? The rules are the
gradient campaign's:

* a design is a molecule reached from its seed by editing SELFIES tokens (Krenn et al. 2020: every token string
  decodes to a valid molecule); setting a token to ``[nop]`` deletes it, editing the position after the last
  token appends one;
* only designs that differ from the seed and satisfy the designer's constraints (similarity δ to the seed, SA,
  weight) are sent to the oracle — the constraints cost no oracle call, exactly as in
  :func:`tasks.candidates.select_candidates`;
* a design is scored at most once per seed (the campaign's candidates are distinct per seed too);
* every oracle call goes through ``designer.oracle`` and is counted against the seed's share of the budget;
  :class:`BudgetedOracle` refuses the call that would exceed it.

The budget is the campaign's ``search.budget``: oracle calls for all seeds together, shared out evenly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from tasks.candidates import campaign_metrics
from tasks.search.anytime import best_found, best_so_far, share_budget
from tasks.search.cmaes import CMAES

METHODS = ("random", "tpe", "cmaes")
#: The baselines each design domain supports: token edits for SELFIES molecules, CMA-ES for box encodings.
METHODS_BY_DESIGNER = {"molecule": ("random", "tpe"), "car": ("cmaes", "random")}
#: Checkpoints (oracle calls per seed) at which the best true score so far is reported, where the budget allows.
CHECKPOINTS = (100, 300, 1000)


class BudgetExceeded(RuntimeError):
    """An oracle call beyond the budget was attempted."""


@dataclass
class BudgetedOracle:
    """The designer's oracle behind a hard cap on the number of designs scored.

    Counts through ``designer.oracle_calls`` (the designer's own counter), so a caller cannot score a design
    without it being counted.
    """

    designer: Any
    budget: int
    used: int = 0

    @property
    def remaining(self) -> int:
        return self.budget - self.used

    def __call__(self, designs: Sequence[Any]):
        if len(designs) > self.remaining:
            raise BudgetExceeded(f"{len(designs)} oracle calls asked for, {self.remaining} of {self.budget} left")
        before = self.designer.oracle_calls
        result = self.designer.oracle(list(designs))
        self.used += self.designer.oracle_calls - before
        return result


@dataclass
class SeedTokens:
    """A seed as SELFIES token indices: ``indices`` (max_length,) with padding index 0, ``length`` tokens used."""

    design: str
    indices: np.ndarray
    length: int

    @property
    def editable_positions(self) -> int:
        """Positions an edit may touch: every token, plus one past the end (an append) while there is room."""
        return min(self.length + 1, len(self.indices))


def seed_tokens(designer: Any, seeds: Sequence[str]) -> list[SeedTokens]:
    indices, failures = designer.token_indices(list(seeds))
    bad = [f for f in failures if f is not None]
    if bad:
        raise ValueError("; ".join(bad))
    rows = indices.numpy()
    return [SeedTokens(s, row, int((row != 0).sum())) for s, row in zip(seeds, rows)]


def apply_edits(seed: SeedTokens, edits: Sequence[tuple[int, int]]) -> np.ndarray:
    """The seed's token indices with ``(position, token index)`` edits applied (later edits win)."""
    row = seed.indices.copy()
    for position, token in edits:
        row[position] = token
    return row


def decode_rows(designer: Any, rows: np.ndarray) -> list[str]:
    import torch

    return designer.decode(designer.one_hot(torch.as_tensor(np.asarray(rows), dtype=torch.long)))


@dataclass
class SeedSearchLog:
    """What one seed's search met: its scored designs in call order, and how many proposals were wasted."""

    seed_index: int
    designs: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    failures: list[str | None] = field(default_factory=list)
    similarity: list[float] = field(default_factory=list)
    proposals: int = 0
    infeasible: int = 0
    duplicates: int = 0
    checked: int = 0
    feasible: int = 0


@dataclass(frozen=True)
class BaselineConfig:
    """Args:
        max_edits: at most this many token edits per proposal (1 … max_edits, uniformly for random search).
        batch_size: random search scores this many feasible proposals per oracle call.
        max_proposals_per_call: give up on a seed after this many proposals per oracle call it was allowed
            (a seed whose neighbourhood is almost all infeasible must not loop forever).
        tpe_startup_trials: random trials before TPE starts modelling (Optuna's ``n_startup_trials``).
        infeasible_penalty: the value TPE is told for an infeasible or unchanged proposal: the seed's score minus
            this (it costs no oracle call, but TPE must learn to avoid the region).
        seed: random seed; seed ``i`` of a run searches with ``seed + i``.
    """

    max_edits: int = 3
    batch_size: int = 16
    max_proposals_per_call: int = 50
    tpe_startup_trials: int = 10
    infeasible_penalty: float = 1.0
    seed: int = 0


def _record(log: SeedSearchLog, designs: list[str], similarity: np.ndarray, result) -> None:
    log.designs += designs
    log.scores += [float(s) for s in result.scores]
    log.failures += list(result.failures)
    log.similarity += [float(s) for s in similarity]


def _feasible(designer: Any, seed: SeedTokens, designs: list[str], seen: set[str], log: SeedSearchLog
              ) -> tuple[list[str], list[float]]:
    """Distinct, changed, constraint-satisfying designs among ``designs`` (in order), with their similarity."""
    fresh = []
    for d in designs:
        if d == "" or d == seed.design:
            log.infeasible += 1
        elif d in seen or d in fresh:
            log.duplicates += 1
        else:
            fresh.append(d)
    if not fresh:
        return [], []
    report = designer.constraints(fresh, [seed.design] * len(fresh))
    log.checked += len(fresh)
    log.feasible += int(report.satisfied.sum())
    similarity = report.values.get("similarity", np.full(len(fresh), np.nan))
    keep = [(d, float(s)) for d, s, ok in zip(fresh, similarity, report.satisfied) if ok]
    log.infeasible += len(fresh) - len(keep)
    return [d for d, _ in keep], [s for _, s in keep]


def random_search_seed(designer: Any, seed: SeedTokens, seed_index: int, budget: int, config: BaselineConfig
                       ) -> SeedSearchLog:
    """Random search: each proposal edits 1 … ``max_edits`` random positions of the seed to random tokens."""
    rng = np.random.default_rng([config.seed, seed_index])
    oracle = BudgetedOracle(designer, budget)
    log = SeedSearchLog(seed_index)
    seen: set[str] = set()
    vocabulary = len(designer.alphabet)
    while oracle.remaining > 0 and log.proposals < config.max_proposals_per_call * max(budget, 1):
        rows = []
        for _ in range(config.batch_size):
            k = int(rng.integers(1, config.max_edits + 1))
            positions = rng.choice(seed.editable_positions, size=min(k, seed.editable_positions), replace=False)
            rows.append(apply_edits(seed, [(int(p), int(rng.integers(vocabulary))) for p in positions]))
        log.proposals += len(rows)
        designs, similarity = _feasible(designer, seed, [designer.key(d) for d in decode_rows(designer, rows)],
                                        seen, log)
        designs, similarity = designs[: oracle.remaining], similarity[: oracle.remaining]
        if designs:
            seen.update(designs)
            _record(log, designs, np.array(similarity), oracle(designs))
    return log


def tpe_search_seed(designer: Any, seed: SeedTokens, seed_index: int, seed_score: float, budget: int,
                    config: BaselineConfig) -> SeedSearchLog:
    """TPE (Bergstra et al. 2011, *Algorithms for Hyper-Parameter Optimization*, NeurIPS) over token edits.

    The search space, define-by-run: ``n_edits`` ∈ {1 … max_edits}; for each edit ``i < n_edits`` a position
    (integer, 0 … the seed's length, the last one an append) and a token (categorical over the whole SELFIES
    alphabet, ``[nop]`` deleting). Every proposal is one Optuna trial; a feasible new design costs one oracle call
    and its true score is the trial's value; a repeated design is told its known score for free; an unchanged or
    infeasible one is told ``seed_score − infeasible_penalty`` for free. The study is in memory and seeded, one
    per seed.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=config.seed * 100_003 + seed_index,
                                         n_startup_trials=config.tpe_startup_trials)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    oracle = BudgetedOracle(designer, budget)
    log = SeedSearchLog(seed_index)
    known: dict[str, float] = {}
    tokens = list(range(len(designer.alphabet)))
    while oracle.remaining > 0 and log.proposals < config.max_proposals_per_call * max(budget, 1):
        trial = study.ask()
        n_edits = trial.suggest_int("n_edits", 1, config.max_edits)
        edits = [(trial.suggest_int(f"position_{i}", 0, seed.editable_positions - 1),
                  trial.suggest_categorical(f"token_{i}", tokens)) for i in range(n_edits)]
        log.proposals += 1
        design = designer.key(decode_rows(designer, apply_edits(seed, edits)[None])[0])
        if design in known:
            log.duplicates += 1
            study.tell(trial, known[design])
            continue
        feasible, similarity = _feasible(designer, seed, [design], set(), log)
        if not feasible:
            study.tell(trial, seed_score - config.infeasible_penalty)
            continue
        result = oracle(feasible)
        _record(log, feasible, np.array(similarity), result)
        value = float(result.scores[0]) if result.failures[0] is None else seed_score - config.infeasible_penalty
        known[design] = value
        study.tell(trial, value)
    return log


def run_baseline(method: str, designer: Any, seeds: Sequence[str], seed_scores: np.ndarray, budget: int,
                 config: BaselineConfig = BaselineConfig()) -> pd.DataFrame:
    """Search every seed with ``method`` under its share of ``budget`` total oracle calls (``cmaes``: see
    :func:`cmaes_search`, for continuous designers; ``random`` on a continuous designer:
    :func:`random_perturbation_search`).

    Returns the verified designs, one row per oracle call, in the column layout of the campaign's designs table
    (seed_index, seed, design, true_score, oracle_failure, similarity, seed_score) plus ``call`` (the seed's
    oracle-call number, 1-based) and the proposals/infeasible/duplicates counters in ``attrs``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown baseline {method!r}; choose from {', '.join(METHODS)}")
    if budget < 0:
        raise ValueError(f"budget must be ≥ 0, got {budget}")
    if method == "cmaes":
        return cmaes_search(designer, seeds, seed_scores, budget, seed=config.seed)
    if method == "random" and not hasattr(designer, "token_indices"):  # a box encoding, not SELFIES tokens
        return random_perturbation_search(designer, seeds, seed_scores, budget, seed=config.seed)
    if not len(seeds):
        raise ValueError("no seeds to search from")
    tokenised = seed_tokens(designer, seeds)
    rows, counters = [], {"proposals": 0, "infeasible": 0, "duplicates": 0, "checked": 0, "feasible": 0}
    for i, (seed, share) in enumerate(zip(tokenised, share_budget(budget, len(seeds)))):
        if method == "random":
            log = random_search_seed(designer, seed, i, share, config)
        else:
            log = tpe_search_seed(designer, seed, i, float(seed_scores[i]), share, config)
        if len(log.designs) < share:
            logging.getLogger("advdesign").info("%s: seed %d used %d of its %d oracle calls (proposals ran out)",
                                                method, i, len(log.designs), share)
        for key in counters:
            counters[key] += getattr(log, key)
        rows.append(pd.DataFrame({
            "seed_index": i, "seed": seed.design, "design": log.designs, "true_score": log.scores,
            "oracle_failure": log.failures, "similarity": log.similarity, "seed_score": float(seed_scores[i]),
            "call": np.arange(1, len(log.designs) + 1),
        }))
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    table.attrs.update(counters)
    return table


def baseline_metrics(verified: pd.DataFrame, seed_scores: np.ndarray, budget: int,
                     checkpoints: Sequence[int] = CHECKPOINTS) -> dict[str, float | int]:
    """The campaign's oracle-side metrics (:func:`tasks.candidates.campaign_metrics`), without the surrogate's
    (a baseline predicts nothing), plus the best true score so far at oracle-call checkpoints per seed.

    ``best_score_at_{c}``: mean over seeds of the best molecule known after the seed's first ``c`` oracle calls
    (the seed itself or a better scored design); ``improvement_at_{c}``: mean over seeds of the best scored
    design's score minus the seed's, 0 for a seed without one — ``oracle_improvement_mean`` after ``c`` calls.
    Checkpoints beyond the per-seed budget are left out; the per-seed budget itself is always one.
    ``constraint_satisfied_fraction``: of the distinct changed designs proposed, the fraction that satisfied the
    constraints (the campaign's is over the designs its trajectories met).
    """
    n_seeds = len(seed_scores)
    table = verified.assign(predicted=np.nan) if len(verified) else pd.DataFrame(
        columns=["seed_index", "predicted", "true_score", "oracle_failure"])
    checked = verified.attrs.get("checked", 0)
    constraint_fraction = float(verified.attrs.get("feasible", 0) / checked) if checked else 0.0
    metrics = campaign_metrics(table, np.asarray(seed_scores, dtype=float), np.full(n_seeds, np.nan),
                               constraint_fraction)
    for name in ("transfer_rate", "predicted_improvement_mean", "improvement_gap", "n_predicted_better"):
        metrics.pop(name)
    metrics["oracle_calls"] = int(len(verified))
    metrics["budget"] = int(budget)
    for name in ("proposals", "infeasible", "duplicates", "checked", "feasible"):
        metrics[name] = int(verified.attrs.get(name, 0))
    per_seed = max(share_budget(budget, n_seeds)) if n_seeds else 0
    reached = sorted({*(c for c in checkpoints if c < per_seed), per_seed})
    best = best_so_far(verified, seed_scores, reached)
    found = best_found(verified, n_seeds, reached)
    for j, c in enumerate(reached):
        gain = np.where(np.isfinite(found[:, j]), found[:, j] - np.asarray(seed_scores, dtype=float), 0.0)
        metrics[f"best_score_at_{c}"] = float(best[:, j].mean()) if n_seeds else 0.0
        metrics[f"improvement_at_{c}"] = float(gain.mean()) if n_seeds else 0.0
    return metrics


# Each continuous baseline searches one start as a generator: it yields the designs it wants scored and is sent
# their OracleResult, and returns its SeedSearchLog. :func:`_run_alone` drives one search at a time (each start
# behind its own BudgetedOracle); :func:`_run_lockstep` drives many together, one oracle call per round for all of
# them. A search sees only its own designs' scores, so both give the same tables wherever a design's score does
# not depend on which other designs share its oracle call (the car oracle simulates each geometry on its own);
# lockstep only changes how many oracle calls the designs are cut into, which is what a GPU oracle pays for.
def _proposals(designer: Any, x: np.ndarray, seed_design: Any, log: SeedSearchLog):
    """Box points → the designs they repair to (``project``, then ``discretize``), their keys and constraint
    report; counts them in ``log``."""
    import torch

    repaired = designer.project(torch.as_tensor(x, dtype=torch.float32))
    repaired = getattr(designer, "discretize", lambda t: t)(repaired)
    designs = designer.decode(repaired)
    report = designer.constraints(designs, [seed_design] * len(designs))
    log.proposals += len(designs)
    log.checked += len(designs)
    log.feasible += int(report.satisfied.sum())
    return repaired, designs, [designer.key(d) for d in designs], report


def _log_scored(log: SeedSearchLog, keys: list[str], fresh: list[int], report: Any, result: Any) -> None:
    similarity = np.asarray(report.values.get("similarity", np.full(len(keys), np.nan)))
    log.designs += [keys[j] for j in fresh]
    log.scores += [float(s) for s in result.scores]
    log.failures += list(result.failures)
    log.similarity += [float(similarity[j]) for j in fresh]


def _cmaes_seed(designer: Any, seed_design: Any, seed_score: float, index: int, share: int, x0: np.ndarray,
                sigma: float, seed: int, repair_penalty: float = 10.0, infeasible_penalty: float = 1.0):
    es = CMAES(x0, sigma, np.random.default_rng([seed, index]))
    seed_key = designer.key(seed_design)
    known: dict[str, float] = {}
    log = SeedSearchLog(index)
    remaining = share
    while remaining > 0 and es.generation < 50 * max(share, 1):
        x = es.ask()
        repaired, designs, keys, report = _proposals(designer, x, seed_design, log)
        distance = ((x - repaired.numpy().astype(float)) ** 2).sum(axis=1)
        values = np.full(len(designs), float(seed_score) - infeasible_penalty)
        fresh = [j for j, k in enumerate(keys) if report.satisfied[j] and k != seed_key and k not in known
                 and k not in keys[:j]]
        fresh = fresh[:remaining]
        if fresh:
            result = yield [designs[j] for j in fresh]
            remaining -= len(fresh)
            _log_scored(log, keys, fresh, report, result)
            for j, score, failure in zip(fresh, result.scores, result.failures):
                known[keys[j]] = float(score) if failure is None else float(seed_score) - infeasible_penalty
        for j, k in enumerate(keys):
            if k in known:
                values[j] = known[k]
        if remaining > 0:
            es.tell(x, values - repair_penalty * distance)
    return log


def _perturbation_seed(designer: Any, seed_design: Any, index: int, share: int, x0: np.ndarray, sigma: float,
                       seed: int, batch_size: int):
    # Not CMA-ES's stream ([seed, i]): its first generation would draw the very same perturbations.
    rng = np.random.default_rng([seed, index, 1])
    seed_key = designer.key(seed_design)
    seen: set[str] = set()
    log = SeedSearchLog(index)
    remaining = share
    while remaining > 0 and log.proposals < 50 * max(share, 1):
        x = x0 + sigma * rng.standard_normal((batch_size, len(x0)))
        _, designs, keys, report = _proposals(designer, x, seed_design, log)
        fresh = []
        for j, k in enumerate(keys):
            if k in seen or k == seed_key or not report.satisfied[j]:
                log.duplicates += int(k in seen)
                continue
            seen.add(k)
            fresh.append(j)
        fresh = fresh[:remaining]
        if fresh:
            result = yield [designs[j] for j in fresh]
            remaining -= len(fresh)
            _log_scored(log, keys, fresh, report, result)
    return log


def _run_alone(designer: Any, search, share: int) -> SeedSearchLog:
    """One start's search, every request scored by the designer's oracle behind a :class:`BudgetedOracle`."""
    oracle = BudgetedOracle(designer, share)
    try:
        designs = next(search)
        while True:
            designs = search.send(oracle(designs))
    except StopIteration as stop:
        return stop.value


def _run_lockstep(designer: Any, searches: list, shares: list[int]) -> list[SeedSearchLog]:
    """Many searches at once: each round, every unfinished search's request goes into one oracle call."""
    from designers.base import OracleResult

    logs: list[SeedSearchLog | None] = [None] * len(searches)
    pending: dict[int, list[Any]] = {}
    used = [0] * len(searches)

    def advance(k: int, result: OracleResult | None) -> None:
        try:
            pending[k] = next(searches[k]) if result is None else searches[k].send(result)
        except StopIteration as stop:
            logs[k] = stop.value

    for k in range(len(searches)):
        advance(k, None)
    while pending:
        order = sorted(pending)
        requests = [pending.pop(k) for k in order]
        for k, designs in zip(order, requests):
            used[k] += len(designs)
            if used[k] > shares[k]:
                raise BudgetExceeded(f"search {k} asked for {used[k]} oracle calls, {shares[k]} allowed")
        before = designer.oracle_calls
        result = designer.oracle([d for designs in requests for d in designs])
        assert designer.oracle_calls - before == sum(map(len, requests))
        start = 0
        for k, designs in zip(order, requests):
            part = slice(start, start + len(designs))
            start += len(designs)
            advance(k, OracleResult(result.scores[part], list(result.failures[part]),
                                    {name: values[part] for name, values in result.extras.items()}))
    return logs  # type: ignore[return-value]


def _continuous_table(designer: Any, seeds: Sequence[Any], seed_scores: np.ndarray, logs: list[SeedSearchLog],
                      counters: tuple[str, ...]) -> pd.DataFrame:
    rows = [pd.DataFrame({
        "seed_index": log.seed_index, "seed": designer.key(seeds[log.seed_index]), "design": log.designs,
        "true_score": log.scores, "oracle_failure": log.failures, "similarity": log.similarity,
        "seed_score": float(seed_scores[log.seed_index]), "call": np.arange(1, len(log.designs) + 1),
    }) for log in logs]
    table = pd.concat(rows, ignore_index=True)
    table.attrs.update({name: sum(getattr(log, name) for log in logs) for name in counters})
    return table


_CMAES_COUNTERS = ("proposals", "checked", "feasible")
_PERTURBATION_COUNTERS = ("proposals", "checked", "feasible", "duplicates")


def cmaes_search(designer: Any, seeds: Sequence[Any], seed_scores: np.ndarray, budget: int, sigma: float = 0.1,
                 seed: int = 0, repair_penalty: float = 10.0, infeasible_penalty: float = 1.0) -> pd.DataFrame:
    """CMA-ES per seed on a continuous designer's box encoding (cars: 12 numbers in [0, 1]), started at the seed.

    Candidates are repaired by ``designer.project`` (the feasible set) and the repaired design is what the oracle
    scores; CMA-ES is told ``score − repair_penalty·‖x − project(x)‖²`` so it learns to stay inside. A candidate
    that violates the user's constraints or equals its seed costs no oracle call and is told
    ``seed_score − infeasible_penalty``; a repeated design is told its known score. The budget is shared over
    the seeds as in :func:`run_baseline`, each seed's calls capped by :class:`BudgetedOracle`; the table has the
    same columns. The seeds are searched one after the other (:func:`continuous_baseline_lockstep` searches
    them, and several searcher seeds, together).
    """
    if not len(seeds):
        raise ValueError("no seeds to search from")
    x0 = designer.encode(list(seeds)).numpy().astype(float)
    logs = [_run_alone(designer, _cmaes_seed(designer, seeds[i], float(seed_scores[i]), i, share, x0[i], sigma,
                                             seed, repair_penalty, infeasible_penalty), share)
            for i, share in enumerate(share_budget(budget, len(seeds)))]
    return _continuous_table(designer, seeds, seed_scores, logs, _CMAES_COUNTERS)


def random_perturbation_search(designer: Any, seeds: Sequence[Any], seed_scores: np.ndarray, budget: int,
                               sigma: float = 0.1, seed: int = 0, batch_size: int = 16) -> pd.DataFrame:
    """Random search for continuous designers: Gaussian perturbations of the seed's box encoding.

    The control for :func:`cmaes_search` with CMA-ES's learning switched off: every proposal is
    ``x_seed + σ·z``, z standard normal (σ = CMA-ES's σ₀), repaired by ``designer.project`` (and
    ``discretize``, so the key is the blueprint the oracle scores). Constraint violations, the seed itself and
    repeats cost no oracle call; the rest are scored ``batch_size`` at a time (16: CMA-ES's 11 per generation
    padded to the car oracle's compiled chunk). The designs scored do not depend on ``batch_size`` (proposals are
    drawn from one stream and taken in order); only the number of oracle calls they are cut into does. Budget
    sharing, counters and table columns as :func:`run_baseline`.
    """
    if not len(seeds):
        raise ValueError("no seeds to search from")
    x0 = designer.encode(list(seeds)).numpy().astype(float)
    logs = [_run_alone(designer, _perturbation_seed(designer, seeds[i], i, share, x0[i], sigma, seed, batch_size),
                       share)
            for i, share in enumerate(share_budget(budget, len(seeds)))]
    return _continuous_table(designer, seeds, seed_scores, logs, _PERTURBATION_COUNTERS)


def continuous_baseline_lockstep(method: str, designer: Any, seeds: Sequence[Any], seed_scores: np.ndarray,
                                 budget: int, searcher_seeds: Sequence[int], sigma: float = 0.1,
                                 batch_size: int | None = None) -> list[pd.DataFrame]:
    """``cmaes`` or ``random`` (perturbations) on a continuous designer, for every searcher seed in
    ``searcher_seeds`` (the repeats) and every start at once: one oracle call per round (a CMA-ES generation, a
    batch of random proposals) for all of them. Returns one table per searcher seed, equal to
    ``run_baseline(method, …, BaselineConfig(seed=s))`` when the oracle scores each design independently of the
    others in its call; it only cuts the same designs into far fewer oracle calls (for an oracle that costs per
    call, such as the car's on a GPU). ``batch_size``: random proposals per round (default: the start's share,
    so most starts need one or two rounds)."""
    if method not in ("cmaes", "random"):
        raise ValueError(f"lockstep runs cmaes or random on a continuous designer, not {method!r}")
    if not len(seeds):
        raise ValueError("no seeds to search from")
    x0 = designer.encode(list(seeds)).numpy().astype(float)
    shares = share_budget(budget, len(seeds))
    searches, all_shares = [], []
    for s in searcher_seeds:
        for i, share in enumerate(shares):
            if method == "cmaes":
                searches.append(_cmaes_seed(designer, seeds[i], float(seed_scores[i]), i, share, x0[i], sigma, s))
            else:
                searches.append(_perturbation_seed(designer, seeds[i], i, share, x0[i], sigma, s,
                                                   batch_size or max(16, share)))
            all_shares.append(share)
    logs = _run_lockstep(designer, searches, all_shares)
    counters = _CMAES_COUNTERS if method == "cmaes" else _PERTURBATION_COUNTERS
    n = len(seeds)
    return [_continuous_table(designer, seeds, seed_scores, logs[r * n:(r + 1) * n], counters)
            for r in range(len(searcher_seeds))]
