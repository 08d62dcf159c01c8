// Lean-harness version of hw/verilog/sim_mem.v: the same ports, parameters and
// behaviour at every clock edge, written for a cheaper Verilator model. sim/build.py
// puts this module in place of `sim_mem` in lean builds only; the cocotb builds keep
// the original. Not synthesisable.
//
//   load  (pulse)  $readmemh(<+IN_ARG plusarg or IN_DEFAULT>, mem): only the words named
//                  in the file change (use @addr lines for sparse images)
//   dump  (pulse)  $writememh(<+OUT_ARG plusarg or OUT_DEFAULT>, mem, dump_lo, dump_hi)
//   read           synchronous: rd_data <= mem[rd_addr] when rd_en
//   write          byte-masked: mem[wr_addr] bytes with wr_mask set <= wr_data
//
// Differences from the original, none of them visible at the ports or in the memory:
// a write is one non-blocking write of the whole word, merged from the word's value at
// the edge (after a `load` at the same edge, as the original's per-byte writes see it)
// and the masked bytes, instead of one non-blocking write per byte (Verilator then keeps
// one pending write per edge instead of WIDTH/8); the `initial` loop that zeroes the
// memory is left out (lean builds use --x-initial 0, so Verilator starts every word at zero).
module sim_mem #(
    parameter WIDTH = 128,
    parameter DEPTH = 1024,
    parameter AW = 10,
    parameter IN_ARG = "MEM_IN=%s",
    parameter IN_DEFAULT = "mem_in.hex",
    parameter OUT_ARG = "MEM_OUT=%s",
    parameter OUT_DEFAULT = "mem_out.hex"
) (
    input  wire               clk,
    input  wire               rd_en,
    input  wire [AW-1:0]      rd_addr,
    output reg  [WIDTH-1:0]   rd_data,
    input  wire               wr_en,
    input  wire [AW-1:0]      wr_addr,
    input  wire [WIDTH-1:0]   wr_data,
    input  wire [WIDTH/8-1:0] wr_mask,
    input  wire               load,
    input  wire               dump,
    input  wire [AW-1:0]      dump_lo,
    input  wire [AW-1:0]      dump_hi
);
    reg [WIDTH-1:0] mem [0:DEPTH-1];
    reg [WIDTH-1:0] word;
    string in_file;
    string out_file;
    integer i;

    initial begin
        if (!$value$plusargs(IN_ARG, in_file)) in_file = IN_DEFAULT;
        if (!$value$plusargs(OUT_ARG, out_file)) out_file = OUT_DEFAULT;
    end

    always @(posedge clk) begin
        if (load) $readmemh(in_file, mem);
        if (dump) $writememh(out_file, mem, dump_lo, dump_hi);
        if (rd_en) rd_data <= mem[rd_addr];
        if (wr_en) begin
            word = mem[wr_addr];
            for (i = 0; i < WIDTH / 8; i = i + 1)
                if (wr_mask[i]) word[8*i +: 8] = wr_data[8*i +: 8];
            mem[wr_addr] <= word;
        end
    end
endmodule
