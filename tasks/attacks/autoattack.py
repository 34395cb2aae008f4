"""AutoAttack (standard version, L∞): APGD-CE, APGD-T, FAB-T and Square, from ``torchattacks``.

Croce & Hein, "Reliable Evaluation of Adversarial Robustness with an Ensemble of Diverse Parameter-free
Attacks", ICML 2020, arXiv:2003.01690, with FAB (Croce & Hein, ICML 2020, arXiv:1907.02044) and Square (Andriushchenko
et al., ECCV 2020, arXiv:1912.00049). The field's reference evaluation (RobustBench): an example counts as robust
only if *every* component fails on it. Threat model: white-box for the first three, score-based black-box for
Square (which needs no gradient, so it catches gradient masking).

The components are ``torchattacks`` 3.5.1's implementations (installed ``--no-deps``: they never import
torchvision) with the standard version's settings: APGD-CE (100 iterations, 1 restart), APGD-T (100 iterations,
targeted DLR loss on each of the ``n_classes − 1`` most likely wrong classes), FAB-T (100 iterations, the same
targets) and Square (5 000 queries, ``p_init = 0.8``, margin loss). ``steps`` and ``square_queries`` can be lowered
for smoke tests; what was used is part of the evaluation's parameters.

``sequential=True`` is the standard procedure (and ``torchattacks.AutoAttack``'s): each component attacks only the
examples every earlier component failed on — much cheaper once APGD-CE has fooled most of them. With
``sequential=False`` every component runs on every example of the batch, so AutoAttack's accuracy is never above any
single component's run alone on the same inputs (each component is seeded the same way either way). Per example, the
output is the first component's example that fools the model (APGD-CE's when none does).
"""

from __future__ import annotations

import torch
from torch import nn

from tasks.attacks.base import Attack, cross_entropy_loss

COMPONENTS: tuple[str, ...] = ("apgd_ce", "apgd_t", "fab_t", "square")


def torchattacks_available() -> bool:
    try:
        import torchattacks  # noqa: F401
    except ImportError:
        return False
    return True


class _AsImages(nn.Module):
    """``torchattacks`` reshapes per-example norms to (n, 1, 1, 1): it wants 4-D inputs. A model that takes other
    shapes sees its own shape again."""

    def __init__(self, model: nn.Module, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.model = model
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.reshape(len(x), *self.shape))


class AutoAttack(Attack):
    """Args beyond :class:`Attack`: ``n_classes`` (the targets of APGD-T and FAB-T are the other classes),
    ``steps`` of the three gradient components (100 in the standard version), ``square_queries`` (5 000),
    ``components`` (a subset, e.g. one component alone with AutoAttack's seeding), ``seed``, ``sequential``.

    After each call, :attr:`fooled` holds per component a boolean tensor: where its example was misclassified (with
    ``sequential``, only examples it was run on can be True).
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float,
        n_classes: int,
        steps: int = 100,
        square_queries: int = 5000,
        components: tuple[str, ...] = COMPONENTS,
        seed: int = 0,
        lower: float = 0.0,
        upper: float = 1.0,
        sequential: bool = True,
    ) -> None:
        super().__init__(model, eps, cross_entropy_loss, lower, upper)
        unknown = [c for c in components if c not in COMPONENTS]
        if unknown or not components:
            raise ValueError(f"unknown AutoAttack components {unknown}; choose from {', '.join(COMPONENTS)}")
        if float(lower) != 0.0 or float(upper) != 1.0:
            raise ValueError("torchattacks' AutoAttack components assume inputs in [0, 1]")
        if n_classes < 2 or steps < 1 or square_queries < 1:
            raise ValueError(f"need n_classes ≥ 2, steps ≥ 1, square_queries ≥ 1; got {n_classes}, {steps}, {square_queries}")
        if not torchattacks_available():
            raise ImportError("AutoAttack needs torchattacks: pip install --no-deps torchattacks==3.5.1")
        self.n_classes = n_classes
        self.steps = steps
        self.square_queries = square_queries
        # APGD-T's targeted DLR loss reads the 4th-largest logit: it needs ≥ 4 classes (as in the reference code).
        self.components = tuple(c for c in components if not (c == "apgd_t" and n_classes < 4)) or ("apgd_ce",)
        self.seed = seed
        self.sequential = sequential
        self.fooled: dict[str, torch.Tensor] = {}
        self.fooled_log: list[dict[str, torch.Tensor]] = []  # one ``fooled`` per call (batch), in order

    def _build(self, name: str, model: nn.Module):
        import torchattacks

        common = dict(norm="Linf", eps=self.eps, n_restarts=1, seed=self.seed)
        if name == "apgd_ce":
            return torchattacks.APGD(model, steps=self.steps, loss="ce", **common)
        if name == "apgd_t":
            return torchattacks.APGDT(model, steps=self.steps, n_classes=self.n_classes, **common)
        if name == "fab_t":
            return torchattacks.FAB(model, steps=self.steps, multi_targeted=True, n_classes=self.n_classes, **common)
        return torchattacks.Square(model, n_queries=self.square_queries, p_init=0.8, loss="margin", **common)

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(x).argmax(dim=1)

    def perturb(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if y is None:
            raise ValueError("AutoAttack is untargeted against the true labels: y is required")
        images = x if x.dim() == 4 else x.reshape(len(x), 1, 1, -1)
        target = self.model if x.dim() == 4 else _AsImages(self.model, tuple(x.shape[1:]))
        chosen, done = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
        self.fooled = {}
        for name in self.components:
            rows = (~done).nonzero().squeeze(1) if self.sequential else torch.arange(len(x), device=x.device)
            fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
            if len(rows):
                with torch.random.fork_rng(devices=[]):  # the components seed torch's global generator
                    torch.manual_seed(self.seed)
                    adv = self._build(name, target)(images[rows], y[rows]).detach().reshape(x[rows].shape)
                adv = self.project(adv.to(x.dtype), x[rows])  # the threat model, whatever the component returned
                fooled[rows] = self._predict(adv) != y[rows]
                if name == self.components[0]:
                    chosen[rows] = adv
                take = fooled[rows] & ~done[rows]
                chosen[rows[take]] = adv[take]
            self.fooled[name] = fooled.cpu()
            done = done | fooled
        self.fooled_log.append(dict(self.fooled))
        return chosen
