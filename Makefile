# Convenience targets; each is one command you can also type yourself.
#
#   make rtl SIZE=16 [SP_KB=256 ACC_KB=64 DRAM_LATENCY=100 ...]   write build/rtl/top_*.v
#   make lint-rtl SIZE=16                                           same, then verilator --lint-only
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

# Analytical model vs RTL on N random triples (RTL results cached under build/validate_cost)
N    ?= 300
SEED ?= 1
validate-cost:
	$(PYTHON) scripts/validate_cost.py --n $(N) --seed $(SEED)

# Removes this checkout's outputs (build/, including the test build cache build/sim-cache).
clean:
	rm -rf build .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Removes the shared model cache ($ACCEL_CACHE_DIR or ~/.cache/accelsim/builds).
clean-cache:
	rm -rf "$${ACCEL_CACHE_DIR:-$$HOME/.cache/accelsim/builds}"
