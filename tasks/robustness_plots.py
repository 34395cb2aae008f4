"""Figures of the robustness evaluation (matplotlib only, no display needed): ε curves, the seed's cross-section
maps, logits along the FGSM direction and the GAAS histogram. Each function returns a Figure for the caller to
log and close."""

from __future__ import annotations

from typing import Mapping

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from tasks.robustness import CrossSections, LogitsAlongFGSM  # noqa: E402


def accuracy_curves(curves: Mapping[str, Mapping[float, float]], clean: float, title: str,
                    ylabel: str = "robust accuracy", worst_case: Mapping[float, float] | None = None) -> plt.Figure:
    """One line per attack from ε = 0 (the clean value) outwards, plus the per-example worst case."""
    figure, axes = plt.subplots(figsize=(5.5, 4))
    for attack, per_eps in curves.items():
        eps = [0.0, *sorted(per_eps)]
        axes.plot(eps, [clean, *(per_eps[e] for e in sorted(per_eps))], marker="o", label=attack)
    if worst_case:
        eps = [0.0, *sorted(worst_case)]
        axes.plot(eps, [clean, *(worst_case[e] for e in sorted(worst_case))], "k--", lw=2, label="worst case")
    axes.set_xlabel("ε (L∞, input units)")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def defense_comparison(by_defense: Mapping[str, Mapping[float, float]], clean: Mapping[str, float], title: str) -> plt.Figure:
    """Worst-case accuracy against ε, one line per defense: the evaluation's headline picture."""
    figure, axes = plt.subplots(figsize=(5.5, 4))
    for defense, per_eps in by_defense.items():
        eps = [0.0, *sorted(per_eps)]
        axes.plot(eps, [clean[defense], *(per_eps[e] for e in sorted(per_eps))], marker="o", label=defense)
    axes.set_xlabel("ε (L∞, input units)")
    axes.set_ylabel("worst-case robust accuracy")
    axes.set_title(title)
    axes.set_ylim(-0.02, 1.02)
    axes.grid(alpha=0.3)
    axes.legend(title="defense", fontsize=8)
    figure.tight_layout()
    return figure


def cross_section_maps(sections: CrossSections, max_examples: int = 8) -> plt.Figure:
    """The lecture's class maps: white where the class is right, a colour per wrong class; FGSM left→right,
    random orthogonal direction top→bottom, both from −ε to +ε."""
    n = min(max_examples, len(sections.labels))
    columns = min(4, n)
    rows = int(np.ceil(n / columns))
    palette = ListedColormap(["#ffffff", *plt.get_cmap("tab10").colors])
    figure, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.3 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        labels = sections.labels[i]
        shown = np.where(labels == sections.y[i], 0, labels % 10 + 1)
        ax.imshow(shown, cmap=palette, vmin=0, vmax=10, extent=(-1, 1, 1, -1), interpolation="nearest")
        ax.axhline(0, color="0.6", lw=0.5)
        ax.axvline(0, color="0.6", lw=0.5)
        ax.set_title(f"y={sections.y[i]}", fontsize=8)
    figure.suptitle(f"adversarial (→ FGSM) vs random (↓) cross-sections, ±ε = {sections.eps:g}", fontsize=9)
    figure.tight_layout()
    return figure


def logits_plot(curve: LogitsAlongFGSM, example: int = 0) -> plt.Figure:
    figure, axes = plt.subplots(figsize=(5.5, 4))
    for k in range(curve.logits.shape[2]):
        axes.plot(curve.t, curve.logits[example, :, k], label=str(k))
    axes.axvline(0, color="0.5", lw=0.5)
    axes.set_xlabel("t  (input = x + t · sign ∇ₓ loss)")
    axes.set_ylabel("logit")
    axes.set_title(f"logits along the FGSM direction (R² of a line fit: {curve.linearity_r2():.3f} on average)", fontsize=9)
    axes.legend(title="class", fontsize=7, ncol=2)
    figure.tight_layout()
    return figure


def gaas_histogram(counts: np.ndarray, eps_l2: float) -> plt.Figure:
    figure, axes = plt.subplots(figsize=(5.5, 4))
    axes.hist(counts, bins=min(30, max(int(counts.max()) + 1, 1)), color="tab:blue")
    axes.axvline(counts.mean(), color="k", ls="--", label=f"mean {counts.mean():.1f}")
    axes.set_xlabel("orthogonal adversarial directions found (GAAS)")
    axes.set_ylabel("examples")
    axes.set_title(f"dimension of the adversarial subspace, ‖δ‖₂ = {eps_l2:g}", fontsize=9)
    axes.legend()
    figure.tight_layout()
    return figure
