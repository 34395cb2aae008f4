"""Command-line options generated from the flows' pydantic parameters, so the flags cannot drift from them.

Every field of a subcommand's parameter model is one flag: the field's description is the help, its default is
shown (with the car's and ``--quick``'s where they differ), a ``Literal`` is a choice, a ``bool`` is
``--x/--no-x``, a tuple or list is a comma list, and a field that may be ``None`` takes the word ``none``.
A nested section (designer, data, surrogate, search) is an argument group. A flag's name is the field's, with
dashes, except for the few in :data:`FLAG_NAMES` (kept from before the options were generated: scripts and the
README use them). Options a user did not give are absent from the namespace (:func:`given`), so the subcommand's
preset (designer defaults, ``--quick``) fills them.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from typing import Any, Callable, Iterable, Literal, Mapping, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

#: Flags not spelled like their field ("section.field" or a top-level field's name).
FLAG_NAMES = {
    "designer.name": "designer",
    "designer.similarity_threshold": "similarity",
    "data.seeds_file": "seeds",
    "data.n_seed_pool": "n-pool",
    "search.strategy": "search",
    "search.eps": "search-eps",  # --eps is the surrogate's adversarial-training radius
    "model_uri": "model",
    "n_trials": "trials",
    "objective": "metric",  # a tune study's objective; --objective is the molecule's
    "tracking_uri": "tracking-uri",
}
#: Metavariables that say more than the type.
METAVARS = {"data.seeds_file": "FILE", "model_uri": "URI", "test_set": "NPZ", "tracking_uri": "URI",
            "storage": "URL", "designer.objective": "NAME|MODULE:FUNCTION", "designer.keep_smarts": "SMARTS",
            "designer.forbid_smarts": "'SMARTS SMARTS…'"}
#: Help for fields some flow models leave undescribed.
FALLBACK_HELP = {
    "experiment": "MLflow experiment name",
    "tracking_uri": "MLflow tracking URI (default: MLFLOW_TRACKING_URI or the project's SQLite store)",
    "parent_run_id": "nest the MLflow run under this run",
    "seed": "random seed",
    "objective": "what is optimised",
    "defenses": "surrogate defenses to choose from",
}
#: What an unknown choice is called in its error (``unknown designer 'boat'; choose one of molecule, car``).
NOUNS = {"designer.name": "designer", "search.strategy": "search strategy", "objective": "metric"}
#: How a value of each type is named in the usage line.
TYPE_METAVARS: dict[Any, str] = {int: "N", float: "X", str: "TEXT"}
#: List separators other than the comma (a width is itself a comma list: ``--widths 64|128,64``; a SMARTS may hold
#: commas, so SMARTS lists take spaces).
SEPARATORS = {"widths": "|", "forbid_smarts": " "}
#: Namespace attributes of generated options start with this; the rest of the name is the field's path.
PREFIX = "param:"


class UsageError(ValueError):
    """A command-line mistake, reported in one line by ``advdesign.cli.main``."""


class ArgumentParser(argparse.ArgumentParser):
    """Raises :class:`UsageError` instead of printing the usage and exiting, so every mistake is one line."""

    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(message)


def flag(path: str) -> str:
    """``data.n_seed_pool`` → ``--n-pool``; ``surrogate.lr`` → ``--lr``."""
    return "--" + FLAG_NAMES.get(path, path.rsplit(".", 1)[-1].replace("_", "-"))


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """The annotation without ``Annotated`` and ``None``, and whether ``None`` is allowed."""
    optional = False
    while True:
        origin = get_origin(annotation)
        if origin is typing.Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            optional = optional or len(args) < len(get_args(annotation))
            if len(args) != 1:
                return annotation, optional
            annotation = args[0]
        else:
            return annotation, optional


def _choice(what: str, choices: tuple[str, ...], phrase: str = "choose one of") -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"unknown {what} {text!r}; {phrase} {', '.join(choices)}")
        return text

    parse.__name__ = what
    return parse


def _scalar(annotation: Any, what: str, phrase: str = "choose one of") -> tuple[Callable[[str], Any], tuple | None]:
    """A parser of one value, and the choices if there are some."""
    annotation, _ = _unwrap(annotation)
    if get_origin(annotation) is Literal:
        choices = tuple(str(c) for c in get_args(annotation))
        return _choice(what, choices, phrase), choices
    if annotation in (int, float, str):
        return annotation, None
    raise TypeError(f"no command-line form for {annotation!r}")


def _none_or(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse_or_none(text: str) -> Any:
        return None if text.strip().lower() == "none" else parse(text)

    parse_or_none.__name__ = getattr(parse, "__name__", "value")
    return parse_or_none


def _list_of(parse: Callable[[str], Any], separator: str) -> Callable[[str], tuple]:
    def parse_list(text: str) -> tuple:
        return tuple(parse(part.strip()) for part in text.split(separator) if part.strip())

    parse_list.__name__ = f"{getattr(parse, '__name__', 'value')} list"
    return parse_list


def argument(path: str, annotation: Any) -> dict[str, Any]:
    """``add_argument`` keywords for a field: its type, choices, action, metavar."""
    name = path.rsplit(".", 1)[-1]
    inner, optional = _unwrap(annotation)
    if inner is bool:
        return {"action": argparse.BooleanOptionalAction}
    origin = get_origin(inner)
    if origin in (tuple, list):
        element = get_args(inner)[0]
        separator = SEPARATORS.get(name, ",")
        parse, choices = _scalar(element, name.removesuffix("s"), "choose from")
        kwargs: dict[str, Any] = {"type": _list_of(parse, separator)}
        element_metavar = TYPE_METAVARS.get(parse, "VALUE")
        kwargs["metavar"] = METAVARS.get(path, separator.join(choices) if choices else
                                         f"{element_metavar}{separator}{element_metavar}…")
    else:
        parse, choices = _scalar(inner, NOUNS.get(path, name.replace("_", " ")))
        kwargs = {"type": parse}
        if choices:
            kwargs["choices"] = choices
        else:
            kwargs["metavar"] = METAVARS.get(path, TYPE_METAVARS.get(parse, "VALUE"))
    if optional and inner is not str:
        kwargs["type"] = _none_or(kwargs["type"])
    return kwargs


def show(value: Any, path: str = "") -> str:
    """A default as the user would type it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return SEPARATORS.get(path.rsplit(".", 1)[-1], ",").join(show(v) for v in value)
    if isinstance(value, float):
        return "inf" if math.isinf(value) else repr(value)
    return str(value)


def _at(values: Mapping[str, Any], path: str) -> Any:
    for part in path.split("."):
        values = values[part]
    return values


#: The preset a preset's default is compared with in the help (others: the plain default).
PARENT_PRESETS = {"--quick car": "car"}


def defaults_text(path: str, presets: Mapping[str, Mapping[str, Any]]) -> str:
    """``default 30000; car 1000; --quick 3000; --quick car 192``: the plain default (the first preset) and each
    other preset's value where it differs from the plain one (``--quick car``: from the car's)."""
    values: dict[str, Any] = {}
    for label, preset in presets.items():
        try:
            values[label] = _at(preset, path)
        except (KeyError, TypeError):
            continue
    if not values:
        return ""
    first = next(iter(values))
    shown = [(first, values[first])]
    for label, value in values.items():
        parent = PARENT_PRESETS.get(label, first)
        if label != first and value != values.get(parent, values[first]):
            shown.append((label, value))
    return "; ".join(f"{label or 'default'} {show(value, path)}" for label, value in shown)


def add_model_options(
    parser: argparse.ArgumentParser,
    model: type[BaseModel],
    presets: Mapping[str, Mapping[str, Any]],
    exclude: Iterable[str] = (),
    prefix: str = "",
) -> None:
    """One option per field of ``model`` (sections recursively, each in its own group), none of them set unless
    given; the help lists each preset's default (``presets``: label → the model's values, ``""`` the plain one)."""
    excluded = set(exclude)
    for name, field in model.model_fields.items():
        path = prefix + name
        if path in excluded:
            continue
        inner, _ = _unwrap(field.annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            title = f"{name} ({inner.__name__})"
            description = field.description
            group = parser.add_argument_group(title, description)
            add_model_options(group, inner, presets, excluded, prefix=path + ".")
            continue
        help_text = (field.description or FALLBACK_HELP.get(name, name.replace("_", " "))).replace("%", "%%")
        kwargs = argument(path, field.annotation)
        if field.is_required():
            kwargs["required"] = True
        elif field.default is not None or "default" not in help_text:  # else the description says what None is
            shown = {label: p for label, p in presets.items() if label == "" or path != "designer.name"}
            help_text += f" [{defaults_text(path, shown)}]".replace("%", "%%")
        parser.add_argument(flag(path), dest=PREFIX + path, default=argparse.SUPPRESS, help=help_text, **kwargs)


def given(args: argparse.Namespace) -> dict[str, Any]:
    """The generated options the user gave: field path → value."""
    return {key[len(PREFIX):]: value for key, value in vars(args).items() if key.startswith(PREFIX)}


def merged(values: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (a model dump) with each ``path → value`` of ``overrides`` set in it."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in values.items()}
    for path, value in overrides.items():
        *sections, name = path.split(".")
        target = out
        for section in sections:
            target = target.setdefault(section, {})
        target[name] = value
    return out


def validated(model: type[BaseModel], values: Mapping[str, Any]) -> BaseModel:
    """``model(**values)``, a validation error as one line naming the flag (``--n-labelled: Input should be …``)."""
    try:
        return model(**values)
    except ValidationError as exc:
        messages = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            path = ".".join(str(part) for part in error["loc"] if not isinstance(part, int))
            messages.append(f"{flag(path)}: {message}" if path and not message.startswith(("unknown", "seeds file"))
                            else message)
        raise UsageError("; ".join(messages)) from None


def leaves(values: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """``(path, value)`` for every field of a (nested) model dump."""
    for key, value in values.items():
        if isinstance(value, Mapping):
            yield from leaves(value, prefix + key + ".")
        else:
            yield prefix + key, value


def model_from_function(fn: Callable[..., Any], name: str) -> type[BaseModel]:
    """A pydantic model of a flow function's parameters (types, defaults, and the docstring's ``Args:`` as
    descriptions, parsed as Prefect parses them for a deployment's form)."""
    import inspect

    from prefect.utilities.callables import parameter_docstrings
    from pydantic import ConfigDict, Field, create_model

    hints = typing.get_type_hints(fn, include_extras=True)
    docs = parameter_docstrings(inspect.getdoc(fn))
    fields: dict[str, Any] = {}
    for parameter in inspect.signature(fn).parameters.values():
        default = ... if parameter.default is parameter.empty else parameter.default
        description = " ".join(docs.get(parameter.name, "").split()) or None
        fields[parameter.name] = (hints.get(parameter.name, Any), Field(default, description=description))
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)


#: The labels of the presets a designer subcommand's help shows, and their (designer, quick).
PRESETS = {"": ("molecule", False), "car": ("car", False), "--quick": ("molecule", True),
           "--quick car": ("car", True)}


def check_designer_options(designer: str, values: Mapping[str, Any]) -> None:
    """A one-line error for a designer option the chosen designer does not read (``--designer car --objective
    qed``), rather than silently ignoring it."""
    from flows.parameters import _DESIGNER_FIELDS

    for path in values:
        section, _, name = path.partition(".")
        if section != "designer" or name == "name" or name in _DESIGNER_FIELDS.get(designer, ()):
            continue
        owner = next((d for d, fields in _DESIGNER_FIELDS.items() if name in fields), "another designer's")
        raise UsageError(f"{flag(path)} is a {owner} option; --designer {designer} does not take it")


@dataclasses.dataclass(frozen=True)
class Command:
    """A subcommand: the flow parameters it builds (``model``), the values they start from (``preset(designer,
    quick)``; None: the model's defaults, and no ``--quick``), and what it runs with them (``run(args, params)``)."""

    name: str
    help: str
    run: Callable[[argparse.Namespace, Any], int]
    model: Callable[[], type[BaseModel]] | None = None  # lazy: a flow's module imports Prefect, MLflow, torch
    preset: Callable[[str, bool], dict[str, Any]] | None = None
    description: str = ""
    exclude: tuple[str, ...] = ()
    extra: Callable[[argparse.ArgumentParser], None] | None = None  # options that are not flow parameters
    json: bool = True  # takes --json [PATH]
    func: Callable[[argparse.Namespace], int] | None = None  # run from the arguments alone (default: invoke)

    def add_to(self, subparsers: argparse._SubParsersAction, options: bool = True) -> argparse.ArgumentParser:
        """The subcommand's parser; ``options=False`` leaves its options out (``advdesign --help`` needs none)."""
        parser = subparsers.add_parser(self.name, help=self.help, description=self.description or self.help)
        if options:
            self.add_options(parser)
        parser.set_defaults(func=self.func or self.invoke)
        return parser

    def presets(self) -> dict[str, dict[str, Any]]:
        if self.preset is None:
            return {"": self.model().model_construct().model_dump() if self.model else {}}
        return {label: self.preset(designer, quick) for label, (designer, quick) in PRESETS.items()}

    def quick_help(self) -> str:
        """What ``--quick`` sets, per designer: the quick preset's values that differ from the full one's."""
        parts = []
        for designer in ("molecule", "car"):
            full, quick = self.preset(designer, False), self.preset(designer, True)
            changes = [f"{flag(path)} {show(value, path)}" for path, value in leaves(quick)
                       if path != "preset" and path not in self.exclude and _at(full, path) != value]
            parts.append(f"{designer}: {', '.join(changes) or 'nothing'}")
        return "small settings that finish in minutes on 2 cores; it sets " + "; ".join(parts)

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        if self.preset is not None:
            parser.add_argument("--quick", action="store_true", help=self.quick_help().replace("%", "%%"))
        if self.model is not None:
            add_model_options(parser, self.model(), self.presets(), self.exclude)
        if self.extra is not None:
            self.extra(parser)
        if self.json:
            parser.add_argument("--json", nargs="?", const="-", metavar="PATH",
                                help="write the result as JSON to PATH; --json alone prints the JSON instead of the "
                                "summary")

    def parameters(self, args: argparse.Namespace) -> Any:
        """The validated flow parameters: the preset for ``--designer`` and ``--quick``, then the flags given."""
        if self.model is None:
            return None
        values = given(args)
        base: dict[str, Any] = {}
        if self.preset is not None:
            designer = values.get("designer.name", "molecule")
            check_designer_options(designer, values)
            base = self.preset(designer, bool(getattr(args, "quick", False)))
        return validated(self.model(), merged(base, values))

    def invoke(self, args: argparse.Namespace) -> int:
        return self.run(args, self.parameters(args))
