"""The one budgeted driver: runs any :class:`~tasks.search.base.Searcher` against any designer.

Everything every search method must get right lives here once:

* de-duplication — a design already verified for its seed, the seed itself, or a repeat within a round never
  reaches the oracle;
* constraints before the oracle — every constraint that needs no oracle call (similarity, SA, the car's class
  rules) is checked in one batched call per round, and infeasible designs cost nothing;
* the per-seed budget — a hard cap: :class:`BudgetedOracle` refuses any call beyond it;
* batching — one oracle call per round for all seeds together (``score`` may cut it into Prefect tasks);
* the anytime record — every verified design carries its seed's call number, so the best-so-far curve at any
  number of calls per seed can be read off the table (:mod:`tasks.search.anytime`);
* resumption — with a ``checkpoint`` folder the verified designs and the searcher's state are written after
  every round; a run started again with the same folder repeats no oracle call of a finished round;
* lockstep — every seed shares each round's oracle call, and so do a search's repeats: given one searcher per
  repeat, the driver runs them all from the same seeds in one run (:class:`_Repeats`), each seeing a state of its
  own seeds only, so each repeat's designs and scores are those of a run of its own, cut into fewer oracle calls
  (what a GPU oracle, which costs per call, pays for).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from designers.base import OracleResult
from tasks.search.base import (FAILED, INFEASIBLE, NOT_SENT, REPEATED, SCORED, UNCHANGED, Proposal, SearchState,
                               Searcher, Told)

log = logging.getLogger("advdesign")

#: ``score(designs)``: the oracle's answer for ``designs``, in order (``designer.oracle`` or batched tasks).
Scorer = Callable[[Sequence[Any]], OracleResult]


class BudgetExceeded(RuntimeError):
    """An oracle call beyond a seed's budget was attempted."""


@dataclass
class BudgetedOracle:
    """``score`` behind a hard per-seed cap: :meth:`__call__` refuses a batch that would take any seed past its
    budget, before a single design of it is scored."""

    score: Scorer
    calls_per_seed: np.ndarray
    used: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.calls_per_seed = np.asarray(self.calls_per_seed, dtype=int)
        self.used = np.zeros(len(self.calls_per_seed), dtype=int)

    def __call__(self, designs: Sequence[Any], seed_index: Sequence[int]) -> OracleResult:
        asked = np.bincount(np.asarray(seed_index, dtype=int), minlength=len(self.used))
        over = np.flatnonzero(self.used + asked > self.calls_per_seed)
        if len(over):
            i = int(over[0])
            raise BudgetExceeded(f"seed {i}: {int(asked[i])} oracle calls asked for, "
                                 f"{int(self.calls_per_seed[i] - self.used[i])} of {int(self.calls_per_seed[i])} left")
        result = self.score(list(designs))
        self.used += asked
        return result


@dataclass
class SearchResult:
    """The verified designs, one row per oracle call (seed_index, seed, design, true_score, oracle_failure,
    seed_score, call — the seed's call number, 1-based — round, predicted, the constraint values and the
    oracle's extras; ``repeat`` too for a run of repeats), the proposal counters and one summary per round."""

    table: pd.DataFrame
    counters: dict[str, int]
    rounds: list[dict[str, float]]
    wall_seconds: float
    repeats: int = 1

    def by_repeat(self) -> list[pd.DataFrame]:
        """One table per repeat (the whole table for a single searcher's run)."""
        if self.repeats == 1 and "repeat" not in self.table:
            return [self.table]
        return [self.table[self.table["repeat"] == r].drop(columns="repeat").reset_index(drop=True)
                for r in range(self.repeats)]


class SearchCheckpoint:
    """The verified designs (JSON) and the searcher's state (``torch.save`` of tensors and plain Python, loaded
    with ``weights_only=True``) in ``folder``, written atomically after every round."""

    def __init__(self, folder: str | Path, fingerprint: str) -> None:
        self.folder, self.fingerprint = Path(folder), fingerprint

    def save(self, table: pd.DataFrame, counters: dict[str, int], rounds: list[dict], searcher: Searcher) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        payload = {"fingerprint": self.fingerprint, "counters": counters, "rounds": rounds,
                   "table": json.loads(table.to_json(orient="records"))}
        self._replace("verified.json", lambda path: path.write_text(json.dumps(payload)))
        self._replace("searcher.pt", lambda path: torch.save(searcher.state_dict(), path))

    def _replace(self, name: str, write: Callable[[Path], None]) -> None:
        tmp = self.folder / f".{name}.{os.getpid()}.tmp"
        write(tmp)
        os.replace(tmp, self.folder / name)

    def load(self) -> tuple[pd.DataFrame, dict[str, int], list[dict], dict[str, Any]] | None:
        path = self.folder / "verified.json"
        if not path.is_file() or not (self.folder / "searcher.pt").is_file():
            return None
        payload = json.loads(path.read_text())
        if payload.get("fingerprint") != self.fingerprint:
            log.warning("checkpoint %s belongs to other settings; starting afresh", self.folder)
            return None
        state = torch.load(self.folder / "searcher.pt", weights_only=True)
        return pd.DataFrame.from_records(payload["table"]), payload["counters"], payload["rounds"], state


_COUNTERS = ("proposals", "unchanged", "repeated", "checked", "infeasible", "not_sent", "scored")


def run_search(
    searcher: Searcher | Sequence[Searcher],
    designer: Any,
    seeds: Sequence[Any],
    seed_scores: np.ndarray,
    calls_per_seed: int | Sequence[int],
    score: Scorer | None = None,
    *,
    patience: int = 50,
    max_rounds: int | None = None,
    checkpoint: SearchCheckpoint | None = None,
    on_round: Callable[[dict[str, float], SearchState], None] | None = None,
) -> SearchResult:
    """Run ``searcher`` from every seed at once until each seed's budget is spent or it stops proposing.

    Args:
        searcher: one searcher, or one per repeat (the same method with different searcher seeds): the repeats
            run in lockstep, all of them in every round's oracle call; the table gets a ``repeat`` column and
            ``seed_index`` stays the seed's (:meth:`SearchResult.by_repeat` splits it).
        calls_per_seed: the per-seed budget (one number, or one per seed), the same for every repeat.
        score: the oracle (default ``designer.oracle``): one call per round for all seeds.
        patience: a seed stops after this many consecutive rounds in which none of its proposals could be sent
            (all infeasible, repeated or unchanged, or an empty :class:`Proposal`), or as soon as its searcher
            returns no proposal for it.
        max_rounds: stop after this many rounds (``None``: only budget and patience stop the search).
        on_round: called after every round with that round's summary and the state (progress, logging).
    """
    if not len(seeds):
        raise ValueError("no seeds to search from")
    if not isinstance(searcher, Searcher):
        repeats = _Repeats(searcher, len(seeds))
        n = len(repeats.searchers)
        budget = np.broadcast_to(np.asarray(calls_per_seed, dtype=int), (len(seeds),))
        result = run_search(repeats, designer, list(seeds) * n, np.tile(np.asarray(seed_scores, dtype=float), n),
                            np.tile(budget, n), score, patience=patience, max_rounds=max_rounds,
                            checkpoint=checkpoint, on_round=on_round)
        index = result.table["seed_index"].to_numpy(dtype=int)
        result.table = result.table.assign(seed_index=index % len(seeds), repeat=index // len(seeds))
        result.repeats = n
        return result
    started = time.perf_counter()
    state = SearchState(designer, list(seeds), np.asarray(seed_scores, dtype=float),
                        np.asarray(calls_per_seed, dtype=int))
    if (state.calls_per_seed < 0).any():
        raise ValueError(f"calls_per_seed must be ≥ 0, got {calls_per_seed}")
    oracle = BudgetedOracle(score or designer.oracle, state.calls_per_seed)
    counters = dict.fromkeys(_COUNTERS, 0)
    rounds: list[dict[str, float]] = []
    rows: list[pd.DataFrame] = []
    idle = np.zeros(len(state.seeds), dtype=int)
    searcher.start(state)

    restored = checkpoint.load() if checkpoint else None
    if restored is not None:
        table, saved_counters, rounds, searcher_state = restored
        counters.update(saved_counters)
        if len(table):
            rows.append(table)
            _remember(state, table)
            oracle.used[:] = state.used
        state.round = len(rounds)
        searcher.load_state_dict(searcher_state)
        log.info("resumed after round %d: %d designs verified, no oracle call repeated", state.round, len(table))

    while (max_rounds is None or state.round < max_rounds):
        active = (state.remaining > 0) & (idle < patience)
        if not active.any():
            break
        state.round += 1
        round_started = time.perf_counter()
        proposals = [p for p in searcher.ask(state) if active[p.seed_index]]
        told, sent, sent_seed, sent_predicted = _screen(state, proposals, searcher.batch_per_seed, counters)
        asked_seeds = {p.seed_index for p in proposals}
        for i in np.flatnonzero(active):
            if i not in asked_seeds:
                idle[i] = patience  # the searcher has nothing more for this seed
        result = oracle([designs for _, designs in sent], sent_seed) if sent else None
        new_rows = _record(state, told, sent, sent_predicted, result)
        counters["scored"] += len(sent)
        for i in range(len(state.seeds)):
            if active[i] and i in asked_seeds:
                idle[i] = 0 if any(s == i for s in sent_seed) else idle[i] + 1
        if len(new_rows):
            rows.append(new_rows)
        searcher.tell(state, told)
        summary = {**_round_summary(state, new_rows, time.perf_counter() - round_started), **searcher.round_metrics()}
        rounds.append(summary)
        if checkpoint:
            checkpoint.save(_concat(rows), counters, rounds, searcher)
        if on_round:
            on_round(summary, state)
    return SearchResult(_concat(rows), counters, rounds, time.perf_counter() - started)


class _Repeats(Searcher):
    """One searcher per repeat over the same ``n`` seeds, run on ``n × repeats`` starts: start ``r·n + i`` is
    seed ``i`` of repeat ``r``. Each repeat gets a :class:`SearchState` of its own seeds only (views of the
    driver's), so it asks, and is told, exactly what it would be in a run of its own."""

    name = "repeats"

    def __init__(self, searchers: Sequence[Searcher], n_seeds: int) -> None:
        if not searchers:
            raise ValueError("repeats need at least one searcher")
        self.searchers, self.n = list(searchers), int(n_seeds)
        self._states: list[SearchState] = []

    def start(self, state: SearchState) -> None:
        self._states = []
        for r, searcher in enumerate(self.searchers):
            part = slice(r * self.n, (r + 1) * self.n)
            sub = SearchState(state.designer, state.seeds[part], state.seed_scores[part], state.calls_per_seed[part])
            sub.used, sub.calls_per_seed = state.used[part], state.calls_per_seed[part]  # views: updates show
            sub.scores, sub.designs = state.scores[part], state.designs[part]  # the same dicts, filled in place
            self._states.append(sub)
            searcher.start(sub)
        batches = {s.batch_per_seed for s in self.searchers}  # known after start (CMA-ES: its population)
        if len(batches) > 1:
            raise ValueError(f"repeats send different batches per seed: {sorted(batches)}")
        self.batch_per_seed = batches.pop()

    def ask(self, state: SearchState) -> list[Proposal]:
        out = []
        for r, (searcher, sub) in enumerate(zip(self.searchers, self._states)):
            sub.round = state.round
            if (sub.remaining > 0).any():  # a finished repeat stops asking, as a run of its own would
                out += [replace(p, seed_index=p.seed_index + r * self.n) for p in searcher.ask(sub)]
        return out

    def tell(self, state: SearchState, told: Sequence[Told]) -> None:
        parts: list[list[Told]] = [[] for _ in self.searchers]
        for t in told:
            r = t.seed_index // self.n
            parts[r].append(replace(t, seed_index=t.seed_index - r * self.n))
        for searcher, sub, part in zip(self.searchers, self._states, parts):
            searcher.tell(sub, part)

    def state_dict(self) -> dict[str, Any]:
        return {"searchers": [s.state_dict() for s in self.searchers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for searcher, saved in zip(self.searchers, state.get("searchers", [])):
            searcher.load_state_dict(saved)


def _screen(state: SearchState, proposals, batch_per_seed: int, counters: dict[str, int]):
    """De-duplicate and constraint-check every proposal, choose what is sent; the :class:`Told` skeletons."""
    designer = state.designer
    told: list[Told] = []
    fresh_designs, fresh_seeds, fresh_at = [], [], []
    for p in proposals:
        keys = [designer.key(d) for d in p.designs]
        status, scores = [""] * len(keys), np.full(len(keys), np.nan)
        seen: set[str] = set()
        for j, key in enumerate(keys):
            if key == "" or key == state.seed_keys[p.seed_index]:
                status[j] = UNCHANGED
            elif key in state.scores[p.seed_index]:
                status[j], scores[j] = REPEATED, state.scores[p.seed_index][key]
            elif key in seen:
                status[j] = REPEATED
            else:
                seen.add(key)
                fresh_designs.append(p.designs[j])
                fresh_seeds.append(p.seed_index)
                fresh_at.append((len(told), j))
        told.append(Told(p.seed_index, list(p.designs), keys, status, scores, [None] * len(keys)))
        counters["proposals"] += len(keys)
    counters["unchanged"] += sum(s == UNCHANGED for t in told for s in t.status)
    counters["repeated"] += sum(s == REPEATED for t in told for s in t.status)
    report = designer.constraints(fresh_designs, [state.seeds[i] for i in fresh_seeds]) if fresh_designs else None
    counters["checked"] += len(fresh_designs)
    quota = {p.seed_index: min(batch_per_seed, int(state.remaining[p.seed_index])) for p in proposals}
    sent, sent_seed, sent_predicted = [], [], []
    for f, (t, j) in enumerate(fresh_at):
        entry, seed = told[t], fresh_seeds[f]
        if not report.satisfied[f]:
            entry.status[j], entry.reasons[j] = INFEASIBLE, report.violations[f]
            counters["infeasible"] += 1
        elif quota[seed] > 0:
            quota[seed] -= 1
            entry.status[j] = SCORED
            values = {name: float(v[f]) for name, v in report.values.items()}
            predicted = proposals[t].predicted
            sent.append(((t, j, values), fresh_designs[f]))
            sent_seed.append(seed)
            sent_predicted.append(float(predicted[j]) if predicted is not None else np.nan)
        else:
            entry.status[j] = NOT_SENT
            counters["not_sent"] += 1
    return told, sent, sent_seed, sent_predicted


def _record(state: SearchState, told: list[Told], sent, sent_predicted, result: OracleResult | None) -> pd.DataFrame:
    if result is None:
        return pd.DataFrame()
    records = []
    for k, ((t, j, values), design) in enumerate(sent):
        entry = told[t]
        i, key = entry.seed_index, entry.keys[j]
        failure = result.failures[k]
        value = float(result.scores[k]) if failure is None else np.nan
        entry.scores[j] = value
        if failure is not None:
            entry.status[j], entry.reasons[j] = FAILED, failure
        state.scores[i][key] = value
        state.designs[i][key] = design
        state.used[i] += 1
        records.append({"seed_index": i, "seed": state.seed_keys[i], "design": key, "true_score": value,
                        "oracle_failure": failure, "seed_score": float(state.seed_scores[i]),
                        "call": int(state.used[i]), "round": state.round, "predicted": sent_predicted[k],
                        **values, **{name: float(v[k]) for name, v in result.extras.items()}})
    return pd.DataFrame.from_records(records)


def _remember(state: SearchState, table: pd.DataFrame) -> None:
    """Restore the state's verified designs from a checkpoint's table."""
    parse = state.designer.parse
    for row in table.itertuples(index=False):
        i = int(row.seed_index)
        value = float(row.true_score) if row.true_score is not None else np.nan
        state.scores[i][row.design] = value
        state.designs[i][row.design] = parse(row.design)
        state.used[i] = max(state.used[i], int(row.call))


def _round_summary(state: SearchState, new_rows: pd.DataFrame, seconds: float) -> dict[str, float]:
    best = state.best_scores()
    scored = new_rows[new_rows["oracle_failure"].isna()] if len(new_rows) else new_rows
    summary = {"round": state.round, "oracle_calls": int(len(new_rows)),
               "cumulative_oracle_calls": int(state.used.sum()),
               "best_improvement_mean": float((best - state.seed_scores).mean()),
               "seconds": round(seconds, 3)}
    if len(scored) and scored["predicted"].notna().any():
        ok = scored[scored["predicted"].notna()]
        summary["surrogate_mae_on_new_designs"] = float((ok["predicted"] - ok["true_score"]).abs().mean())
        summary["surrogate_bias_on_new_designs"] = float((ok["predicted"] - ok["true_score"]).mean())
        improved = ok["true_score"].to_numpy() > ok["seed_score"].to_numpy()
        summary["transfer_rate"] = float(improved.mean())
    return summary


def _concat(rows: list[pd.DataFrame]) -> pd.DataFrame:
    rows = [r for r in rows if len(r)]
    if not rows:  # typed, so that indexing with an empty seed_index column still works
        return pd.DataFrame({"seed_index": pd.Series(dtype=int), "seed": pd.Series(dtype=object),
                             "design": pd.Series(dtype=object), "true_score": pd.Series(dtype=float),
                             "oracle_failure": pd.Series(dtype=object), "seed_score": pd.Series(dtype=float),
                             "call": pd.Series(dtype=int), "round": pd.Series(dtype=int),
                             "predicted": pd.Series(dtype=float)})
    return pd.concat(rows, ignore_index=True)
