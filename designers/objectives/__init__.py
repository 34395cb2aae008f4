"""What a designer optimises: built-in objectives, the literature's tasks, and any importable callable.

``--objective`` (``DesignerParameters.objective``) takes, per designer:

* molecules: ``plogp`` (default), ``qed``, a GuacaMol/PMO task by name (:mod:`designers.objectives.tasks`;
  ``pmo:<task>`` is the task as PMO scored it, the same but for the four with a formula term), or
  ``module.path:function[@version]`` (:mod:`designers.objectives.user`);
* cars: ``top_speed`` (default, km/h), ``drag_area`` (C_D·A in m², minimised, so the score is −C_D·A), or
  ``module.path:function[@version]`` on the oracle's components.

Higher is always better. The modules: ``modifiers`` (score modifiers), ``descriptors``, ``fingerprints``,
``scoring`` (the building blocks), ``tasks`` (the task table), ``user`` (user callables).
"""

from __future__ import annotations

from designers.objectives.user import ObjectiveError, looks_like_user_objective

#: The built-in objectives of each designer besides the tasks; the first is the default.
BUILTINS: dict[str, tuple[str, ...]] = {"molecule": ("plogp", "qed"), "car": ("top_speed", "drag_area")}
DEFAULTS = {name: names[0] for name, names in BUILTINS.items()}
LABELS = {"plogp": "penalized logP", "qed": "QED", "top_speed": "top speed (km/h)",
          "drag_area": "drag area −C_D·A (m², minimised)"}

__all__ = ["BUILTINS", "DEFAULTS", "ObjectiveError", "choices", "is_user_objective", "label", "normalise"]


def choices(designer: str) -> tuple[str, ...]:
    """The objectives ``designer`` knows by name (user callables aside)."""
    if designer == "molecule":
        from designers.objectives.tasks import TASKS

        return (*BUILTINS["molecule"], *TASKS)
    return BUILTINS.get(designer, ())


def is_user_objective(text: str) -> bool:
    return looks_like_user_objective(text)


def normalise(text: str, designer: str = "molecule", probe: bool = True) -> str:
    """The canonical form of an objective for ``designer`` (``pmo:median1`` → ``median1``; a user callable with a
    ``__version__`` gets it as ``@version``, so the name is its cache identity), after checking it:
    a name must be one of :func:`choices`; a user callable must import, be callable and (``probe``) return one
    score per design for two small designs. Raises :class:`ObjectiveError` in one line naming the culprit."""
    text = str(text).strip()
    if is_user_objective(text):
        from designers.objectives import user

        loaded = user.probe(text, designer) if probe else user.load(text)
        return loaded.label  # the version (given or the callable's __version__) is part of the name
    known = choices(designer)
    name = text.removeprefix("pmo:") if designer == "molecule" and text not in known else text
    if name not in known:
        raise ObjectiveError(f"unknown {designer} objective {text!r}; choose one of {', '.join(known)} "
                             "or give module.path:function")
    return name


def label(text: str) -> str:
    """How an objective is named in tables and summaries."""
    return LABELS.get(text, text)
