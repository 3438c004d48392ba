// GGUF header read: agifarm's reader vs ggml's gguf_init_from_file(no_alloc) on the same file, in
// the same run. The file is the Qwen3-235B-A22B Q4_K_M shape file (written once, sparse).
// Prints "ratio ggml/agifarm = X" at the end: the goal is X >= 5.
//   build/release/bench/gguf_read_bench [--file F.gguf] [google benchmark flags]
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>

#include "gguf.h"
#include "gguf/gguf.hpp"

namespace {

std::string g_file;

void bm_agifarm(benchmark::State& state) {
  for (auto _ : state) {
    auto m = agifarm::gguf::read_model(g_file);
    if (!m) state.SkipWithError(m.err().message.c_str());
    auto s = agifarm::gguf::summarize(*m);  // what `inspect` does, not just the parse
    benchmark::DoNotOptimize(s.n_params);
  }
}

void bm_ggml(benchmark::State& state) {
  for (auto _ : state) {
    gguf_init_params p{true, nullptr};
    gguf_context* ctx = gguf_init_from_file(g_file.c_str(), p);
    if (!ctx) state.SkipWithError("ggml could not read the file");
    benchmark::DoNotOptimize(gguf_get_n_tensors(ctx));
    gguf_free(ctx);
  }
}

class ratio_reporter : public benchmark::ConsoleReporter {
 public:
  std::map<std::string, double> ns;
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& r : runs)
      if (r.run_type == Run::RT_Iteration) ns[r.benchmark_name()] = r.GetAdjustedRealTime();
    ConsoleReporter::ReportRuns(runs);
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::string(argv[i]) == "--file" && i + 1 < argc)
      g_file = argv[++i];
    else
      args.push_back(argv[i]);
  }
  if (g_file.empty()) {
    g_file = std::string(AGIFARM_BINARY_DIR) + "/bench-work/qwen3-235b-a22b-Q4_K_M.gguf";
    if (!std::filesystem::exists(g_file)) {
      std::filesystem::create_directories(std::filesystem::path(g_file).parent_path());
      std::string cmd =
          std::string(AGIFARM_CLI) + " synth shape --model qwen3-235b-a22b --quant Q4_K_M -o " + g_file;
      if (std::system(cmd.c_str()) != 0) {
        std::cerr << "could not write the shape file: " << cmd << "\n";
        return 1;
      }
    }
  }
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  benchmark::RegisterBenchmark("gguf_read/agifarm", bm_agifarm)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("gguf_read/ggml_no_alloc", bm_ggml)->Unit(benchmark::kMillisecond);
  ratio_reporter rep;
  benchmark::RunSpecifiedBenchmarks(&rep);
  auto a = rep.ns.find("gguf_read/agifarm"), g = rep.ns.find("gguf_read/ggml_no_alloc");
  if (a != rep.ns.end() && g != rep.ns.end() && a->second > 0)
    std::cout << "file: " << g_file << "\nratio ggml/agifarm = " << g->second / a->second << " (goal >= 5)\n";
  return 0;
}
