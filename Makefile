# Cerber: `make run` sets everything up and opens the app with the default model
# and a sample image; `make test` sets everything up and runs the tests.
# Both create .venv/ here.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run samples test lint bench model model-v2 exe exe-full constraints clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[train,gui,dev,package,cluster,openvino]"
	touch $(STAMP)

setup: $(STAMP)

# The main job: the desktop app with the default model and the sample images.
run: setup
	$(BIN)/cerber-gui assets/samples/img_hybiss_2d.tif assets/samples/img_terra_2d.tif

# The same analysis without a window: track tables, overlays and maps in results/samples.
samples: setup
	$(BIN)/cerber analyze assets/samples --out results/samples --save-overlay --save-probability --overwrite

# The checks first (seconds), then the suite: one worker process per core (at most 4), the
# slowest tests listed at the end.
test: lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -n auto --maxprocesses 4 --durations 15

# Style (ruff), types of cerber_model (mypy) and the import contracts between the packages and tiers.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The default model (cerber_model/models/default, package data): fixed seeds, under two hours
# on a 2-core CPU. 25 epochs from fresh weights, then 10 epochs at a lower learning rate
# starting from the best of those.
# Interrupted runs continue where they stopped (--resume); the data are generated once.
MODEL_DATA := build/model-data
$(MODEL_DATA)/recipe.json: | $(STAMP)
	rm -rf $(MODEL_DATA)
	$(BIN)/cerber generate $(MODEL_DATA) --count 240 --seed 1 --recipe training --quiet

MODEL_BASE := build/model-base
model: setup $(MODEL_DATA)/recipe.json
	$(BIN)/cerber train $(MODEL_DATA) --out $(MODEL_BASE) --width 2 --epochs 25 --steps 100 \
		--patch-size 128 --batch-size 8 --seed 777 --resume
	$(BIN)/cerber train $(MODEL_DATA) --out cerber_model/models/default --start-from $(MODEL_BASE) --width 2 \
		--epochs 10 --steps 100 --patch-size 128 --batch-size 8 --lr 1e-3 --seed 778 --resume

# The candidate for the next default model (the real-images issue; docs/pilot-real-images.md),
# inputs in noise SDs (the background normalisation). Three stages, each continuing from the last:
# the pilot (10 epochs on the realistic recipe, generator v2), 15 epochs on the mixed recipe
# (7 in 10 images realistic, 3 in 10 of the prototype's kind, so that neither is lost), then
# 8 epochs at a lower learning rate. Writes build/model-v2; cerber_model/models/default is left as it is.
# Measured after 13 of the 15 mixed epochs: worse on the annotated samples than the pilot (the prototype's
# spots teach it to mark textured blobs); kept to reproduce docs/pilot-real-images.md, not as the next default.
# Interrupted runs continue where they stopped (--resume); the data are generated once.
PILOT_DATA := build/pilot-data
$(PILOT_DATA)/recipe.json: | $(STAMP)
	rm -rf $(PILOT_DATA)
	$(BIN)/cerber generate $(PILOT_DATA) --count 300 --seed 11 --recipe realistic --size 512 512 --quiet

build/pilot/config.json: | $(PILOT_DATA)/recipe.json
	$(BIN)/cerber train $(PILOT_DATA) --out build/pilot --width 2 --epochs 10 --steps 100 \
		--patch-size 128 --batch-size 8 --seed 777 --normalization background --resume

MODEL_V2_DATA := build/model-v2-data
$(MODEL_V2_DATA)/recipe.json: | $(STAMP)
	rm -rf $(MODEL_V2_DATA)
	$(BIN)/cerber generate $(MODEL_V2_DATA) --count 480 --seed 21 --recipe mixed --size 512 512 --quiet

MODEL_V2_BASE := build/model-v2-base
model-v2: setup build/pilot/config.json $(MODEL_V2_DATA)/recipe.json
	$(BIN)/cerber train $(MODEL_V2_DATA) --out $(MODEL_V2_BASE) --start-from build/pilot --width 2 \
		--epochs 15 --steps 100 --patch-size 128 --batch-size 8 --seed 779 --resume
	$(BIN)/cerber train $(MODEL_V2_DATA) --out build/model-v2 --start-from $(MODEL_V2_BASE) --width 2 \
		--epochs 8 --steps 100 --patch-size 128 --batch-size 8 --lr 1e-3 --seed 778 --resume

# The standalone app (PyInstaller, onedir) with the default model inside, checked after building:
# dist/Cerber/ is the analyzer (no TensorFlow), dist/Cerber-full/ also trains.
exe: setup
	$(BIN)/python packaging/build.py --check

exe-full: setup
	$(BIN)/python packaging/build.py --full --check

bench: setup
	$(BIN)/python benchmarks/bench_analysis.py

# Re-pin every dependency after changing pyproject.toml.
constraints: setup
	( echo "# Exact versions for reproducible installs: pip install -c constraints.txt -e '.[train,gui,dev,package,cluster,openvino]'"; \
	  echo "# Regenerate after changing dependencies: make constraints"; \
	  $(BIN)/python -m pip freeze --exclude-editable ) > constraints.txt

clean:
	rm -rf $(VENV) build dist results .pytest_cache .mypy_cache
