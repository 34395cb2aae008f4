"""White-box and black-box input perturbations, one attack per file (in the spirit of torchattacks).

All attacks share :class:`~tasks.attacks.base.Attack`: ``attack(x, y) -> x_adv`` maximises a per-example loss
inside an L∞ ε-ball around ``x`` intersected with the input box. The same objects drive adversarial training,
robustness evaluation and, with the loss set to the model's own prediction, gradient-based design search.
"""

from tasks.attacks.apgd import APGD
from tasks.attacks.autoattack import AutoAttack
from tasks.attacks.base import Attack, cross_entropy_loss, prediction_loss, squared_error_loss
from tasks.attacks.fgsm import FGSM
from tasks.attacks.pgd import PGD
from tasks.attacks.random_noise import RandomNoise
from tasks.attacks.transfer import SubstituteEnsemble, TransferAttack, label_queries, train_substitute
from tasks.attacks.vat import VirtualAdversarial

__all__ = [
    "APGD",
    "Attack",
    "AutoAttack",
    "FGSM",
    "PGD",
    "RandomNoise",
    "SubstituteEnsemble",
    "TransferAttack",
    "VirtualAdversarial",
    "cross_entropy_loss",
    "label_queries",
    "prediction_loss",
    "squared_error_loss",
    "train_substitute",
]
