"""Typed flow parameters (pydantic): what a user, a deployment or the CLI can set, with the defaults of a real run."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator,
                      model_validator)

from designers import DESIGNERS
from tasks.training import DEFENSES


def _known_defense(name: Any) -> Any:
    if name not in DEFENSES:
        raise ValueError(f"unknown defense {name!r}; choose from {', '.join(DEFENSES)}")
    return name


def _known_designer(name: Any) -> Any:
    if name not in DESIGNERS:
        raise ValueError(f"unknown designer {name!r}; choose one of {', '.join(DESIGNERS)}")
    return name


#: A defense name: an enum in the JSON schema (a drop-down in Prefect's UI, choices on the command line), validated
#: with an error that lists the choices.
DefenseName = Annotated[Literal[DEFENSES], BeforeValidator(_known_defense)]  # type: ignore[valid-type]
#: A design domain's name, likewise.
DesignerName = Annotated[Literal[DESIGNERS], BeforeValidator(_known_designer)]  # type: ignore[valid-type]


class _Parameters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DesignerParameters(_Parameters):
    name: DesignerName = Field("molecule", description="design domain: molecules (RDKit oracle) or car blueprints "
                               "(lattice-Boltzmann oracle)")
    objective: str = Field(
        "plogp", description="what is maximised. Molecules: plogp, qed, a GuacaMol/PMO task (celecoxib_rediscovery, "
        "osimertinib_mpo, median1, ...; pmo:<task>: the task as PMO scored it; docs/objectives.md lists them). "
        "Cars: top_speed or drag_area (C_D*A minimised: the score is -C_D*A). Either: "
        "module.path:function[@version], a callable from a list of SMILES (cars: the oracle's components) to one "
        "float each, higher is better")
    similarity_threshold: float = Field(0.4, ge=0, le=1, description="δ: minimum Tanimoto similarity to the seed")
    max_sa: float | None = Field(None, description="optional upper bound on the SA score (1 easy ... 10 hard)")
    min_mol_weight: float | None = Field(None, ge=0, description="optional lower bound on molecular weight (Da)")
    max_mol_weight: float | None = Field(None, description="optional upper bound on molecular weight (Da)")
    min_qed: float | None = Field(None, ge=0, le=1, description="optional lower bound on QED (drug-likeness)")
    keep_smarts: str | None = Field(None, description="a substructure (SMARTS) every design must contain, e.g. the "
                                    "scaffold or a warhead")
    forbid_smarts: tuple[str, ...] = Field((), description="substructures (SMARTS, separated by spaces) no design may "
                                           "contain, e.g. '[N+](=O)[O-] C(=O)Cl'")
    # Cars (designers/car.py; docs/car-oracle.md). The flow is 2-D: a model of a car, not a wind tunnel.
    resolution: Literal["coarse", "fine", "finest", "smoke"] = Field(
        "coarse", description="car flow lattice: coarse 8 cells/m (~0.14 s a blueprint, numba kernel, one thread; "
        "ranks like fine at Spearman 0.91), fine 16, finest 24; smoke (4, short run) for plumbing tests only")
    engine_power_kw: float = Field(110.0, gt=0, description="car class rule: engine power every design shares (kW)")
    compile: bool = Field(True, description="car, torch step only (the CUDA path): torch.compile it (3x faster "
                          "after a 20-50 s compile per lattice shape and process); the CPU's numba kernel is compiled "
                          "once and cached on disk")
    threads: int | None = Field(1, ge=1, description="car: blueprints the numba kernel simulates at once (torch "
                                "threads for the torch step); 1 because a campaign scores several oracle batches at "
                                "once (None: all cores)")
    max_change_from_seed_m: float | None = Field(None, gt=0, description="car: largest station-height change from "
                                                 "the seed (m)")

    @model_validator(mode="before")
    @classmethod
    def _designer_objective(cls, values: Any) -> Any:
        """An objective left unset (or ``None``) is the chosen designer's default: plogp, or a car's top_speed."""
        if isinstance(values, dict) and values.get("objective") is None:
            from designers.objectives import DEFAULTS

            name = values.get("name")
            values = {**values, "objective": DEFAULTS.get(name if isinstance(name, str) else "molecule", "plogp")}
        return values

    @field_validator("objective")
    @classmethod
    def _known_objective(cls, text: str, info: ValidationInfo) -> str:
        """A built-in name, a task, or a user callable that imports and returns one score per design (tried on two
        small designs now, so a mistake fails before any work, in one line naming the culprit)."""
        from designers.objectives import normalise

        return normalise(text, info.data.get("name") or "molecule")

    @field_validator("max_mol_weight")
    @classmethod
    def _weight_range(cls, upper: float | None, info: ValidationInfo) -> float | None:
        lower = info.data.get("min_mol_weight")
        if upper is not None and lower is not None and upper < lower:
            raise ValueError(f"{upper} is below the minimum molecular weight {lower}")
        return upper

    @field_validator("keep_smarts")
    @classmethod
    def _kept_smarts(cls, smarts: str | None) -> str | None:
        if smarts is None or smarts.strip().lower() in ("", "none"):
            return None
        return _valid_smarts(smarts.strip())

    @field_validator("forbid_smarts")
    @classmethod
    def _forbidden_smarts(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_valid_smarts(p.strip()) for p in patterns if p.strip())

    def settings(self) -> dict:
        """The designer constructor's arguments: only the fields of the chosen domain."""
        return self.model_dump(include=_DESIGNER_FIELDS.get(self.name, set()))


def _valid_smarts(smarts: str) -> str:
    from designers.objectives.scoring import smarts_pattern

    smarts_pattern(smarts)  # ValueError: invalid SMARTS '…'
    return smarts


_DESIGNER_FIELDS: dict[str, set[str]] = {
    "molecule": {"objective", "similarity_threshold", "max_sa", "min_mol_weight", "max_mol_weight", "min_qed",
                 "keep_smarts", "forbid_smarts"},
    "car": {"objective", "resolution", "engine_power_kw", "compile", "threads", "max_change_from_seed_m"},
}


class DataParameters(_Parameters):
    n_labelled: int = Field(30_000, ge=10, description="designs labelled by the oracle for training (10% validation)")
    n_unlabelled: int = Field(10_000, ge=0, description="extra unlabelled designs (used by VAT only)")
    n_seed_pool: int = Field(5_000, ge=0, description="held-out labelled designs the seeds are drawn from")
    n_seeds: int = Field(800, ge=1, description="seeds: the lowest-scoring designs of the pool (JT-VAE protocol)")
    seeds_file: str | None = Field(None, description="a file of seed designs, one per line (overrides the pool)")
    oracle_batch_size: int = Field(2_000, ge=1, description="designs per oracle task")
    rng_seed: int = Field(0, description="seed of data sampling, the split and training")

    @field_validator("seeds_file")
    @classmethod
    def _readable(cls, path: str | None) -> str | None:
        if path is not None:
            check_seeds_file(path)
        return path


#: Seed files already warned about (a parameter model is validated more than once per run: CLI, flow).
_WARNED_SEED_FILES: set[tuple[str, float]] = set()


def check_seeds_file(path: str) -> None:
    """A seed file fails in one line naming it, before any labelling: missing, a folder, unreadable, binary or
    not UTF-8 (its bytes are never echoed), or without a single design line. Duplicate lines are warned about
    (each seed is designed from once: the duplicates only repeat work)."""
    file = Path(path)
    if not file.exists():
        raise ValueError(f"seeds file {path} not found")
    if not file.is_file():
        raise ValueError(f"seeds file {path} is not a file")
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ValueError(f"seeds file {path} cannot be read: {exc.strerror or exc}") from None
    if b"\0" in raw:
        raise ValueError(f"seeds file {path} is binary, not text with one design per line")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ValueError(f"seeds file {path}:{line}: not UTF-8 text (byte {exc.start})") from None
    first_seen: dict[str, int] = {}
    duplicates: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        design = line.strip()
        if not design or design.startswith("#"):
            continue
        if design in first_seen:
            duplicates.append(f"line {number} repeats line {first_seen[design]}")
        else:
            first_seen[design] = number
    if not first_seen:
        raise ValueError(f"seeds file {path} has no usable seed: no design lines (one per line; # starts a comment)")
    key = (str(file.resolve()), file.stat().st_mtime)
    if duplicates and key not in _WARNED_SEED_FILES:
        _WARNED_SEED_FILES.add(key)
        logging.getLogger("advdesign").warning(
            "seeds file %s: %d duplicate line%s (%s%s)", path, len(duplicates), "s" * (len(duplicates) > 1),
            "; ".join(duplicates[:3]), "; …" if len(duplicates) > 3 else "")


#: ``data.rng_seed: null`` in a campaign's parameters: a fresh data seed per flow run (see :func:`fresh_data_seed`).
FRESH = None


class CampaignDataParameters(DataParameters):
    """A campaign's data: as :class:`DataParameters`, and ``rng_seed`` may be null (fresh), for scheduled
    deployments: a nightly run with a fixed seed would relabel nothing and retrain nothing, only repeat last night's
    cached campaign."""

    rng_seed: int | None = Field(0, description="seed of data sampling, the split and training; null (none on the "
                                 "command line): a fresh seed per flow run, its scheduled start time in seconds since "
                                 "1970 UTC, as the scheduled deployments use (each night new data and seeds; a retry "
                                 "of the same flow run draws the same seed and reuses its cached labels and models)")


def fresh_data_seed() -> tuple[int, str]:
    """The seed ``rng_seed: null`` stands for, and where it came from: the current flow run's scheduled start time
    (``prefect.runtime.flow_run.scheduled_start_time``: a deployment's scheduled slot, or when a manual run was
    created; kept across retries of that flow run), as whole seconds since 1970 UTC (< 2**32 until 2106, so every
    random generator takes it)."""
    from prefect.runtime import flow_run

    start = flow_run.scheduled_start_time
    return int(start.timestamp()), f"flow run scheduled start {start.isoformat()}"


class SurrogateParameters(_Parameters):
    hidden: tuple[int, ...] = Field((256, 128), description="hidden-layer sizes of the MLP")
    epochs: int = Field(15, ge=1, description="training epochs")
    batch_size: int = Field(128, ge=1, description="minibatch size")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    weight_decay: float = Field(1e-5, ge=0, description="Adam weight decay")
    eps: float = Field(0.1, ge=0, description="L∞ radius of FGSM/PGD adversarial training")
    pgd_steps: int = Field(7, ge=1, description="PGD steps of PGD adversarial training")
    vat_eps: float = Field(1.0, ge=0, description="L2 radius of the VAT perturbation")
    vat_weight: float = Field(1.0, ge=0, description="weight of VAT's smoothness term in the loss")
    trades_beta: float = Field(6.0, ge=0, description="TRADES: weight β of the robustness term (0 = plain training)")
    coms_limit: float = Field(0.5, description="COMs: over-estimation limit τ on the ascent's points (target std units)")

    @field_validator("hidden")
    @classmethod
    def _positive_widths(cls, hidden: tuple[int, ...]) -> tuple[int, ...]:
        if any(width < 1 for width in hidden):
            raise ValueError(f"every hidden-layer size must be ≥ 1, got {','.join(map(str, hidden))}")
        return hidden

    @field_validator("eps")
    @classmethod
    def _eps_inside_the_box(cls, eps: float) -> float:
        # Designs are encoded in [0, 1] (a molecule's one-hot, a car's 12 normalised numbers): an L∞ radius of 1
        # already reaches every corner of the box, so a larger one is a mistake (1e9, inf), not a stronger defense.
        if not eps <= 1:
            raise ValueError(f"{eps} is not an L∞ radius in the design box [0, 1]; use a value in [0, 1] "
                             "(the defaults: 0.1 molecules, 0.05 cars)")
        return eps

    @field_validator("vat_eps", "vat_weight", "trades_beta", "coms_limit", "lr", "weight_decay")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value}")
        return value


class SearchParameters(_Parameters):
    method: Literal["signed", "l2", "adam"] = Field(
        "l2", description="signed: iterated FGSM; l2: L2-normalised gradient (flips the most promising tokens "
        "first, measured to find 3-10x more similar designs than signed on molecules); adam")
    steps: int = Field(100, ge=1, description="gradient-search steps from each seed")
    step_size: float = Field(0.2, gt=0, description="gradient-search step length (in the method's norm)")
    eps: float | None = Field(None, gt=0, description="L∞ radius around the seed's encoding (null: no ball, the "
                              "search moves anywhere in the design box)")
    top_k: int = Field(5, ge=1, description="one-shot: designs per seed sent to the oracle")
    budget: int = Field(4_000, ge=0, description="one-shot: oracle calls allowed for verifying one surrogate's "
                        "designs")
    strategy: Literal["loop", "one-shot"] = Field(
        "loop", description="loop: the design loop (gradient-ranked edits on an ensemble, verified, fine-tuned, "
        "round after round); one-shot: one gradient trajectory per seed, its top_k verified once")
    calls_per_seed: int = Field(100, ge=1, description="loop: oracle calls allowed per seed (a hard cap)")
    ensemble_size: int = Field(4, ge=1, description="loop: surrogates trained with the same defense, other seeds "
                               "and bootstraps")
    beta: float = Field(0.0, description="loop: acquisition mean + beta*std over the ensemble (with rescorer "
                        "ridge: the ridge's prediction + beta × its posterior std; 0 greedy, > 0 optimistic, < 0 "
                        "conservative)")
    batch_per_seed: int = Field(5, ge=1, description="loop: designs per seed sent to the oracle each round (q)")
    proposals_per_incumbent: int = Field(256, ge=1, description="loop: edits drawn per incumbent from the "
                                         "gradient's first-order scores")
    population: int = Field(4, ge=1, description="loop: incumbents per seed (the seed and its best verified "
                            "designs)")
    temperature: float = Field(1.0, gt=0, description="loop: softmax temperature of the edit draw (in units of "
                               "the scores' spread)")
    max_edits: int = Field(1, ge=1, description="loop: at most this many token edits combined into one candidate "
                           "(1 measured best on constrained plogP at δ 0.4: multi-edit candidates mostly fall below "
                           "the similarity bound)")
    random_share: float = Field(0.25, ge=0, description="loop: per incumbent, this share of "
                                "proposals_per_incumbent more candidates with 1-2 random token edits, ranked beside "
                                "the gradient's (keeps a tight similarity bound from running the loop dry)")
    unranked_share: float | None = Field(
        None, ge=0, le=1, description="loop: the share of each seed's q calls a round sent to random moves (token "
        "edits; points of a car's trust region) in random order instead of the ensemble's ranking (null: adapted "
        "every round by Thompson sampling to whichever finds improvements more often; measured to keep the loop "
        "ahead of the hill-climber late in long runs, where the ranking falls behind random edits)")
    crossover_share: float = Field(0.25, ge=0, description="loop: de novo only (similarity bound 0): per "
                                   "incumbent, this share of proposals_per_incumbent more candidates that are "
                                   "one-point SELFIES crossovers with the incumbents of every start, ranked beside "
                                   "the edits: moves between lineages no single edit reaches; 0 turns them off)")
    graph_share: float = Field(0.0625, ge=0, description="loop: molecules, de novo only: per incumbent, this share "
                               "of proposals_per_incumbent more candidates that are Graph GA children (Jensen 2019: "
                               "graph crossover and mutation, rings kept whole) of the incumbent and one of any "
                               "start, ranked beside the edits; ~8 ms of RDKit each; 0 turns them off")
    decoration_share: float = Field(0.0, ge=0, description="loop: molecules, de novo only: per incumbent, this "
                                    "share of proposals_per_incumbent more candidates that are the incumbent with "
                                    "one common substituent (F, Cl, CH3, OH, NH2, CF3, CN, OCH3) on an atom with a "
                                    "hydrogen, ranked beside the edits: the move a SELFIES token edit cannot make; "
                                    "0 turns them off")
    rescorer: Literal["none", "ridge"] = Field(
        "none", description="loop: molecules: ridge ranks each round's candidates by a ridge regression on Morgan "
        "counts refitted every round on all labelled and verified designs, instead of by the ensemble (whose "
        "gradient still proposes); for objectives the one-hot surrogates predict poorly (PMO's tasks)")
    rescore_pool: int = Field(512, ge=2, description="loop: with rescorer ridge, candidates per seed decoded and "
                              "rescored a round (half the ensemble's best, half at random)")
    ridge_alpha: float = Field(10.0, gt=0, description="loop: with rescorer ridge, its L2 penalty")
    finetune_epochs: int = Field(3, ge=0, description="loop: epochs of warm-started fine-tuning per round")
    scoring_precision: Literal["float32", "bfloat16"] = Field(
        "float32", description="loop: dtype of the surrogates' hidden layers when a round scores its token "
        "candidates exactly (bfloat16: faster on CPUs with AMX and on GPUs, predictions within ~1e-3 of float32's "
        "spread)")

    #: The one-shot gradient search's own settings (the loop reads none of them).
    ONE_SHOT_ONLY: ClassVar[tuple[str, ...]] = ("method", "steps", "step_size", "eps", "top_k", "budget")

    def applicable(self) -> dict[str, Any]:
        """The settings the chosen ``strategy`` reads (for MLflow: no loop settings on a one-shot run and no
        one-shot ones on a loop run)."""
        def loop_only(name: str) -> bool:
            return name != "strategy" and (type(self).model_fields[name].description or "").startswith("loop:")

        return {k: v for k, v in self.model_dump().items()
                if not (self.strategy == "loop" and k in self.ONE_SHOT_ONLY)
                and not (self.strategy != "loop" and loop_only(k))}

    @field_validator("eps")
    @classmethod
    def _implausible_ball(cls, eps: float | None) -> float | None:
        if eps is not None and eps >= 1:
            # Encodings live in [0, 1]: an L∞ ball of radius ≥ 1 holds the whole box, i.e. no ball at all.
            logging.getLogger("advdesign").warning(
                "search eps %g ≥ 1 holds the whole design box [0, 1]: the search is unconstrained (as with none)", eps)
        return eps

    @field_validator("step_size", "beta", "temperature", "random_share", "crossover_share",
                     "graph_share", "decoration_share", "ridge_alpha")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value}")
        return value


#: Named starting points of a campaign: ``full`` is a real run, ``quick`` a few minutes on 2 cores (:data:`QUICK`).
Preset = Literal["full", "quick"]


class CampaignParameters(_Parameters):
    """A campaign's settings. Sections and fields left out take the chosen designer's defaults, then the preset's
    (``{"preset": "quick", "data": {"rng_seed": 1}}`` is the quick campaign with another data seed)."""

    preset: Preset = Field("full", description="starting point for the fields not given: full (a real run) or quick "
                           "(small data, short training and search: a few minutes on 2 cores). The campaign flow's "
                           "top-level preset, when set, wins over this one (deployments set that one, so a partial "
                           "params override keeps it)")
    designer: DesignerParameters = Field(DesignerParameters(), description="the design domain and its constraints")
    data: CampaignDataParameters = Field(CampaignDataParameters(), description="labelled data, unlabelled data and "
                                         "seeds")
    surrogate: SurrogateParameters = Field(SurrogateParameters(), description="surrogate training")
    search: SearchParameters = Field(SearchParameters(), description="design search and oracle verification")
    defenses: tuple[DefenseName, ...] = Field(("none", "fgsm", "vat"), description="surrogate defenses compared, "
                                              "each trained, designed with and verified")
    rounds: int = Field(1, ge=1, description="one-shot search only: verified designs join the data, retrain, "
                        "repeat (the design loop fine-tunes after every round itself)")
    experiment: str = Field("advdesign", description="MLflow experiment name")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI (default: the project's SQLite store)")

    @field_validator("defenses")
    @classmethod
    def _at_least_one(cls, defenses: tuple[str, ...]) -> tuple[str, ...]:
        if not defenses:
            raise ValueError(f"no defense given; choose from {', '.join(DEFENSES)}")
        return defenses

    @field_validator("data", mode="before")
    @classmethod
    def _campaign_data(cls, data: Any) -> Any:
        """A plain :class:`DataParameters` (what the other flows take) is a campaign's data too."""
        if isinstance(data, DataParameters) and not isinstance(data, CampaignDataParameters):
            return data.model_dump(include=data.model_fields_set)
        return data

    @model_validator(mode="after")
    def _rounds_are_one_shots(self) -> "CampaignParameters":
        if self.rounds > 1 and self.search.strategy == "loop":
            raise ValueError("rounds > 1 repeats the one-shot search; with the design loop (the default) set "
                             "search.calls_per_seed instead, or choose search.strategy one-shot")
        return self

    @model_validator(mode="after")
    def _ridge_needs_fingerprints(self) -> "CampaignParameters":
        if self.search.rescorer == "ridge" and self.designer.name != "molecule":
            raise ValueError(f"search.rescorer ridge ranks molecules by their Morgan counts; the {self.designer.name} "
                             "designer has none (use rescorer none)")
        return self

    @model_validator(mode="before")
    @classmethod
    def _designer_defaults(cls, values: Any) -> Any:
        """Fields a user, a deployment or the CLI leaves unset take the chosen designer's defaults
        (:data:`DESIGNER_DEFAULTS`): a car's 12 numbers in [0, 1] want other step sizes and radii than a
        molecule's 55 × 27 one-hot; with ``preset: quick``, the quick settings (:data:`QUICK`) on top. Fields that
        are set always win, so a partial section merges onto the preset's."""
        if not isinstance(values, dict):
            return values
        designer = values.get("designer")
        name = designer.get("name") if isinstance(designer, dict) else getattr(designer, "name", None)
        layers = [DESIGNER_DEFAULTS.get(name or "molecule") or {}]
        if values.get("preset") == "quick":
            layers.append(QUICK.get(name or "molecule") or {})
        layers = [layer for layer in layers if layer]
        if not layers:
            return values
        merged = dict(values)
        for layer in reversed(layers):  # the quick preset over the designer's defaults, the given over both
            for section, defaults in layer.items():
                if isinstance(defaults, BaseModel):
                    defaults = defaults.model_dump(include=defaults.model_fields_set)
                given = merged.get(section) or {}
                if isinstance(given, BaseModel):
                    given = given.model_dump(include=given.model_fields_set)
                merged[section] = {**defaults, **given}
        return merged

    def with_preset(self, preset: Preset | None) -> "CampaignParameters":
        """These parameters on ``preset``: every field they set away from their own preset's value (an override)
        over ``preset``'s settings for their designer. ``None`` or their own preset: unchanged.

        The campaign flow's top-level ``preset`` parameter: a deployment sets it beside ``params``, so a run's
        ``--param params='{"data": {"rng_seed": 1}}'`` (which replaces the deployment's whole ``params``, as
        Prefect merges parameters at the top level) keeps the deployment's preset. A field is an override when it
        differs from what the parameters' own preset (``params.preset``, full unless set) gives; Prefect's form
        submits every field at its shown default, and those are no overrides. So a field set to exactly the
        value its own preset would give takes the new preset's value."""
        if preset is None or preset == self.preset:
            return self
        cls = type(self)
        base = cls.model_validate({"preset": self.preset, "designer": self.designer})
        overrides: dict[str, Any] = {}
        for name in cls.model_fields:
            if name in ("preset", "designer"):
                continue
            value, default = getattr(self, name), getattr(base, name)
            if isinstance(value, BaseModel):
                changed = {k: getattr(value, k) for k in type(value).model_fields
                           if getattr(value, k) != getattr(default, k)}
                if changed:
                    overrides[name] = changed
            elif value != default:
                overrides[name] = value
        return cls.model_validate({"preset": preset, "designer": self.designer, **overrides})

    def with_data_seed(self) -> tuple["CampaignParameters", str | None]:
        """These parameters with ``data.rng_seed: null`` (fresh) replaced by :func:`fresh_data_seed`'s seed, and
        where that seed came from (``None``: the seed was given)."""
        if self.data.rng_seed is not FRESH:
            return self, None
        seed, source = fresh_data_seed()
        return self.model_copy(update={"data": self.data.model_copy(update={"rng_seed": seed})}), source

    @classmethod
    def defaults(cls, designer: str = "molecule", quick: bool = False) -> "CampaignParameters":
        """A real run's settings for ``designer``, or (``quick``) a few minutes' run on 2 CPU cores."""
        return cls(designer=DesignerParameters(name=designer), preset="quick" if quick else "full")

    @classmethod
    def quick(cls, designer: str = "molecule", **overrides) -> "CampaignParameters":
        """A few minutes on 2 CPU cores: small data, few seeds, short training and search (sized per designer:
        a molecule is scored in ~1 ms, a car blueprint in ~1 s)."""
        return cls.defaults(designer, quick=True).model_copy(update=overrides)


#: Per-designer defaults of a real run, applied under whatever the caller sets (see ``_designer_defaults``).
#: Cars: a blueprint cost ~0.8 s (coarse, compiled torch, 1 thread; numba now 0.14 s), so a real run labels 1,000, not
#: 30,000; 12 inputs and ~1,000 points want a longer, smaller-batch training. Radii: FGSM ε = 0.05 in L∞ is 5 % of
#: each parameter's range (~7 cm of length, ~8 cm of a station height), an L2 norm of up to 0.17 over 12 numbers;
#: VAT's ε = 0.15 in L2 matches it (the molecule's 1.0 spreads over 1,485 one-hot entries). The search step
#: α = 0.05 in L2 stays inside that ball, so each step moves where the robust surrogate was trained to be smooth,
#: and 60 steps (≤ 3.0 in L2, about the diagonal of the 12-D box) can still reach any feasible blueprint.
#: Every step is a distinct blueprint (no one-hot to snap to), so top_k stays small and the budget is per seed.
DESIGNER_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "molecule": {},
    "car": {
        "data": {"n_labelled": 1_000, "n_unlabelled": 1_000, "n_seed_pool": 200, "n_seeds": 50,
                 "oracle_batch_size": 32},
        "surrogate": {"hidden": (128, 128), "epochs": 200, "batch_size": 64, "eps": 0.05, "vat_eps": 0.15},
        "search": {"method": "l2", "steps": 60, "step_size": 0.05, "top_k": 3, "budget": 150, "calls_per_seed": 30,
                   "batch_per_seed": 3, "proposals_per_incumbent": 128},
    },
}

#: Quick presets, on top of DESIGNER_DEFAULTS. Molecules: ~3 minutes on 2 cores. Cars: 256 blueprints labelled
#: (one compiled 32-chunk per oracle task) + at most 3 × 32 verified, ~5–8 minutes on a loaded 2-core machine.
QUICK: dict[str, dict[str, Any]] = {
    "molecule": {
        "data": DataParameters(n_labelled=3_000, n_unlabelled=2_000, n_seed_pool=600, n_seeds=40,
                               oracle_batch_size=1_000),
        "surrogate": SurrogateParameters(epochs=20),
        "search": SearchParameters(steps=100, top_k=5, budget=200, calls_per_seed=20, ensemble_size=2),
    },
    "car": {
        "data": {"n_labelled": 192, "n_unlabelled": 256, "n_seed_pool": 64, "n_seeds": 16, "oracle_batch_size": 32},
        "surrogate": {"epochs": 150},
        "search": {"steps": 40, "top_k": 2, "budget": 32, "calls_per_seed": 4, "batch_per_seed": 2,
                   "ensemble_size": 2, "proposals_per_incumbent": 64},
    },
}
