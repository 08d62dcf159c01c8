"""The accelerator's RTL, and the shared vocabulary every other package speaks.

RTL (Amaranth): the units (`hw.mesh`, `hw.banked`, `hw.dma`, `hw.controllers`,
`hw.frontend`, `hw.dram`, `hw.simmem`) and the top level `hw.top`; `hw.generate` writes
the Verilog of one configuration (``make rtl SIZE=16``).

Vocabulary (plain Python, no Amaranth): `hw.config` (`HardwareConfig`, each field's
allowed values, unit and help), `hw.layer` (`Layer`), `hw.mapping` (`Mapping`, its array
and JSON forms, and the one fit rule), `hw.isa` (the instruction set), `hw.program` (a
program and its ISA interpreter), `hw.schedule` (the instruction scheduler both program
generators use), `hw.tiled_gemm` (GEMM programs for testbenches), `hw.reference`,
`hw.result` (`Result`) and `hw.cli` (the command-line pieces every tool shares).
"""
