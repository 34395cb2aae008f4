"""The design loop: gradient-ranked edits on an ensemble of robust surrogates, verified, fine-tuned, every round.

Per round, for every seed at once (one batched tensor):

1. **Incumbents** — the seed's best verified designs (``population`` of them) and the seed itself.
2. **Proposals from the gradient.** Token designers (molecules): one backward pass of the ensemble's acquisition
   at each incumbent's one-hot gives HotFlip's first-order value of every substitution, insertion and deletion
   (:func:`tasks.search.edits.first_order_scores`; Ebrahimi et al. 2018); edits are drawn from those scores —
   the best ones plus a tempered sample, as Gibbs-with-Gradients draws its proposals (Grathwohl et al. 2021,
   *Oops I Took A Gradient: Scalable Sampling for Discrete Distributions*, ICML) — and half of them are combined
   into multi-edit candidates. Box designers (cars): L2 gradient steps of the acquisition from random points of a
   trust region around each incumbent, plus a share of plain random points, projected onto the class rules;
   the region's radius doubles after ``success_tolerance`` rounds in a row that improved the seed, halves after
   ``failure_tolerance`` rounds in a row that did not, and starts again from its first size when it falls below
   the smallest (TuRBO's rule, Eriksson et al. 2019, *Scalable Global Optimization via Local Bayesian
   Optimization*, NeurIPS). On both, a share of each seed's calls (adapted by Thompson sampling) goes to random
   moves in random order, unranked: where the ensemble stops ranking well, the loop still climbs.
3. **Exact scoring** — every candidate gets a forward pass of every member (batched; for one-hot rows the first
   layer is an embedding sum, :meth:`tasks.ensemble.Ensemble.predict_tokens`). With ``rescorer="ridge"`` a pool
   of each seed's candidates is decoded and ranked by a ridge regression on the designer's fingerprints instead
   (:class:`tasks.ridge.StreamingRidge`), for objectives the one-hot ensemble cannot learn from its data.
4. **Acquisition** — mean + β·std over the members; the best candidates per seed go to the driver, which checks
   the constraints and verifies the top ``batch_per_seed`` on the oracle.
5. **Update** — the verified designs join the training data and every member is fine-tuned (warm start, a few
   epochs, the same defense) before the next round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Sequence

import numpy as np
import torch

from tasks.ensemble import Ensemble, fine_tune
from tasks.ridge import StreamingRidge
from tasks.search.base import SCORED, Proposal, SearchState, Searcher, Told, designer_kind
from tasks.search.edits import (apply_edit, apply_edits, edit_of, first_order_scores, random_crossovers,
                                random_edits)
from tasks.training import TrainingConfig


@dataclass(frozen=True)
class LoopConfig:
    """The loop's knobs (the campaign's ``search`` parameters of the same names)."""

    beta: float = 0.0
    batch_per_seed: int = 5
    proposals_per_incumbent: int = 256
    population: int = 4
    temperature: float = 1.0
    max_edits: int = 1
    #: Beside the gradient's edits, this share of ``proposals_per_incumbent`` more candidates per incumbent with
    #: 1 … ``random_max_edits`` uniformly random edits (the hill-climber's mutations), ranked by the same exact
    #: ensemble scores: at a tight similarity bound the gradient's favourite edits of an incumbent run out after a
    #: few rounds (at δ 0.6 the loop stopped after ~45 of 100 calls), random ones near it rarely do.
    random_share: float = 0.25
    random_max_edits: int = 2
    #: The share of each seed's ``batch_per_seed`` calls a round that go to random moves picked in random order,
    #: not by the ensemble: random edits (token designers; the hill-climber's own moves) or random points of the
    #: trust region (box designers; TuRBO's local search without its model). ``None``: adapted every round by
    #: Thompson sampling between the two (see :meth:`DesignLoop._unranked_slots`), so the loop follows whichever
    #: finds improvements more often: its surrogates early, random moves where they stop ranking well (far from
    #: their training data, late in a long run, or where a smooth surrogate's optimum sits at a corner of the box
    #: the oracle's does not: cars' VAT loop verified ~100 designs around that corner after its first round). A
    #: number: that share, fixed.
    unranked_share: float | None = None
    #: Token designers free of a similarity bound (de novo): per incumbent, this share of
    #: ``proposals_per_incumbent`` more candidates, each a one-point crossover of the incumbent with one of the
    #: round's incumbents of any seed (:func:`tasks.search.edits.random_crossovers`), ranked and picked unranked
    #: like the random edits. Moves far from a start, between lineages: what a mutation alone rarely reaches.
    #: Under a similarity bound there is none: a child of two lineages seldom stays near either seed.
    crossover_share: float = 0.25
    #: Designers with graph operators (molecules), de novo: per incumbent, this share of
    #: ``proposals_per_incumbent`` more candidates, Graph GA children (Jensen 2019,
    #: :func:`designers.graph_ga.offspring`) of the incumbent and one of any seed, ranked and picked unranked like
    #: the crossovers. A graph crossover keeps rings and chains whole, where a SELFIES cut rarely does. Each child
    #: costs ~8 ms of RDKit, against microseconds for a token edit, hence the smaller share.
    graph_share: float = 0.0625
    #: Designers with substituent decorations (molecules), de novo: per incumbent, this share of
    #: ``proposals_per_incumbent`` more candidates, each the incumbent with one common group (F, Cl, CH3, OH, NH2,
    #: CF3, CN, OCH3) on an atom that carries a hydrogen (:func:`designers.decorations.decorations`), ranked and
    #: picked unranked like the crossovers: the move a token edit cannot make (a branch takes several tokens).
    decoration_share: float = 0.0
    #: Token designers with features (``designer.fingerprints``; molecules: Morgan counts): ``"ridge"`` ranks each
    #: round's candidates by a ridge regression on those features (:class:`tasks.ridge.StreamingRidge`), refitted
    #: every round on the labelled data and every verified design, instead of by the ensemble; the ensemble's
    #: gradient still proposes the edits. Per seed ``rescore_pool`` candidates are decoded and rescored: half the
    #: ensemble's best, half drawn at random from the rest, valued by the ridge's prediction + ``beta`` times its
    #: posterior std (:meth:`tasks.ridge.StreamingRidge.std`). ``"none"``: the ensemble ranks. On the PMO tasks the
    #: one-hot ensemble trained on 800 random molecules predicts almost nothing (mean validation R² per task −0.5
    #: to 0.4) where a ridge on Morgan counts reaches 0.2–0.9, and the loop's AUC top-10 rose on all six tasks
    #: measured (+0.03 to +0.18; ``benchmarks/results/pmo.json``).
    rescorer: str = "none"
    rescore_pool: int = 512
    ridge_alpha: float = 10.0
    finetune_epochs: int = 3
    #: The dtype of the hidden layers when a round scores its token candidates exactly (``"float32"`` or
    #: ``"bfloat16"``, :meth:`tasks.ensemble.Ensemble.predict_tokens`): bfloat16 scores 800 seeds × 512
    #: candidates 1.1–1.2× faster on a CPU with AMX (its matmuls 7×; gathers and activations are the rest), its
    #: predictions within ~1e-3 of float32's spread.
    scoring_precision: str = "float32"
    #: Candidates per seed handed to the driver, best first, as a multiple of ``batch_per_seed`` (spares for the
    #: ones the constraints or de-duplication reject).
    spares: int = 4
    #: At most this many windows of ``batch_per_seed * spares`` candidates per seed are checked against the
    #: constraints a round (the next window only for seeds still short of a full batch).
    check_pool: int = 16
    #: The driver's patience for the loop: a seed is finished after this many consecutive rounds without a
    #: feasible new candidate (each draws hotter). The driver's default of 50 suits black boxes, whose rounds are
    #: cheap; a loop round costs a fine-tune, and 50 dry rounds at the end of a run took longer than the search.
    patience: int = 10
    #: Fine-tuning replays this many original training points beside the verified designs (no forgetting).
    replay: int = 1024
    #: Trust region of box designers, in the encoding's units (L2): initial, smallest, largest radius. TuRBO's
    #: initial side and largest side of the unit box (0.8, 1.6). A small first region costs the loop its start: on
    #: cars (2 starts × 3 repeats, C = 10) the plain ensemble's loop reached +20.2 km/h from radius 0.1, +21.3 from
    #: 0.4 and +28.2 from 0.8, where one-shot gradient search on a VAT surrogate, free to move ~2, reached +27.5.
    radius: tuple[float, float, float] = (0.8, 0.01, 1.6)
    #: Rounds in a row that improved a seed before its region doubles; TuRBO's 3.
    success_tolerance: int = 3
    #: Rounds in a row without improvement before a seed's region halves; ``None``: TuRBO's
    #: ``ceil(max(4, dimensions) / batch_per_seed)``. Halving after every dry round (the first rule here) shrank a
    #: car's region from 0.8 to its smallest in 7 rounds, where it stayed: the loop found nothing after 30 calls.
    failure_tolerance: int | None = None
    seed: int = 0

    @classmethod
    def from_parameters(cls, search: Any, seed: int) -> LoopConfig:
        """The knobs a campaign's ``search`` parameters name (fields of the same names), with ``seed``."""
        named = {f.name: getattr(search, f.name) for f in fields(cls) if f.name != "seed" and hasattr(search, f.name)}
        return cls(**named, seed=seed)


class DesignLoop(Searcher):
    """The model-based searcher; see the module's docstring. ``training`` and ``x_train``/``y_train`` are what the
    ensemble was trained with (its defense is reused for fine-tuning)."""

    name = "loop"

    def __init__(self, ensemble: Ensemble, training: TrainingConfig, x_train: torch.Tensor, y_train: torch.Tensor,
                 config: LoopConfig = LoopConfig(), x_unlabelled: torch.Tensor | None = None,
                 lower: float | torch.Tensor = 0.0, upper: float | torch.Tensor = 1.0) -> None:
        self.ensemble, self.training, self.config = ensemble, training, config
        self.x_train, self.y_train, self.x_unlabelled = x_train, y_train, x_unlabelled
        self.lower, self.upper = lower, upper
        self.batch_per_seed = config.batch_per_seed
        self.generator = torch.Generator().manual_seed(config.seed)
        self.radius: torch.Tensor | None = None
        #: Per seed, rounds in a row that improved it (> 0) or did not (< 0): the trust region's counters.
        self.streak: torch.Tensor | None = None
        self._rows: dict[str, torch.Tensor] = {}
        self._infeasible: set[tuple[int, str]] = set()
        #: (seed, token row) pairs never worth ranking again: infeasible, already verified, the seed, or a repeat.
        self._spent: set[tuple[int, bytes]] = set()
        self._decoded: dict[bytes, Any] = {}
        self.heat: torch.Tensor | None = None
        #: Per seed, the keys of the designs the last round sent unranked.
        self._unranked_keys: dict[int, set[str]] = {}
        #: The two arms of the adaptive split, ranked (row 0) and unranked (row 1): faded (wins, calls).
        self.arms = torch.zeros(2, 2, dtype=torch.float64)
        self._round_arms = torch.zeros(2, 2, dtype=torch.float64)
        if config.rescorer not in ("none", "ridge"):
            raise ValueError(f"rescorer {config.rescorer!r}: choose 'none' or 'ridge'")
        #: The rescorer (``rescorer="ridge"``) and the keys of the designs it has been given; rebuilt from the
        #: search state on a resumed run.
        self.ridge: StreamingRidge | None = None
        self._ridge_keys: set[str] = set()

    # -- ask ----------------------------------------------------------------------------------------------------
    def ask(self, state: SearchState) -> list[Proposal]:
        active = np.flatnonzero(state.remaining > 0)
        incumbents, owner = [], []
        for i in active:
            # The seed stays an incumbent: its own edits are the likeliest to stay within the similarity bound
            # when the best designs sit at its edge.
            best = [design for design, _ in state.best(int(i), self.config.population)]
            if state.seeds[i] not in best:
                best.append(state.seeds[i])
            incumbents += best
            owner += [int(i)] * len(best)
        if not incumbents:
            return []
        self.ensemble.eval()
        if designer_kind(state.designer) == "tokens":
            rows, seed_of, acquisition, mean, parent_rank = self._token_candidates(state.designer, incumbents,
                                                                                   torch.tensor(owner))
            if self.config.rescorer == "ridge":
                acquisition, mean = self._rescored(state, rows, seed_of, acquisition, mean)
        else:
            if self.radius is None:
                self.radius = torch.full((len(state.seeds),), self.config.radius[0])
                self.streak = torch.zeros(len(state.seeds), dtype=torch.long)
            rows, seed_of, acquisition, mean, parent_rank = self._box_candidates(state.designer, incumbents,
                                                                                 torch.tensor(owner))
        slots = self._unranked_slots(len(state.seeds), state.round)
        if slots.any():
            return self._with_unranked(state, rows, seed_of, acquisition, mean, parent_rank, slots)
        return self._best_per_seed(state, rows, seed_of, acquisition, mean)

    def _token_candidates(self, designer: Any, incumbents: Sequence[Any], owner: torch.Tensor):
        rows = self._token_rows(designer, incumbents)
        vocabulary = len(designer.alphabet)
        x = designer.one_hot(rows).requires_grad_(True)
        self.ensemble.acquisition(x, self.config.beta).sum().backward()
        scores = first_order_scores(x.grad, rows)
        combos = self.config.proposals_per_incumbent // 2 if self.config.max_edits > 1 else 0
        singles = self._draw(scores, self.config.proposals_per_incumbent - combos, self._heat(owner)[:, None])
        n, k = singles.shape
        kind, position, token = edit_of(singles, rows.shape[1], vocabulary)
        parent = torch.arange(n).repeat_interleave(k)
        kind, position, token = kind.reshape(-1), position.reshape(-1), token.reshape(-1)
        parts = [apply_edit(rows, kind, position, token, parent=parent)]
        owners = [owner[parent]]
        # Per candidate, the rank of its parent among its seed's incumbents (0: the best) if it is a random edit,
        # else -1: the unranked picks take random edits of the best incumbent first, as the hill-climber does.
        incumbent_rank = rank_within_seed(owner)
        random = [torch.full((len(parts[0]),), -1)]
        others = []  # (rows, the incumbent each row came from, whether it is a random move)
        if combos and k > 1:
            others.append((self._combinations(rows, singles, kind, position, token, combos),
                           torch.arange(n).repeat_interleave(combos), False))
        explore = round(self.config.random_share * self.config.proposals_per_incumbent)
        if explore:
            parents = rows.repeat_interleave(explore, 0)
            n_edits = torch.randint(1, self.config.random_max_edits + 1, (len(parents),), generator=self.generator)
            others.append((random_edits(parents, n_edits, vocabulary, self.generator),
                           torch.arange(n).repeat_interleave(explore), True))
        if not designer.bound_to_seed:
            others += self._mixed_lineages(designer, rows, incumbents)
        for extra, parent_of, is_random in others:
            parts.append(extra)
            owners.append(owner[parent_of])
            random.append(incumbent_rank[parent_of] if is_random else torch.full((len(extra),), -1))
        candidates, unique_index = _unique_rows(torch.cat(parts), torch.cat(owners))
        seed_of = torch.cat(owners)[unique_index]
        # Each distinct candidate is scored once, part by part (`unique_index` is ascending): single edits from
        # their parents' first layers (two gathers a child), the rest in full.
        precision = getattr(torch, self.config.scoring_precision)
        predictions, start = [], 0
        for i, part in enumerate(parts):
            mine = unique_index[(unique_index >= start) & (unique_index < start + len(part))] - start
            start += len(part)
            predictions.append(
                self.ensemble.predict_edits(rows, parent[mine], kind[mine], position[mine], token[mine], vocabulary,
                                            precision=precision) if i == 0
                else self.ensemble.predict_tokens(part[mine], vocabulary, precision=precision))
        predictions = torch.cat(predictions, dim=1)
        return (candidates, seed_of, _acquire(predictions, self.config.beta), predictions.mean(dim=0),
                torch.cat(random)[unique_index])

    def _rescored(self, state: SearchState, rows: torch.Tensor, seed_of: torch.Tensor, acquisition: torch.Tensor,
                  mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The acquisition and mean with each seed's ``rescore_pool`` rescored candidates (half the ensemble's
        best, half at random from the rest, none already spent) valued by the ridge (its prediction + β·its
        posterior std), every other one at −inf."""
        designer = state.designer
        if not hasattr(designer, "fingerprints"):
            raise ValueError(f"rescorer 'ridge' needs a designer with fingerprints (molecules); "
                             f"{type(designer).__name__} has none")
        self._update_ridge(state)
        _, spent = self._spent_rows(rows, seed_of)
        order, rank = seed_ranking(acquisition.masked_fill(spent, -torch.inf), seed_of)
        half = self.config.rescore_pool // 2
        rest = order[rank >= half]
        drawn, drawn_rank = seed_ranking(torch.rand(len(rest), generator=self.generator), seed_of[rest])
        pool = torch.cat([order[rank < half], rest[drawn[drawn_rank < half]]])
        designs = self._decode(designer, rows[pool])
        features = designer.fingerprints(designs)
        value = self.ridge.predict(features)
        value[torch.tensor([not d for d in designs], dtype=torch.bool)] = -torch.inf
        rescored = torch.full_like(acquisition, -torch.inf)
        rescored[pool] = value + self.config.beta * self.ridge.std(features) if self.config.beta else value
        mean = mean.clone()
        mean[pool] = value
        return rescored, mean

    def _update_ridge(self, state: SearchState) -> None:
        """Give the ridge the designs it has not seen: the labelled data and the seeds first, then every verified
        design; refit."""
        designer = state.designer
        if self.ridge is None:
            self.ridge = StreamingRidge(self.config.ridge_alpha)
            designs = [*designer.decode(self.x_train), *state.seeds]
            scores = torch.cat([self.y_train.float(), torch.as_tensor(np.asarray(state.seed_scores, dtype=float),
                                                                      dtype=torch.float32)])
            self.ridge.add(designer.fingerprints(designs), scores)
            self._ridge_keys.update(designer.key(d) for d in designs)
        new, values = [], []
        for per_seed_scores, per_seed_designs in zip(state.scores, state.designs):
            for key, value in per_seed_scores.items():
                if key not in self._ridge_keys and np.isfinite(value):
                    self._ridge_keys.add(key)
                    new.append(per_seed_designs[key])
                    values.append(value)
        if new:
            self.ridge.add(designer.fingerprints(new), torch.tensor(values, dtype=torch.float32))
        self.ridge.fit()

    def _spent_rows(self, rows: torch.Tensor, seed_of: torch.Tensor) -> tuple[list[bytes], torch.Tensor]:
        """Each token row's bytes and whether it is spent for its seed (infeasible, verified, the seed, a repeat)."""
        raw = [row.tobytes() for row in rows.numpy()]
        return raw, torch.tensor([(seed, r) in self._spent for seed, r in zip(seed_of.tolist(), raw)],
                                 dtype=torch.bool)

    def _mixed_lineages(self, designer: Any, rows: torch.Tensor, incumbents: Sequence[Any]):
        """De novo children of two incumbents (the second of any seed): one-point SELFIES crossovers and, for
        designers with graph operators (molecules), Graph GA children; and decorations of one incumbent (molecules,
        ``decoration_share``); ``(rows, parent, True)`` per kind."""
        n, out = len(rows), []
        crossovers = round(self.config.crossover_share * self.config.proposals_per_incumbent)
        if crossovers:
            parents = rows.repeat_interleave(crossovers, 0)
            partners = rows[torch.randint(0, n, (len(parents),), generator=self.generator)]
            out.append((random_crossovers(parents, partners, self.generator),
                        torch.arange(n).repeat_interleave(crossovers), True))
        graph = round(self.config.graph_share * self.config.proposals_per_incumbent)
        if graph and hasattr(designer, "graph_offspring"):
            parent = torch.arange(n).repeat_interleave(graph)
            partner = torch.randint(0, n, (len(parent),), generator=self.generator)
            seed = int(torch.randint(0, 2**31 - 1, (), generator=self.generator))
            children = designer.graph_offspring([incumbents[i] for i in parent.tolist()],
                                                [incumbents[i] for i in partner.tolist()], seed=seed)
            out += self._spellable(designer, children, parent)
        decorated = round(self.config.decoration_share * self.config.proposals_per_incumbent)
        if decorated and hasattr(designer, "decorations"):
            seed = int(torch.randint(0, 2**31 - 1, (), generator=self.generator))
            per_parent = designer.decorations(list(incumbents), decorated, seed)
            children = [child for kids in per_parent for child in kids]
            parent = torch.arange(n).repeat_interleave(torch.tensor([len(kids) for kids in per_parent]))
            out += self._spellable(designer, children, parent)
        return out

    def _spellable(self, designer: Any, children: Sequence[str], parent: torch.Tensor):
        """``[(rows, parent, True)]`` of the children the vocabulary can spell, or ``[]``: a child too long or with
        a token MOSES never uses (or ``""``, none made) is not a candidate."""
        self._token_rows(designer, [child for child in children if child])
        known = [i for i, child in enumerate(children) if child and designer.key(child) in self._rows]
        if not known:
            return []
        return [(self._token_rows(designer, [children[i] for i in known]), parent[known], True)]

    #: The adaptive split: each arm's wins and calls fade by this factor a round (the better arm changes as
    #: the search moves away from the training data), and each arm keeps at least this share of the calls.
    hedge_decay, hedge_floor = 0.7, 0.1

    def _unranked_slots(self, n_seeds: int, round_number: int) -> torch.Tensor:
        """Per seed, how many of its ``batch_per_seed`` calls this round go to unranked random moves.

        Adaptive (``unranked_share=None``): a two-armed Bernoulli bandit — an arm wins a call when the design
        beats its seed's best so far — played by Thompson sampling (Thompson 1933; Chapelle & Li 2011, *An
        Empirical Evaluation of Thompson Sampling*, NeurIPS): every call of every seed draws both arms' win rates
        from their Beta posteriors (the faded counts, pooled over seeds) and goes to the larger draw; a share
        ``hedge_floor`` of the calls goes to each arm whatever the draws, so neither is ever left unmeasured.
        """
        q = self.batch_per_seed
        if self.config.unranked_share is not None:
            return torch.full((n_seeds,), round(self.config.unranked_share * q), dtype=torch.long)
        rng = np.random.default_rng([self.config.seed, round_number, 0x4ED6E])
        if not self.arms[:, 1].all():
            # Until both arms are measured the ranking leads (better early): each call is unranked with
            # probability ``hedge_floor``, where one call in q would be half of each of a car's rounds at q = 2.
            return torch.from_numpy((rng.random((n_seeds, q)) < self.hedge_floor).sum(axis=1))
        wins, calls = self.arms[:, 0].numpy(), self.arms[:, 1].numpy()
        ranked, unranked = (rng.beta(1 + wins[a], 1 + calls[a] - wins[a], (n_seeds, q)) for a in (0, 1))
        forced = rng.random((n_seeds, q))
        chance = np.where(forced < self.hedge_floor, True, np.where(forced > 1 - self.hedge_floor, False,
                                                                   unranked > ranked))
        return torch.from_numpy(chance.sum(axis=1))

    def _score_arms(self, state: SearchState, told: Sequence[Told]) -> None:
        """Fade both arms' counts and add this round's: per scored design, whether it beat its seed's best
        before the round."""
        self.arms *= self.hedge_decay
        self._round_arms = torch.zeros(2, 2, dtype=torch.float64)
        for t in told:
            new = {k for k, status in zip(t.keys, t.status) if status == SCORED}
            if not new:
                continue
            before = max([float(state.seed_scores[t.seed_index])]
                         + [v for k, v in state.scores[t.seed_index].items() if k not in new and np.isfinite(v)])
            chance = self._unranked_keys.get(t.seed_index, set())
            for key, status, value in zip(t.keys, t.status, t.scores):
                if status == SCORED:
                    arm = int(key in chance)
                    self._round_arms[arm, 0] += float(value > before)
                    self._round_arms[arm, 1] += 1.0
        self.arms += self._round_arms

    def round_metrics(self) -> dict[str, float]:
        """The share of the round's scored calls that were unranked picks, and each arm's
        share of wins (a design that beat its seed's best) over the faded counts."""
        if not (self._round_arms[:, 1].any() and self.arms[1, 1] > 0):  # no split (a share of 0)
            return {}
        calls = self._round_arms[:, 1]
        rates = self.arms[:, 0] / self.arms[:, 1].clamp_min(1e-12)
        return {"unranked_share": float(calls[1] / calls.sum()), "ranked_win_rate": float(rates[0]),
                "unranked_win_rate": float(rates[1])}

    def _with_unranked(self, state: SearchState, rows: torch.Tensor, seed_of: torch.Tensor, acquisition: torch.Tensor,
                       mean: torch.Tensor, parent_rank: torch.Tensor, slots: torch.Tensor) -> list[Proposal]:
        """Each seed's proposal with ``slots[seed]`` of its first ``batch_per_seed`` places given to random edits
        (``parent_rank`` ≥ 0: random edits of the seed's ``parent_rank``-th best incumbent), the best incumbent's
        first and in random order, feasible and new as every candidate; the rest to the ensemble's ranking."""
        ranked = {p.seed_index: p for p in self._best_per_seed(state, rows, seed_of, acquisition, mean)}
        keys = torch.rand(len(rows), generator=self.generator) - parent_rank
        keys = keys.masked_fill((parent_rank < 0) | (slots[seed_of] == 0), -torch.inf)
        unranked = {p.seed_index: p for p in self._best_per_seed(state, rows, seed_of, keys, mean, heat=False)}
        key = state.designer.key
        out = []
        placed: set[str] = set()  # de novo: the designs another seed will send this round (one call will do)
        for seed in sorted(set(ranked) | set(unranked)):
            by_rank = ranked.get(seed, Proposal(seed, [], np.zeros(0)))
            by_chance = unranked.get(seed, Proposal(seed, [], np.zeros(0)))
            n_chance = min(int(slots[seed]), len(by_chance.designs))
            n_rank = self.batch_per_seed - n_chance
            pairs = [*zip(by_rank.designs[:n_rank], by_rank.predicted[:n_rank]),
                     *zip(by_chance.designs[:n_chance], by_chance.predicted[:n_chance]),
                     *zip(by_rank.designs[n_rank:], by_rank.predicted[n_rank:]),
                     *zip(by_chance.designs[n_chance:], by_chance.predicted[n_chance:])]
            seen, designs, predicted = set(placed), [], []
            for design, value in pairs:
                if key(design) not in seen:
                    seen.add(key(design))
                    designs.append(design)
                    predicted.append(value)
            if not state.designer.bound_to_seed:
                placed.update(key(d) for d in designs[: self.batch_per_seed])
            self._unranked_keys[seed] = {key(d) for d in by_chance.designs[:n_chance]}
            out.append(Proposal(seed, designs, np.asarray(predicted, dtype=float)))
        return out

    def _combinations(self, rows: torch.Tensor, singles: torch.Tensor, kind: torch.Tensor, position: torch.Tensor,
                      token: torch.Tensor, combos: int) -> torch.Tensor:
        """``combos`` candidates per incumbent, each 2 … ``max_edits`` of its drawn single edits applied together."""
        n, k = singles.shape
        kind, position, token = kind.reshape(n, k), position.reshape(n, k), token.reshape(n, k)
        width = min(self.config.max_edits, k)
        pick = torch.rand((n, combos, k), generator=self.generator).topk(width, dim=2).indices  # w distinct edits
        count = torch.randint(2, width + 1, (n, combos, 1), generator=self.generator)
        pick = torch.where(torch.arange(width)[None, None] < count, pick, pick[..., :1])  # repeats collapse
        take = lambda t: t.gather(1, pick.reshape(n, -1)).reshape(n * combos, width)  # noqa: E731
        ck, cp, ct = take(kind), take(position), take(token)
        # Duplicate picks (the padding of a short combination) become no-op substitutions after the first.
        duplicate = torch.zeros_like(ck, dtype=torch.bool)
        duplicate[:, 1:] = (pick.reshape(n * combos, width)[:, 1:] == pick.reshape(n * combos, width)[:, :1])
        base = rows.repeat_interleave(combos, 0)
        ct = torch.where(duplicate, base.gather(1, cp), ct)
        ck = torch.where(duplicate, 0, ck)
        return apply_edits(base, ck, cp, ct)

    def _heat(self, owner: torch.Tensor) -> torch.Tensor:
        """Per incumbent, its seed's temperature multiplier: doubled after every round the seed came up short of
        a full batch of new feasible designs (its best edits are spent), back to 1 after a full one."""
        if self.heat is None or len(self.heat) <= int(owner.max()):
            self.heat = torch.ones(int(owner.max()) + 1)
        return self.heat[owner]

    def _draw(self, scores: torch.Tensor, k: int, heat: torch.Tensor | float = 1.0) -> torch.Tensor:
        """``k`` edits per row: Gumbel-top-k over the scores at temperature τ·heat·(spread of the finite scores),
        so τ → 0 takes the k best and a larger τ explores; never an invalid (``-inf``) edit while valid ones
        last."""
        finite = torch.isfinite(scores)
        k = int(min(k, finite.sum(dim=1).max()))
        spread = torch.where(finite, scores, torch.nan).nan_to_num(0.0).std(dim=1, keepdim=True).clamp_min(1e-8)
        u = torch.rand(scores.shape, generator=self.generator).clamp(1e-12, 1 - 1e-12)
        keys = scores / (self.config.temperature * heat * spread) - torch.log(-torch.log(u))
        return keys.topk(k, dim=1).indices

    def _token_rows(self, designer: Any, designs: Sequence[Any]) -> torch.Tensor:
        missing = [d for d in dict.fromkeys(designer.key(d) for d in designs) if d not in self._rows]
        if missing:
            indices, failures = designer.token_indices(missing)
            for key, row, failure in zip(missing, indices, failures):
                if failure is None:
                    self._rows[key] = row
        blank = torch.zeros(designer.input_shape[0], dtype=torch.long)
        return torch.stack([self._rows.get(designer.key(d), blank) for d in designs])

    def _box_candidates(self, designer: Any, incumbents: Sequence[Any], owner: torch.Tensor):
        centres = designer.encode(list(incumbents)).float()
        per = self.config.proposals_per_incumbent
        radius = self.radius[owner].repeat_interleave(per)[:, None]
        centre = centres.repeat_interleave(per, 0)
        direction = torch.randn(centre.shape, generator=self.generator)
        direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-12)
        length = torch.rand((len(centre), 1), generator=self.generator) ** (1 / centre.shape[1])
        x = designer.project(centre + radius * length * direction)
        ascend = (torch.arange(len(x)) % per) < per // 2 + per % 2     # the first half of each incumbent's share
        for _ in range(5):
            z = x.clone().requires_grad_(True)
            self.ensemble.acquisition(z, self.config.beta).sum().backward()
            step = z.grad / z.grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
            moved = x + torch.where(ascend[:, None], radius / 4 * step, torch.zeros_like(step))
            offset = moved - centre
            offset = offset * (radius / offset.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)
            x = designer.project(centre + offset).detach()
        x = designer.discretize(x)
        seed_of = owner.repeat_interleave(per)
        with torch.no_grad():
            predictions = self.ensemble(x)
        # The random points' parents' ranks among their seed's incumbents (0: the best), -1 for the gradient's:
        # the unranked picks are random points of the best incumbent's region first, TuRBO's local search.
        parent_rank = rank_within_seed(owner).repeat_interleave(per).masked_fill(ascend, -1)
        return x, seed_of, _acquire(predictions, self.config.beta), predictions.mean(dim=0), parent_rank

    def _resize_trust_regions(self, state: SearchState, told: Sequence[Told]) -> None:
        first, low, high = self.config.radius
        failure_tolerance = self.config.failure_tolerance or math.ceil(
            max(4, math.prod(state.designer.input_shape)) / self.batch_per_seed)
        for t in told:
            i = t.seed_index
            new = {key for key, status in zip(t.keys, t.status) if status == SCORED}
            before = max([float(state.seed_scores[i])]
                         + [v for key, v in state.scores[i].items() if key not in new and np.isfinite(v)])
            improved = any(s == SCORED and v > before for s, v in zip(t.status, t.scores))
            self.streak[i] = max(int(self.streak[i]), 0) + 1 if improved else min(int(self.streak[i]), 0) - 1
            if self.streak[i] >= self.config.success_tolerance:
                self.radius[i], self.streak[i] = min(2 * float(self.radius[i]), high), 0
            elif -self.streak[i] >= failure_tolerance:
                halved = float(self.radius[i]) / 2
                self.radius[i], self.streak[i] = (halved if halved >= low else first), 0

    def _best_per_seed(self, state: SearchState, candidates: torch.Tensor, seed_of: torch.Tensor,
                       acquisition: torch.Tensor, mean: torch.Tensor, heat: bool = True) -> list[Proposal]:
        """Per seed, the best-acquisition candidates that satisfy the constraints and are new, best first.

        The constraints that need no oracle are checked here, in passes down each seed's ranking: a window of
        ``batch_per_seed × spares`` candidates per seed at a time, the next window only for the seeds still short
        of ``batch_per_seed`` feasible ones, at most ``check_pool`` windows a round. (The driver checks again; a
        design found infeasible is remembered and never ranked again for its seed.) So a seed whose best-scoring
        edits are too dissimilar still gets a full batch of feasible ones: on molecules at δ = 0.4 nine in ten of
        the best-ranked edits fall below the similarity bound.
        """
        designer = state.designer
        window = self.config.batch_per_seed * self.config.spares
        raw = None
        if candidates.dtype == torch.long:  # token rows: drop the ones already found infeasible, verified or stale
            raw, spent = self._spent_rows(candidates, seed_of)
            acquisition = acquisition.masked_fill(spent, -torch.inf)
        order, rank = seed_ranking(acquisition, seed_of)
        # A seed with candidates left but none feasible in this round's windows gets an empty proposal: the next
        # round draws hotter and from fresh random edits, so it is asked again (up to the driver's patience).
        proposals = {seed: Proposal(seed, [], []) for seed in seed_of[order].unique().tolist()}
        short = torch.ones(len(state.seeds), dtype=torch.bool)
        # De novo every lineage chases the same optimum, and a design another start has verified would cost a call
        # to learn nothing (on PMO's median1, 28 % of the calls went to such repeats). Under a seed bound a
        # design's worth depends on its seed, so each seed may still verify it for itself.
        known = set() if designer.bound_to_seed else state.known_keys()
        for depth in range(self.config.check_pool):
            in_window = (rank >= depth * window) & (rank < (depth + 1) * window) & short[seed_of[order]]
            if not in_window.any():
                break
            self._screen_window(state, candidates, order[in_window], seed_of, mean, raw, window, proposals, known)
            for seed, p in proposals.items():
                short[seed] = len(p.designs) < self.config.batch_per_seed
        if heat and self.heat is not None and len(seed_of):
            asked = torch.zeros(len(self.heat), dtype=torch.bool)
            asked[seed_of.unique()] = True
            hotter = torch.where(short[: len(self.heat)], (2 * self.heat).clamp(max=64.0), torch.ones_like(self.heat))
            self.heat = torch.where(asked, hotter, self.heat)
        for p in proposals.values():
            p.predicted = np.asarray(p.predicted, dtype=float)
        return list(proposals.values())

    def _screen_window(self, state: SearchState, candidates: torch.Tensor, chosen: torch.Tensor,
                       seed_of: torch.Tensor, mean: torch.Tensor, raw: list[bytes] | None, keep: int,
                       proposals: dict[int, Proposal], known: set[str]) -> None:
        """Decode ``chosen`` (best first within each seed), check the constraints, add the feasible new ones
        (new to their seed, and not in ``known``: designs verified for any seed, de novo)."""
        designer = state.designer
        decoded = self._decode(designer, candidates[chosen])
        owners, predicted = seed_of[chosen].tolist(), mean[chosen].tolist()
        keys = [designer.key(d) for d in decoded]
        chosen_raw = [raw[j] for j in chosen.tolist()] if raw is not None else None
        # A design is taken for its seed this round; de novo, for every seed.
        tag = (lambda seed, key: (seed, key)) if designer.bound_to_seed else (lambda seed, key: key)
        taken = {tag(seed, designer.key(d)) for seed, p in proposals.items() for d in p.designs}
        fresh = []
        for j, (key, seed) in enumerate(zip(keys, owners)):
            if key and key != state.seed_keys[seed] and key not in state.scores[seed] and key not in known \
                    and (seed, key) not in self._infeasible and tag(seed, key) not in taken:
                taken.add(tag(seed, key))
                fresh.append(j)
            elif chosen_raw is not None:
                self._spent.add((seed, chosen_raw[j]))
        if fresh:
            report = designer.constraints([decoded[j] for j in fresh], [state.seeds[owners[j]] for j in fresh])
            for j, ok in zip(fresh, report.satisfied):
                if not ok:
                    self._infeasible.add((owners[j], keys[j]))
                    if chosen_raw is not None:
                        self._spent.add((owners[j], chosen_raw[j]))
            fresh = [j for j, ok in zip(fresh, report.satisfied) if ok]
        for j in fresh:
            p = proposals.setdefault(owners[j], Proposal(owners[j], [], []))
            if len(p.designs) < keep:
                p.designs.append(decoded[j])
                p.predicted.append(predicted[j])

    def _decode(self, designer: Any, points: torch.Tensor) -> list[Any]:
        """Designs of candidate rows; token rows are decoded once and remembered (the same edits of the same
        incumbents come back round after round, and SELFIES decoding is the round's largest cost)."""
        if points.dtype != torch.long:
            return designer.decode(points)
        raw = [row.tobytes() for row in points.numpy()]
        missing = [j for j, r in enumerate(raw) if r not in self._decoded]
        if missing:
            for j, design in zip(missing, designer.decode(designer.one_hot(points[missing]))):
                self._decoded[raw[j]] = design
        return [self._decoded[r] for r in raw]

    # -- tell ---------------------------------------------------------------------------------------------------
    def tell(self, state: SearchState, told: Sequence[Told]) -> None:
        if self.radius is not None:
            self._resize_trust_regions(state, told)
        self._score_arms(state, told)
        self._unranked_keys = {}
        self._last_round = [set() for _ in state.seeds]
        for t in told:
            self._last_round[t.seed_index].update(k for k, status in zip(t.keys, t.status) if status == SCORED)
        if self.config.finetune_epochs < 1 or not any(SCORED in t.status for t in told):
            return
        x_new, y_new, recent = self._verified_data(state)
        if not len(x_new):
            return
        # This round's designs, as many earlier verified ones and original points beside them (no forgetting, and
        # the cost of a round stays flat as the verified set grows).
        older = (~recent).nonzero().flatten()
        older = older[torch.randperm(len(older), generator=self.generator)[: self.config.replay]]
        rows = torch.cat([recent.nonzero().flatten(), older])
        replay = torch.randperm(len(self.x_train), generator=self.generator)[: self.config.replay]
        fine_tune(self.ensemble, self.training, self.config.finetune_epochs,
                  torch.cat([self.x_train[replay], x_new[rows]]), torch.cat([self.y_train[replay], y_new[rows]]),
                  self.x_unlabelled, self.lower, self.upper, round_number=state.round)
        self.ensemble.eval()

    def _verified_data(self, state: SearchState) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every verified design's encoding and true score, and which of them this round verified."""
        designer = state.designer
        designs, scores, recent = [], [], []
        for i, (per_seed_scores, per_seed_designs) in enumerate(zip(state.scores, state.designs)):
            for key, value in per_seed_scores.items():
                if np.isfinite(value):
                    designs.append(per_seed_designs[key])
                    scores.append(value)
                    recent.append(key in self._last_round[i])
        if not designs:
            return self.x_train[:0], self.y_train[:0], torch.zeros(0, dtype=torch.bool)
        y, recent_t = torch.tensor(scores, dtype=torch.float32), torch.tensor(recent)
        if designer_kind(designer) == "tokens":
            rows = self._token_rows(designer, designs)
            ok = rows.any(dim=1)
            return designer.one_hot(rows[ok]), y[ok], recent_t[ok]
        return designer.encode(designs).float(), y, recent_t

    # -- resumption ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"ensemble": self.ensemble.state_dict(), "generator": self.generator.get_state(),
                "radius": self.radius, "streak": self.streak, "heat": self.heat, "arms": self.arms}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ensemble.load_state_dict(state["ensemble"])
        self.generator.set_state(state["generator"])
        self.radius = state["radius"]
        self.streak = state.get("streak")
        if self.radius is not None and self.streak is None:
            self.streak = torch.zeros(len(self.radius), dtype=torch.long)
        self.heat = state.get("heat")
        self.arms = state.get("arms", torch.zeros(2, 2, dtype=torch.float64))


def seed_ranking(values: torch.Tensor, seed_of: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The indices of the finite ``values`` grouped by seed, highest first within each seed, and each one's rank
    among its seed's (0: the best)."""
    order = torch.argsort(values, descending=True)
    order = order[torch.isfinite(values[order])]
    order = order[torch.argsort(seed_of[order], stable=True)]
    return order, rank_within_seed(seed_of[order])


def rank_within_seed(grouped: torch.Tensor) -> torch.Tensor:
    """Per entry of ``grouped`` (seed indices, grouped by seed, best first within), its rank among its seed's."""
    return torch.arange(len(grouped)) - torch.searchsorted(grouped, grouped)


def _acquire(predictions: torch.Tensor, beta: float) -> torch.Tensor:
    spread = predictions.std(dim=0, unbiased=False) if len(predictions) > 1 else torch.zeros_like(predictions[0])
    return predictions.mean(dim=0) + beta * spread


def _unique_rows(rows: torch.Tensor, seed_of: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct (seed, row) pairs: the rows and the index of each one's first occurrence.

    Rows are compared by a 64-bit random linear hash (wrapping arithmetic; a collision among a million rows has
    probability ~1e-8), which is ten times faster than ``torch.unique(dim=0)`` on the rows themselves.
    """
    multipliers = torch.randint(1, 2**62, (rows.shape[1] + 1,), generator=torch.Generator().manual_seed(0x5EED))
    # A matrix-vector product: the same wrapping sum as the elementwise (n, L) product, without materialising it
    # (that product was 0.6 s of a round).
    key = seed_of.long() * multipliers[0] + rows.long() @ multipliers[1:]
    _, inverse = torch.unique(key, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), len(rows), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(rows)), reduce="amin")
    first = first.sort().values
    return rows[first], first
