# Convenience targets; each is one command you can also type yourself.
#
#   make rtl SIZE=16 [SP_KB=256 ACC_KB=64 DRAM_LATENCY=100 ...]   write build/rtl/top_*.v
#   make lint-rtl SIZE=16                                           same, then verilator --lint-only
#   make validate-cost [SEED=1|2] [RESIMULATE=1]                    analytical model vs RTL (shipped RTL results)
#   make validate-cost SEED=101 BUFFERS=random                      the same for random single/double buffering
#
# Every HardwareConfig field can be given as its upper-case name (SP_BANKS, DMA_BUS_BYTES,
# ...); GEN_ARGS passes anything else to `python -m hw.generate` (e.g. GEN_ARGS="--from-json c.json").

PYTHON  ?= python
SIZE    ?= 16
OUT_DIR ?= build/rtl
GEN_ARGS ?=

# MAKE_VARIABLE:cli-flag for every HardwareConfig field besides dim (SIZE), read from
# hw.config.HW_FIELDS (recursive '=': evaluated only by the targets that use it)
CONFIG_VARS = $(shell $(PYTHON) -c "from hw.config import HW_FIELDS; \
	print(' '.join(f.upper() + ':' + f.replace('_', '-') for f in HW_FIELDS if f != 'dim'))")

_var  = $(word 1,$(subst :, ,$(1)))
_flag = $(word 2,$(subst :, ,$(1)))
GEN_FLAGS = $(strip --dim $(SIZE) --out-dir $(OUT_DIR) \
	$(foreach p,$(CONFIG_VARS),$(if $($(call _var,$(p))),--$(call _flag,$(p)) $($(call _var,$(p))))) \
	$(GEN_ARGS))

.PHONY: install test test-slow rtl lint-rtl bench bench-cost validate-cost clean clean-cache

install:
	$(PYTHON) -m pip install -e ".[onnx]"

test:
	$(PYTHON) -m pytest

test-slow:
	$(PYTHON) -m pytest -m slow

rtl:
	@$(PYTHON) -m hw.generate $(GEN_FLAGS)

lint-rtl:
	@$(PYTHON) -m hw.generate $(GEN_FLAGS) --lint

bench: bench-cost
	$(PYTHON) scripts/bench_rtl.py

bench-cost:
	$(PYTHON) scripts/bench_cost.py

# Analytical model vs RTL on N random triples. RTL results ship in docs/validation/ (300
# triples of SEED 1 and 2; 120 of SEED 101 with BUFFERS=random) and are used as they are:
# seconds, nothing simulated, nothing written there (the script appends only new results, and
# there are none). N must be the number of shipped results (the default for that seed).
# RESIMULATE=1 simulates afresh into build/validate_cost/ (Verilator builds, then hours of RTL
# simulation; resumed if interrupted). The plot goes to PLOT.
SEED       ?= 1
BUFFERS    ?= double
RESIMULATE ?=
TAG         = $(if $(filter random,$(BUFFERS)),_buffered,)
SHIPPED     = docs/validation/rtl_seed$(SEED)$(TAG).jsonl
SHIPPED_N   = $(if $(wildcard $(SHIPPED)),$(strip $(shell wc -l < $(SHIPPED))),0)
N          ?= $(if $(filter 0,$(SHIPPED_N)),300,$(SHIPPED_N))
PLOT       ?= build/validate_cost/cost_validation_seed$(SEED)$(TAG).png
VALIDATE    = $(PYTHON) scripts/validate_cost.py --n $(N) --seed $(SEED) --buffers $(BUFFERS) --plot $(PLOT)
validate-cost:
ifeq ($(RESIMULATE),1)
	@echo "simulating the $(N) triples of seed $(SEED) on the RTL (Verilator builds, then hours)..." >&2
	$(VALIDATE) --cache build/validate_cost/rtl_seed$(SEED)$(TAG).jsonl
else
	@if [ "$(SHIPPED_N)" = 0 ] || [ "$(N)" != "$(SHIPPED_N)" ]; then \
		echo "error: no shipped RTL results for N=$(N) SEED=$(SEED) BUFFERS=$(BUFFERS) (docs/validation/ has SEED=1 and 2 with N=300, SEED=101 BUFFERS=random with N=120); to simulate them: make validate-cost N=$(N) SEED=$(SEED) BUFFERS=$(BUFFERS) RESIMULATE=1 (hours of RTL simulation)" >&2; \
		exit 2; fi
	@echo "using the shipped RTL results $(SHIPPED) (RESIMULATE=1 simulates afresh)" >&2
	$(VALIDATE) --cache $(SHIPPED)
endif

# Removes this checkout's outputs (build/, including the test build cache build/sim-cache).
clean:
	rm -rf build .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Removes the shared model cache ($ACCEL_CACHE_DIR or ~/.cache/accelsim/builds).
clean-cache:
	rm -rf "$${ACCEL_CACHE_DIR:-$$HOME/.cache/accelsim/builds}"
