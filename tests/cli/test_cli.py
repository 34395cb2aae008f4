"""The command line is generated from the flows' parameters: every field a flag whose help shows its default and
choices, the choices enforced in one line, a human summary on the terminal and the JSON only with --json.
Nothing here runs a flow (the flows are replaced where a subcommand would start one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest

from advdesign import cli
from advdesign.cli import build_parser, campaign_parameters, main
from advdesign.options import flag, leaves, show
from flows.parameters import QUICK, CampaignParameters, DataParameters, SearchParameters, SurrogateParameters
from tasks.training import DEFENSES

#: Which parameter sections each subcommand's flow takes.
SECTIONS = {
    "campaign": (DataParameters, SurrogateParameters, SearchParameters),
    "train": (DataParameters, SurrogateParameters),
    "design": (DataParameters, SearchParameters),
    "tune": (DataParameters, SurrogateParameters, SearchParameters),
    "baselines": (DataParameters,),
}
SECTION_NAMES = {DataParameters: "data", SurrogateParameters: "surrogate", SearchParameters: "search"}


def _help(command: str, capsys, monkeypatch) -> dict[str, str]:
    """The subcommand's help, one line per option (no wrapping): flag → its line."""
    monkeypatch.setenv("COLUMNS", "1000")
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    lines: dict[str, str] = {}
    current = None
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("  -"):
            current = line.split()[0].rstrip(",")
            lines[current] = line
        elif current and line.startswith("    "):  # the help, on the next line after a long flag
            lines[current] += " " + line.strip()
        else:
            current = None
    return lines


def _one_line_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and "usage:" not in captured.out + err
    return err


@pytest.mark.parametrize("command", SECTIONS)
def test_help_lists_every_section_field_with_its_default(command, capsys, monkeypatch):
    lines = _help(command, capsys, monkeypatch)
    for section in SECTIONS[command]:
        for name, field in section.model_fields.items():
            option = flag(f"{SECTION_NAMES[section]}.{name}")
            assert option in lines, f"{command}: {option} missing"
            assert f"[default {show(field.default, name)}" in lines[option], lines[option]
            assert field.description and field.description.split()[0] in lines[option]


def test_the_design_loop_fields_are_flags_with_their_choices(capsys, monkeypatch):
    lines = _help("campaign", capsys, monkeypatch)
    assert "{loop,one-shot}" in lines["--search"] and "[default loop]" in lines["--search"]
    for option in ("--calls-per-seed", "--ensemble-size", "--beta", "--batch-per-seed", "--proposals-per-incumbent",
                   "--population", "--temperature", "--max-edits", "--finetune-epochs"):
        assert "loop:" in lines[option] and "[default " in lines[option]
    params = campaign_parameters(build_parser().parse_args(
        ["campaign", "--search", "one-shot", "--calls-per-seed", "7", "--beta", "-0.5", "--search-eps", "0.3"]))
    assert (params.search.strategy, params.search.calls_per_seed, params.search.beta, params.search.eps) == (
        "one-shot", 7, -0.5, 0.3)


def test_help_shows_the_car_default_and_what_quick_sets(capsys, monkeypatch):
    lines = _help("campaign", capsys, monkeypatch)
    assert "[default 30000; car 1000; --quick 3000; --quick car 192]" in lines["--n-labelled"]
    assert "{molecule,car}" in lines["--designer"] and ",".join(DEFENSES) in lines["--defenses"]
    quick = lines["--quick"]
    for designer, sections in QUICK.items():
        assert f"{designer}:" in quick
        for section, values in sections.items():
            values = values.model_dump(include=values.model_fields_set) if hasattr(values, "model_dump") else values
            for name, value in values.items():
                full = getattr(getattr(CampaignParameters.defaults(designer), section), name)
                if value != full:
                    assert f"{flag(f'{section}.{name}')} {show(value)}" in quick, (designer, name)


def test_every_default_shown_parses_back_to_the_same_parameters():
    """Typing each flag with the default its help shows gives the defaults: the help and the parser agree."""
    for designer in ("molecule", "car"):
        expected = CampaignParameters.defaults(designer)
        argv = ["campaign", "--designer", designer]
        for path, value in leaves(expected.model_dump(exclude={"preset"})):
            section = path.split(".")[0]
            if path == "designer.name" or (section == "designer" and path.split(".")[1] not in
                                           expected.designer.settings()):
                continue
            if value is None and path in ("data.seeds_file", "tracking_uri"):
                continue
            if isinstance(value, bool):
                argv.append(flag(path) if value else "--no-" + flag(path)[2:])
            else:
                argv += [flag(path), show(value, path)]
        assert campaign_parameters(build_parser().parse_args(argv)) == expected


@pytest.mark.parametrize("argv, message", [
    (["campaign", "--search", "greedy"],
     "argument --search: unknown search strategy 'greedy'; choose one of loop, one-shot"),
    (["campaign", "--method", "newton"], "choose one of signed, l2, adam"),
    (["train", "--designer", "boat"], "unknown designer 'boat'; choose one of molecule, car"),
    (["design", "--model", "models:/m@x", "--designer", "boat"], "choose one of molecule, car"),
    (["tune", "--metric", "accuracy"], "choose one of validation_mae, validation_mse, transfer_rate"),
    (["baselines", "--resolution", "huge"], "choose one of coarse, fine, finest, smoke"),
    (["train", "--defense", "madry"], f"unknown defense 'madry'; choose one of {', '.join(DEFENSES)}"),
    (["campaign", "--defenses", "none,madry"], f"unknown defense 'madry'; choose from {', '.join(DEFENSES)}"),
    (["evaluate", "--dataset", "cifar"], "choose one of digits, mnist"),
    (["campaign", "--n-labelled", "many"], "argument --n-labelled: invalid int value: 'many'"),
    (["campaign", "--n-labelled", "5"], "--n-labelled: Input should be greater than or equal to 10"),
    (["train", "--designer", "car", "--similarity", "0.5"], "--similarity is a molecule option; --designer car"),
    (["baselines", "--compile"], "--compile is a car option; --designer molecule does not take it"),
    (["campaign", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["launch"], "invalid choice: 'launch'"),
])
def test_choices_and_mistakes_are_one_line_errors(argv, message, capsys):
    assert message in _one_line_error(argv, capsys)


def test_a_mistake_names_the_subcommand(capsys):
    assert _one_line_error(["campaign", "--search", "greedy"], capsys).startswith("advdesign campaign: error: ")


def test_the_cli_modules_import_no_cycle():
    code = ("import sys, advdesign.cli_tune, advdesign.cli_evaluate, advdesign.cli_render; "
            "assert 'advdesign.cli' not in sys.modules, 'cli_tune, cli_evaluate or cli_render imports advdesign.cli'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_one_dispatch_table_holds_every_subcommand():
    assert list(cli.commands()) == ["campaign", "train", "design", "tune", "baselines", "evaluate", "render", "ui",
                                    "dashboard"]
    parser = build_parser()
    for name in ("campaign", "train", "design", "tune", "baselines", "evaluate"):
        argv = [name, "--model", "models:/m@fgsm"] if name == "design" else [name]
        assert parser.parse_args(argv).func is not None


TRAINED = {"run_id": "r1", "model_uri": "models:/advdesign-molecule-surrogate@fgsm", "tracking_uri": "sqlite:///m.db",
           "validation_r2": 0.8123, "validation_mae": 0.41}


@pytest.fixture()
def fake_train(monkeypatch, tmp_path):
    import flows.train_surrogate

    given = []

    def train(params):
        given.append(params)
        return TRAINED

    monkeypatch.setattr(flows.train_surrogate, "train_surrogate", train)
    return given, ["train", "--quick", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]


def test_a_subcommand_prints_a_summary_not_json(fake_train, capsys):
    given, argv = fake_train
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "trained a fgsm surrogate (molecule): validation R² 0.812" in out and "models:/" in out
    assert "{" not in out
    assert given[0].data.n_labelled == 3_000  # --quick


def test_json_alone_prints_only_the_json_and_a_path_gets_it_too(fake_train, capsys, tmp_path):
    _, argv = fake_train
    assert main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == TRAINED
    path = tmp_path / "out" / "train.json"
    assert main([*argv, "--json", str(path)]) == 0
    assert json.loads(path.read_text()) == TRAINED
    out = capsys.readouterr().out
    assert "validation R²" in out and str(path) in out


def test_the_campaign_table_names_the_objective_and_shows_r2_and_the_gap():
    params = CampaignParameters.defaults("molecule", quick=True)
    result = {"n_seeds": 40, "n_designs": 200, "success_rate": 0.5, "transfer_rate": 0.25, "validation_r2": 0.9,
              "oracle_improvement_mean": 1.0, "predicted_improvement_mean": 3.5}
    summary = {"designer": "molecule", "oracle_calls": 5200, "wall_seconds": 61.0,
               "mlflow": {"tracking_uri": "sqlite:///m.db", "experiment_id": "1", "parent_run_id": "p"},
               "defenses": {"none": result, "vat": {"error": "training diverged"}}}
    text = "\n".join(cli.campaign_lines(summary, params))
    assert "objective penalized logP" in text and "40 seeds" in text
    header, row = text.splitlines()[1:3]
    assert "R²" in header and "gap" in header
    assert row.split() == ["none", "0.90", "0.50", "0.25", "1.00", "3.50", "2.50"]
    assert "vat      failed: training diverged" in text
    car = CampaignParameters.defaults("car", quick=True)
    assert "objective top speed (km/h)" in "\n".join(cli.campaign_lines(summary, car))


def test_library_warnings_stay_off_the_terminal():
    saved = os.environ.get("PYTHONWARNINGS")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            cli.quiet_warnings()
            warnings.warn_explicit("a notice", UserWarning, "mlflow/store.py", 1, module="mlflow.store")
            warnings.warn_explicit("old", DeprecationWarning, "prefect/x.py", 1, module="prefect.x")
            warnings.warn_explicit("ours", UserWarning, "flows/campaign.py", 1, module="flows.campaign")
        assert [str(w.message) for w in caught] == ["ours"]
    finally:
        if saved is None:
            os.environ.pop("PYTHONWARNINGS", None)
        else:
            os.environ["PYTHONWARNINGS"] = saved


def test_evaluate_options_come_from_the_flow_signature(capsys, monkeypatch):
    lines = _help("evaluate", capsys, monkeypatch)
    for option in ("--dataset", "--model", "--test-set", "--defenses", "--eps", "--quick", "--seed",
                   "--tracking-uri", "--experiment", "--torch-threads", "--full", "--strict", "--json"):
        assert option in lines
    assert "{digits,mnist}" in lines["--dataset"] and "[default digits]" in lines["--dataset"]
