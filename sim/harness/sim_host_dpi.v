// Lean-harness version of hw/verilog/sim_host.v: the same ports, parameters and cycle
// behaviour, with the program read through DPI-C calls into the harness
// (sim/harness/main.cpp: accel_host_open / accel_host_next) instead of one `$fscanf`
// per instruction. sim/build.py puts this module in place of `sim_host` in lean builds
// only; the cocotb builds keep the `$fscanf` original. Not synthesisable.
//
//   start (pulse)   (re)read <+IMEM_IN plusarg or "imem_in.hex"> (one hex word per line)
//                   and offer its first word
//   out_valid/out_data/out_ready   one 128-bit instruction per cycle at most; after the
//                   last word, out_valid stays low until the next start
module sim_host #(
    parameter WIDTH = 128
) (
    input  wire             clk,
    input  wire             start,
    output reg              out_valid,
    output reg [WIDTH-1:0]  out_data,
    input  wire             out_ready
);
    // accel_host_open: read the whole file (what `$fopen` + `$fscanf("%h\n")` calls would
    // see: whitespace-separated hex words up to the first non-hex text); 0 if it cannot
    // be opened. accel_host_next: 1 and the next word, or 0 after the last one.
    import "DPI-C" function int accel_host_open(input string path);
    import "DPI-C" function int accel_host_next(output bit [127:0] word);

    string  path;
    integer n;
    bit [127:0] word;

    initial begin
        if (WIDTH != 128) $fatal(1, "sim_host (DPI): WIDTH must be 128");
        if (!$value$plusargs("IMEM_IN=%s", path)) path = "imem_in.hex";
        out_valid = 1'b0;
        out_data = {WIDTH{1'b0}};
    end

    always @(posedge clk) begin
        if (start || (out_valid && out_ready)) begin
            if (start && accel_host_open(path) == 0) $display("sim_host: cannot open %s", path);
            n = accel_host_next(word);
            if (n == 1) begin
                out_valid <= 1'b1;
                out_data <= word;
            end else begin
                out_valid <= 1'b0;
            end
        end
    end
endmodule
