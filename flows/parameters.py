"""Typed flow parameters (pydantic): what a user, a deployment or the CLI can set, with the defaults of a real run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from designers import DESIGNERS
from tasks.training import DEFENSES


def _known_defense(name: str) -> str:
    if name not in DEFENSES:
        raise ValueError(f"unknown defense {name!r}; choose from {', '.join(DEFENSES)}")
    return name


#: A defense name, validated with an error that lists the choices.
DefenseName = Annotated[str, AfterValidator(_known_defense)]


class _Parameters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DesignerParameters(_Parameters):
    name: str = Field("molecule", description=f"design domain: {', '.join(DESIGNERS)}")
    objective: Literal["plogp", "qed"] = Field("plogp", description="molecule objective (higher is better)")
    similarity_threshold: float = Field(0.4, ge=0, le=1, description="δ: minimum Tanimoto similarity to the seed")
    max_sa: float | None = Field(None, description="optional upper bound on the SA score")
    max_mol_weight: float | None = Field(None, description="optional upper bound on molecular weight (Da)")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in DESIGNERS:
            raise ValueError(f"unknown designer {name!r}; choose one of {', '.join(DESIGNERS)}")
        return name

    def settings(self) -> dict:
        if self.name == "molecule":
            return self.model_dump(exclude={"name"})
        return {}


class DataParameters(_Parameters):
    n_labelled: int = Field(30_000, ge=10, description="designs labelled by the oracle for training (10% validation)")
    n_unlabelled: int = Field(10_000, ge=0, description="extra unlabelled designs (used by VAT only)")
    n_seed_pool: int = Field(5_000, ge=0, description="held-out labelled designs the seeds are drawn from")
    n_seeds: int = Field(800, ge=1, description="seeds: the lowest-scoring designs of the pool (JT-VAE protocol)")
    seeds_file: str | None = Field(None, description="a file of seed designs, one per line (overrides the pool)")
    oracle_batch_size: int = Field(2_000, ge=1, description="designs per oracle task")
    rng_seed: int = 0

    @field_validator("seeds_file")
    @classmethod
    def _readable(cls, path: str | None) -> str | None:
        if path is not None and not Path(path).is_file():
            raise ValueError(f"seeds file {path} not found")
        return path


class SurrogateParameters(_Parameters):
    hidden: tuple[int, ...] = (256, 128)
    epochs: int = Field(15, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    eps: float = Field(0.1, ge=0, description="L∞ radius of FGSM/PGD adversarial training")
    pgd_steps: int = Field(7, ge=1)
    vat_eps: float = Field(1.0, ge=0, description="L2 radius of the VAT perturbation")
    vat_weight: float = Field(1.0, ge=0)


class SearchParameters(_Parameters):
    method: Literal["signed", "l2", "adam"] = Field(
        "l2", description="signed: iterated FGSM; l2: L2-normalised gradient (flips the most promising tokens "
        "first, measured to find 3-10x more similar designs than signed on molecules); adam")
    steps: int = Field(100, ge=1)
    step_size: float = Field(0.2, gt=0)
    eps: float = Field(float("inf"), gt=0, description="L∞ radius around the seed's encoding")
    top_k: int = Field(5, ge=1, description="designs per seed sent to the oracle")
    budget: int = Field(4_000, ge=0, description="oracle calls allowed for verifying one surrogate's designs")


class CampaignParameters(_Parameters):
    designer: DesignerParameters = DesignerParameters()
    data: DataParameters = DataParameters()
    surrogate: SurrogateParameters = SurrogateParameters()
    search: SearchParameters = SearchParameters()
    defenses: tuple[DefenseName, ...] = ("none", "fgsm", "vat")
    rounds: int = Field(1, ge=1, description="model-based loop: verified designs join the data, retrain, repeat")
    experiment: str = "advdesign"
    tracking_uri: str | None = Field(None, description="MLflow tracking URI (default: the project's SQLite store)")

    @field_validator("defenses")
    @classmethod
    def _at_least_one(cls, defenses: tuple[str, ...]) -> tuple[str, ...]:
        if not defenses:
            raise ValueError(f"no defense given; choose from {', '.join(DEFENSES)}")
        return defenses

    @classmethod
    def quick(cls, **overrides) -> "CampaignParameters":
        """A few minutes on 2 CPU cores: small data, few seeds, short training and search."""
        quick = cls(
            data=DataParameters(n_labelled=3_000, n_unlabelled=2_000, n_seed_pool=600, n_seeds=40,
                                oracle_batch_size=1_000),
            surrogate=SurrogateParameters(epochs=20),
            search=SearchParameters(steps=100, top_k=5, budget=200),
        )
        return quick.model_copy(update=overrides)
