// Lean C++ harness for the Verilated accelerator `top` (throughput runs).
//
// Runs the same program cases as the cocotb testbench sim/program_tb.py, with the same
// clock/reset/load/start/dump sequence, so cycle counters and DRAM outputs are
// identical; it just has no per-cycle VPI/Python overhead and is built without
// --public-flat-rw.
//
// Usage:
//   accel_lean [--work DIR] [--max-seconds S] [--quiet] (--cases FILE | CASE_DIR...) [+plusarg...]
//
//   --cases FILE     one case directory per line (as sim/lean.py / sim/rtl_run.py write them)
//   CASE_DIR         a case directory (several may be given)
//   --work DIR       where the backdoor files live (+IMEM_IN / +DRAM_IN / +DRAM_OUT point
//                    at DIR/imem.hex, DIR/dram_in.hex, DIR/dram_out.hex); default "."
//   --max-seconds S  wall-clock watchdog per case: a case running longer is stopped and
//                    marked timed_out (and "wall_timeout": true); 0 (default) = none
//
// A case directory holds case.json ({"max_cycles", "dump_lo", "dump_hi", ...; with a
// model built with capacity ports also "sp_bank_rows", "acc_bank_rows"}),
// imem.hex and dram_in.hex; the harness writes dram_out.hex and result.json
// ({"done", "fault", "timed_out", "wall_timeout", "wall_s", "cycles_run", "counters": {...}})
// there. Exit status: 0 when every case ran (whatever its outcome), 2 on usage or I/O
// errors.
//
// The generated header accel_lean_ports.h (written by sim/build.py from the ports of
// the Verilated model and hw.top.COUNTERS) defines ACCEL_COUNTERS(X) and
// ACCEL_HAS_<PORT> for optional ports such as imem_load, ACCEL_REGISTERED_<PORT> for the
// inputs the lean top registers (rst, start: the harness sets them a cycle ahead) and
// ACCEL_POSEDGE_ONLY when the model's only trigger is the rising edge of clk.
//
// Lean builds (sim/build.py, lean_verilog) differ from the cocotb build only in ways that
// keep every edge the same: the program is read through DPI-C (accel_host_open/next,
// below) instead of `$fscanf`, the DRAM backdoor memory writes whole words, and the top
// registers rst and start (and latches the bank sizes of a capacity-ports model).

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "Vtop.h"
#include "Vtop___024root.h"
#include "verilated.h"

#include "accel_lean_ports.h"

// Lean builds replace the `$fscanf` host (hw/verilog/sim_host.v) with sim_host_dpi.v, which
// reads the program through the two DPI-C functions below; Verilator then generates
// Vtop__Dpi.h. (A model without that module has no DPI imports and no such header.)
#if __has_include("Vtop__Dpi.h")
#include "Vtop__Dpi.h"
#define ACCEL_HOST_DPI 1
#else
#define ACCEL_HOST_DPI 0
#endif

#ifndef ACCEL_HAS_IMEM_LOAD
#define ACCEL_HAS_IMEM_LOAD 0
#endif
// Models built with capacity ports (hw.top.Top(capacity_ports=True)) take the bank sizes
// of the configuration being simulated from case.json ("sp_bank_rows", "acc_bank_rows");
// the lean top latches them at the dram_load edge that begins each case (sim/build.py).
#ifndef ACCEL_HAS_SP_BANK_ROWS
#define ACCEL_HAS_SP_BANK_ROWS 0
#endif
#ifndef ACCEL_HAS_ACC_BANK_ROWS
#define ACCEL_HAS_ACC_BANK_ROWS 0
#endif
// Lean builds wrap the accelerator in a top that registers rst and start (sim/build.py,
// lean_verilog; rst_q starts high): the core sees each one edge after it is set here, so
// the harness sets them one cycle ahead of the sequence of sim/program_tb.py.
#if defined(ACCEL_REGISTERED_RST) != defined(ACCEL_REGISTERED_START)
#error "rst and start must both be registered, or neither"
#endif
#ifdef ACCEL_REGISTERED_RST
#define ACCEL_REGISTERED_INPUTS 1
#else
#define ACCEL_REGISTERED_INPUTS 0
#endif

// Verilator's evaluation of the model's root (Verilator 5: Vtop::eval_step() calls it
// between per-call housekeeping, deferred deletes of class objects and the hand-over of
// messages queued by other threads, which a single-threaded model without classes does not
// need). Declared weak: if a Verilator version does not define it, the harness calls eval().
void Vtop___024root___eval(Vtop___024root* vlSelf) __attribute__((weak));

namespace {

using Clock = std::chrono::steady_clock;

// In a model whose only trigger is the rising edge of clk (ACCEL_POSEDGE_ONLY: sim/build.py
// checks Verilator's trigger code), evaluating the falling edge changes nothing but the
// value of clk that the next evaluation compares clk with to detect a rising edge,
// `__Vtrigprevexpr___TOP__clk__0`. The harness then sets that value to 0 instead of
// evaluating the falling edge; otherwise (other triggers, another Verilator) it evaluates
// the edge as usual.
#ifndef ACCEL_POSEDGE_ONLY
#define ACCEL_POSEDGE_ONLY 0
#endif
template <typename Root>
auto clear_clk_trigger(Root* root, int) -> decltype(root->__Vtrigprevexpr___TOP__clk__0 = 0, bool()) {
    if (!ACCEL_POSEDGE_ONLY) return false;
    root->__Vtrigprevexpr___TOP__clk__0 = 0;
    return true;
}
template <typename Root>
bool clear_clk_trigger(Root*, long) {
    return false;
}

[[noreturn]] void die(const std::string& msg) {
    std::fprintf(stderr, "accel_lean: %s\n", msg.c_str());
    std::exit(2);
}

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) die("cannot read " + path + ": " + std::strerror(errno));
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

void copy_file(const std::string& from, const std::string& to) {
    // Like shutil.copyfile: truncate and rewrite `to` in place.
    std::string data = read_file(from);
    std::FILE* f = std::fopen(to.c_str(), "wb");
    if (!f) die("cannot write " + to + ": " + std::strerror(errno));
    if (!data.empty() && std::fwrite(data.data(), 1, data.size(), f) != data.size()) die("short write to " + to);
    if (std::fclose(f) != 0) die("cannot close " + to);
}

void write_file_atomic(const std::string& path, const std::string& text) {
    std::string tmp = path + ".tmp";
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) die("cannot write " + tmp + ": " + std::strerror(errno));
    std::fwrite(text.data(), 1, text.size(), f);
    if (std::fclose(f) != 0) die("cannot close " + tmp);
    if (std::rename(tmp.c_str(), path.c_str()) != 0) die("cannot rename " + tmp);
}

// Integer value of "key" in a flat JSON object (what sim writes: no nesting needed).
uint64_t json_uint(const std::string& text, const std::string& key, const std::string& where) {
    std::string pat = "\"" + key + "\"";
    size_t p = text.find(pat);
    if (p == std::string::npos) die(where + ": no \"" + key + "\"");
    p = text.find(':', p + pat.size());
    if (p == std::string::npos) die(where + ": bad \"" + key + "\"");
    ++p;
    while (p < text.size() && (text[p] == ' ' || text[p] == '\t' || text[p] == '\n' || text[p] == '\r')) ++p;
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(text.c_str() + p, &end, 10);
    if (end == text.c_str() + p || errno != 0 || text[p] == '-') die(where + ": bad value of \"" + key + "\"");
    return static_cast<uint64_t>(v);
}

std::string trim(const std::string& s) {
    size_t a = s.find_first_not_of(" \t\r\n");
    if (a == std::string::npos) return "";
    size_t b = s.find_last_not_of(" \t\r\n");
    return s.substr(a, b - a + 1);
}

struct Harness {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<Vtop> top;

    // One clock cycle: a rising edge (inputs set before it are sampled), then the
    // falling edge.
    //
    // How sim/program_tb.py maps onto ticks (cocotb 2.1 on Verilator, measured): the
    // trigger of `await ClockCycles(clk, 1)` fires when the edge is applied, before the
    // model is evaluated, so values read right after it are those of the previous
    // edge; writes made then are inertial and applied after the evaluation, so they
    // are sampled by the next edge. Hence `await ClockCycles(1); sig = v` is
    // `tick(); sig = v` here, and `await ClockCycles(1); read` is `read; tick()`.
    //
    // The model was evaluated once (initialisation) before the first tick.
    inline void tick() {
        top->clk = 1;
        if (Vtop___024root___eval) Vtop___024root___eval(top->rootp);
        else top->eval();
        ctx->timeInc(5);
        top->clk = 0;
        if (!clear_clk_trigger(top->rootp, 0)) top->eval();
        ctx->timeInc(5);
    }

    void ticks(int n) {
        for (int i = 0; i < n; ++i) tick();
    }

    // sim/program_tb.py _reset: rst high for 3 rising edges, then one more edge. With
    // registered inputs the core's rst is the value set here one edge earlier: it must
    // already be high at the first edge (the wrapper's initial value, or rst set before the
    // edge preceding the call), stays high for two more edges and is low from the fourth.
    void reset() {
        top->rst = 1;
#if ACCEL_REGISTERED_INPUTS
        ticks(2);
        top->rst = 0;
        ticks(2);
#else
        ticks(3);
        top->rst = 0;
        ticks(1);
#endif
    }
};

struct Outcome {
    bool done = false, fault = false, timed_out = false, wall_timeout = false;
    double wall_s = 0.0;
    uint64_t cycles_run = 0;
};

// The program of sim_host_dpi.v: 128-bit words as four 32-bit limbs, least significant first.
struct HostProgram {
    std::vector<uint32_t> limbs;   // 4 per word
    size_t next = 0;               // index of the next word to hand out
};
HostProgram g_host;

// Hex digit values as `$fscanf("%h")` reads them (x, z and ? count as 0 in a 2-state
// model; '_' is a separator): 0..15, kSep for '_', kNotHex for anything else.
constexpr int8_t kSep = -2, kNotHex = -1;
struct HexTable {
    int8_t v[256];
    constexpr HexTable() : v() {
        for (int c = 0; c < 256; ++c) v[c] = kNotHex;
        for (int c = '0'; c <= '9'; ++c) v[c] = static_cast<int8_t>(c - '0');
        for (int c = 'a'; c <= 'f'; ++c) v[c] = static_cast<int8_t>(c - 'a' + 10);
        for (int c = 'A'; c <= 'F'; ++c) v[c] = static_cast<int8_t>(c - 'A' + 10);
        for (char c : {'x', 'X', 'z', 'Z', '?'}) v[static_cast<unsigned char>(c)] = 0;
        v[static_cast<unsigned char>('_')] = kSep;
    }
};
constexpr HexTable kHex;

inline bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

}  // namespace

#if ACCEL_HOST_DPI
// sim_host_dpi.v, on start: read the whole program file, as the `$fopen` + repeated
// `$fscanf(fd, "%h\n", word)` of hw/verilog/sim_host.v would: whitespace-separated hex
// words (the low 128 bits of longer ones) up to the first text that is not hex. 0 if the
// file cannot be opened (then no words), else 1.
extern "C" int accel_host_open(const char* path) {
    g_host.limbs.clear();
    g_host.next = 0;
    std::FILE* f = std::fopen(path, "rb");
    if (!f) return 0;
    std::string text;
    char buf[1 << 16];
    size_t got;
    while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, got);
    std::fclose(f);
    g_host.limbs.reserve(text.size() / 33 * 4 + 4);
    const char* p = text.data();
    const char* end = p + text.size();
    while (true) {
        while (p < end && is_space(*p)) ++p;
        if (p >= end) break;
        if (end - p >= 32 && (end - p == 32 || is_space(p[32]))) {  // the usual line: 32 digits
            uint64_t hi = 0, lo = 0;
            int bad = 0;
            for (int i = 0; i < 16; ++i) {
                const int v = kHex.v[static_cast<unsigned char>(p[i])];
                bad |= v;
                hi = (hi << 4) | static_cast<uint64_t>(v & 15);
            }
            for (int i = 16; i < 32; ++i) {
                const int v = kHex.v[static_cast<unsigned char>(p[i])];
                bad |= v;
                lo = (lo << 4) | static_cast<uint64_t>(v & 15);
            }
            if (bad >= 0) {
                const uint32_t limbs[4] = {static_cast<uint32_t>(lo), static_cast<uint32_t>(lo >> 32),
                                           static_cast<uint32_t>(hi), static_cast<uint32_t>(hi >> 32)};
                g_host.limbs.insert(g_host.limbs.end(), limbs, limbs + 4);
                p += 32;
                continue;
            }
        }
        unsigned __int128 w = 0;  // the low 128 bits of the word, as `$fscanf` keeps them
        bool any = false;
        for (; p < end; ++p) {
            const int v = kHex.v[static_cast<unsigned char>(*p)];
            if (v < 0) {
                if (v == kNotHex) break;
                continue;
            }
            w = (w << 4) | static_cast<unsigned>(v);
            any = true;
        }
        if (!any) break;  // not hex: `$fscanf` matches nothing from here on
        for (int i = 0; i < 4; ++i) g_host.limbs.push_back(static_cast<uint32_t>(w >> (32 * i)));
    }
    return 1;
}

// sim_host_dpi.v, on start and on each accepted word: 1 and the next word, or 0 after the last.
extern "C" int accel_host_next(svBitVecVal* word) {
    if (g_host.next * 4 >= g_host.limbs.size()) return 0;
    const uint32_t* w = &g_host.limbs[g_host.next * 4];
    word[0] = w[0];
    word[1] = w[1];
    word[2] = w[2];
    word[3] = w[3];
    ++g_host.next;
    return 1;
}
#endif

int main(int argc, char** argv) {
    std::string work = ".";
    std::string cases_file;
    std::vector<std::string> case_dirs;
    std::vector<std::string> plusargs;
    double max_seconds = 0.0;
    bool quiet = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&](const char* name) -> std::string {
            if (i + 1 >= argc) die(std::string("missing value after ") + name);
            return argv[++i];
        };
        if (a == "--work") work = value("--work");
        else if (a == "--cases") cases_file = value("--cases");
        else if (a == "--max-seconds") max_seconds = std::atof(value("--max-seconds").c_str());
        else if (a == "--quiet") quiet = true;
        else if (a == "-h" || a == "--help") {
            std::printf("usage: %s [--work DIR] [--max-seconds S] [--quiet] (--cases FILE | CASE_DIR...) [+plusarg...]\n",
                        argv[0]);
            return 0;
        } else if (!a.empty() && a[0] == '+') plusargs.push_back(a);
        else if (!a.empty() && a[0] == '-') die("unknown option " + a);
        else case_dirs.push_back(a);
    }
    if (!cases_file.empty()) {
        std::istringstream in(read_file(cases_file));
        std::string line;
        while (std::getline(in, line)) {
            line = trim(line);
            if (!line.empty()) case_dirs.push_back(line);
        }
    }
    if (case_dirs.empty()) die("no cases (give --cases FILE or case directories)");

    const std::string imem_path = work + "/imem.hex";
    const std::string dram_in_path = work + "/dram_in.hex";
    const std::string dram_out_path = work + "/dram_out.hex";

    // The backdoor memories read their file names from plusargs in `initial` blocks.
    std::vector<std::string> vargs = {argv[0], "+IMEM_IN=" + imem_path, "+DRAM_IN=" + dram_in_path,
                                      "+DRAM_OUT=" + dram_out_path};
    vargs.insert(vargs.end(), plusargs.begin(), plusargs.end());
    std::vector<const char*> cargs;
    for (auto& s : vargs) cargs.push_back(s.c_str());

    Harness h;
    h.ctx = std::make_unique<VerilatedContext>();
    h.ctx->commandArgs(static_cast<int>(cargs.size()), cargs.data());
    h.top = std::make_unique<Vtop>(h.ctx.get(), "top");
    Vtop* top = h.top.get();

    // sim/program_tb.py: clock low, all inputs 0, then reset.
    top->clk = 0;
    top->rst = ACCEL_REGISTERED_INPUTS;
    top->start = 0;
#if ACCEL_HAS_IMEM_LOAD
    top->imem_load = 0;
#endif
    top->dram_load = 0;
    top->dram_dump = 0;
    top->dram_dump_lo = 0;
    top->dram_dump_hi = 0;
    top->eval();
    h.reset();

    for (const std::string& dir : case_dirs) {
        const std::string spec_path = dir + "/case.json";
        const std::string spec = read_file(spec_path);
        const uint64_t max_cycles = json_uint(spec, "max_cycles", spec_path);
        const uint64_t dump_lo = json_uint(spec, "dump_lo", spec_path);
        const uint64_t dump_hi = json_uint(spec, "dump_hi", spec_path);

#if ACCEL_HAS_SP_BANK_ROWS
        top->sp_bank_rows = json_uint(spec, "sp_bank_rows", spec_path);
#endif
#if ACCEL_HAS_ACC_BANK_ROWS
        top->acc_bank_rows = json_uint(spec, "acc_bank_rows", spec_path);
#endif
        copy_file(dir + "/imem.hex", imem_path);
        copy_file(dir + "/dram_in.hex", dram_in_path);
#if ACCEL_HAS_IMEM_LOAD
        top->imem_load = 1;
#endif
        top->dram_load = 1;
        h.tick();
#if ACCEL_HAS_IMEM_LOAD
        top->imem_load = 0;
#endif
        top->dram_load = 0;
        top->start = ACCEL_REGISTERED_INPUTS;  // registered: the core sees it at the edge after this one
        h.tick();

        Outcome out;
        const auto t0 = Clock::now();
        const auto deadline = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(max_seconds));
        top->start = !ACCEL_REGISTERED_INPUTS;
        h.tick();
        top->start = 0;
        // cocotb: with_timeout(RisingEdge(done), max_cycles * period) starting right
        // after the start edge s. The timer expires at the time of edge s + max_cycles and
        // fires before that edge is evaluated, so done can rise on edges s+1 .. s+max-1.
        uint8_t prev_done = top->done;
        uint64_t n = 0;
        bool rose = false;
        while (n + 1 < max_cycles) {
            h.tick();
            ++n;
            const uint8_t d = top->done;
            if (d && !prev_done) { rose = true; break; }
            prev_done = d;
            if (max_seconds > 0 && (n & 0x3FF) == 0 && Clock::now() > deadline) {
                out.wall_timeout = true;
                break;
            }
        }
        out.timed_out = !rose;
        out.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
        out.cycles_run = n;
        // cocotb then awaits ClockCycles(1) and reads: the values before that edge.
        out.done = top->done;
        out.fault = top->fault;

        std::ostringstream res;
        res << "{\"done\": " << (out.done ? "true" : "false") << ", \"fault\": " << (out.fault ? "true" : "false")
            << ", \"timed_out\": " << (out.timed_out ? "true" : "false")
            << ", \"wall_timeout\": " << (out.wall_timeout ? "true" : "false");
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.9g", out.wall_s);
        res << ", \"wall_s\": " << buf << ", \"cycles_run\": " << out.cycles_run << ", \"counters\": {";
        bool first = true;
#define ACCEL_EMIT_COUNTER(name)                                                   \
        res << (first ? "" : ", ") << "\"" #name "\": " << static_cast<uint64_t>(top->name); \
        first = false;
        ACCEL_COUNTERS(ACCEL_EMIT_COUNTER)
#undef ACCEL_EMIT_COUNTER
        res << "}}";

        h.tick();  // the edge that ClockCycles(1) waited for
        top->dram_dump_lo = dump_lo;
        top->dram_dump_hi = dump_hi;
        top->dram_dump = 1;
        h.tick();
        top->dram_dump = 0;
        if (ACCEL_REGISTERED_INPUTS && out.timed_out) top->rst = 1;  // the core's rst at the next edge (reset below)
        h.tick();
        copy_file(dram_out_path, dir + "/dram_out.hex");
        write_file_atomic(dir + "/result.json", res.str());
        if (!quiet) {
            std::fprintf(stderr, "accel_lean: %s: %s%s%s %" PRIu64 " cycles in %.3f s\n", dir.c_str(),
                         out.timed_out ? "TIMED OUT" : "done", out.fault ? " (fault)" : "",
                         out.wall_timeout ? " (wall clock)" : "", out.cycles_run, out.wall_s);
        }
        if (out.timed_out) h.reset();
    }
    top->final();
    return 0;
}
