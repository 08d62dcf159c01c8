// Simulation-only host that streams the accelerator's instructions from a file, the
// way a host CPU feeds Gemmini over RoCC. Not synthesisable.
//
//   start (pulse)   (re)open <+IMEM_IN plusarg or "imem_in.hex"> and read its first word
//   out_valid/out_data/out_ready   one 128-bit instruction per cycle at most; the file has
//                   one hex word per line (MSB first). After the last word, out_valid
//                   stays low until the next start.
module sim_host #(
    parameter WIDTH = 128
) (
    input  wire             clk,
    input  wire             start,
    output reg              out_valid,
    output reg [WIDTH-1:0]  out_data,
    input  wire             out_ready
);
    string  path;
    integer fd;
    integer n;
    reg [WIDTH-1:0] word;

    initial begin
        if (!$value$plusargs("IMEM_IN=%s", path)) path = "imem_in.hex";
        fd = 0;
        out_valid = 1'b0;
        out_data = {WIDTH{1'b0}};
    end

    task automatic next_word;
        begin
            n = (fd != 0) ? $fscanf(fd, "%h\n", word) : 0;
            if (n == 1) begin
                out_valid <= 1'b1;
                out_data <= word;
            end else begin
                out_valid <= 1'b0;
            end
        end
    endtask

    always @(posedge clk) begin
        if (start) begin
            if (fd != 0) $fclose(fd);
            fd = $fopen(path, "r");
            if (fd == 0) $display("sim_host: cannot open %s", path);
            next_word();
        end else if (out_valid && out_ready) begin
            next_word();
        end
    end
endmodule
