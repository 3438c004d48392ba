// Integration: llama.cpp's own tools accept the shape files.
//  - llama-fit-params -lv 4 reads the Qwen3-30B-A3B Q4_K_M shape file written by `agifarm synth shape`,
//    prints its projected memory, sizes the model weights exactly as our header says, and never
//    touches the data section (no page of it enters the page cache; the file stays a hole).
//  - llama-fit-params loads every catalogue model's shape file (llama.cpp checks every tensor's name
//    and shape against the architecture while it does), every architecture in several mixes.
//  - The real llama-quantize, run on a small model with our F16 layout and random weights, lays out
//    Q4_K_M and Q8_0 (gpt-oss: MXFP4_MOE, and Q4_K_M with its experts kept MXFP4) exactly as our
//    shape files do: names, shapes, types and order of every tensor.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include "gguf/gguf.hpp"
#include "gguf/writer.hpp"
#include "support/support.hpp"
#include "synth/shape.hpp"

namespace agifarm::synth {
namespace {

namespace fs = std::filesystem;

const std::vector<model_entry>& catalogue() {
  static const std::vector<model_entry> c = [] {
    auto r = load_model_catalogue(std::string(AGIFARM_SOURCE_DIR) + "/data/models.yaml");
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.err().message);
    return r.ok() ? *r : std::vector<model_entry>{};
  }();
  return c;
}

std::string type_name(std::uint32_t t) {
  const auto* i = gguf::find_type(t);
  return i ? std::string(i->name) : "?" + std::to_string(t);
}

// Pages of [from, to) of `path` that are in the page cache.
std::uint64_t resident_pages(const std::string& path, std::uint64_t from, std::uint64_t to) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return UINT64_MAX;
  const long page = ::sysconf(_SC_PAGESIZE);
  void* p = ::mmap(nullptr, to, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return UINT64_MAX;
  std::vector<unsigned char> vec((to + page - 1) / page);
  std::uint64_t n = 0;
  if (::mincore(p, to, vec.data()) == 0) {
    for (std::uint64_t i = from / page; i < vec.size(); ++i) n += vec[i] & 1;
  } else {
    n = UINT64_MAX;
  }
  ::munmap(p, to);
  return n;
}

// Sum of the "model" column of llama.cpp's memory breakdown table, in MiB.
std::uint64_t breakdown_model_mib(const std::string& log) {
  // |   - Host               |                  8403 =  4258 +    3840 +     304                |
  static const std::regex row(R"(\|\s+- (\S+)\s+\|[^|=]*?(\d+) =\s+(\d+) \+\s+(\d+) \+\s+(\d+))");
  std::uint64_t sum = 0;
  for (std::sregex_iterator it(log.begin(), log.end(), row), end; it != end; ++it)
    sum += std::stoull((*it)[3]);
  return sum;
}

TEST(shape_llama, fit_params_reads_30b_a3b_shape_without_touching_data) {
  const std::string dir = test::temp_dir("shape-fit");
  const std::string path = dir + "/Qwen3-30B-A3B-Q4_K_M.gguf";
  auto w = test::run(
      {test::agifarm_cli(), "synth", "shape", "--model", "qwen3-30b-a3b", "--quant", "Q4_K_M", "-o", path});
  ASSERT_EQ(w.exit_code, 0) << w.output;
  auto f = gguf::read_file(path);
  ASSERT_TRUE(f.ok()) << f.err().message;
  std::uint64_t tensor_bytes = 0;
  for (const auto& t : f->tensors) tensor_bytes += t.n_bytes;
  EXPECT_GT(f->file_size, 18'500'000'000u);
  struct stat before {};
  ASSERT_EQ(::stat(path.c_str(), &before), 0);
  EXPECT_LT(static_cast<std::uint64_t>(before.st_blocks) * 512, 32u << 20);

  auto r =
      test::run({test::llama_bin() + "/llama-fit-params", "-lv", "4", "-m", path}, std::chrono::seconds(120));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("projected to use"), std::string::npos) << r.output;
  // llama.cpp sizes the weights from our header: its model buffers add up to our tensor bytes.
  const double model_mib = static_cast<double>(breakdown_model_mib(r.output));
  const double ours_mib = static_cast<double>(tensor_bytes) / (1024.0 * 1024.0);
  EXPECT_NEAR(model_mib, ours_mib, ours_mib * 0.01) << r.output;

  // Nothing of the data section was read: past the first 2 MiB after the header (room for the kernel's
  // readahead of the header reads) at most one page is cached — llama.cpp touches the file's last
  // page, 4 KiB of 18.5 GB — and the file is still a hole.
  EXPECT_LE(resident_pages(path, f->data_offset + (2u << 20), f->file_size), 1u);
  struct stat after {};
  ASSERT_EQ(::stat(path.c_str(), &after), 0);
  EXPECT_EQ(after.st_blocks, before.st_blocks);
  fs::remove_all(dir);
}

// The bytes llama.cpp loads of a model by default: every tensor but those of the next-token-prediction
// blocks (blk.N for N >= n_layer), which its loaders create with TENSOR_SKIP unless MTP drafting is
// asked for (llama_model_params.load_mtp, set by common/common.cpp only for the draft-mtp speculative
// type).
std::uint64_t loaded_bytes(const model_entry& m, quant_mix mix) {
  auto ts = shape_tensors(m, mix);
  EXPECT_TRUE(ts.ok());
  if (!ts) return 0;
  std::uint64_t n = 0;
  for (const auto& t : *ts) {
    unsigned block = 0;
    if (std::sscanf(t.name.c_str(), "blk.%u.", &block) == 1 && block >= m.n_layer) continue;
    n += *gguf::tensor_bytes(t.type, t.shape);
  }
  return n;
}

// llama-fit-params builds the model from the header (every tensor's name and shape is checked against
// the architecture) and prints its memory breakdown; models bigger than this machine's RAM then fail
// to *fit* (exit 1), which is a fact about the machine, not the file. (Its last log lines come from an
// asynchronous logger and may be lost at exit, so only the early breakdown table is asserted on.)
// To stay near 2 minutes (about 2 s per run), every model is loaded in Q4_K_M and the first model of
// each architecture also in Q8_0 and F16 (and MXFP4_MOE for gpt-oss): the tensor list of a mix
// differs only in types, which the breakdown's byte count checks.
TEST(shape_llama, fit_params_loads_every_catalogue_model) {
  const std::string dir = test::temp_dir("shape-fit-all");
  std::set<std::string> archs_seen;
  int runs = 0;
  for (const auto& m : catalogue()) {
    std::vector<quant_mix> mixes = {quant_mix::q4_k_m};
    if (archs_seen.insert(m.arch).second) {
      mixes.push_back(quant_mix::q8_0);
      mixes.push_back(quant_mix::f16);
      if (!m.expert_source_type.empty()) mixes.push_back(quant_mix::mxfp4_moe);
    }
    for (auto mix : mixes) {
      SCOPED_TRACE(m.id + " " + std::string(to_string(mix)));
      const std::string path = dir + "/" + m.id + "-" + std::string(to_string(mix)) + ".gguf";
      auto w = write_shape_file(m, mix, path);
      ASSERT_TRUE(w.ok()) << w.err().message;
      auto r = test::run({test::llama_bin() + "/llama-fit-params", "-lv", "4", "-m", path, "-c", "4096"},
                         std::chrono::seconds(120));
      EXPECT_TRUE(r.exit_code == 0 || r.exit_code == 1) << r.exit_code << "\n"
                                                        << r.output;  // 1: does not fit here
      const double model_mib = static_cast<double>(breakdown_model_mib(r.output));
      const double ours_mib = static_cast<double>(loaded_bytes(m, mix)) / (1024.0 * 1024.0);
      EXPECT_NEAR(model_mib, ours_mib, ours_mib * 0.01) << r.output;
      fs::remove(path);
      ++runs;
    }
  }
  EXPECT_GE(archs_seen.size(), 10u);  // every family of synth/arch.cpp has a catalogue model
  EXPECT_EQ(runs, static_cast<int>(catalogue().size() + 2 * archs_seen.size() + 1));
  fs::remove_all(dir);
}

// ---- the command line: bad input gives exit status 2 and names the thing ----

TEST(shape_cli, bad_model_quant_and_catalogue_are_reported) {
  const std::string dir = test::temp_dir("shape-cli");
  auto unknown =
      test::run({test::agifarm_cli(), "synth", "shape", "--model", "qwen9-1t", "-o", dir + "/x.gguf"});
  EXPECT_EQ(unknown.exit_code, 2) << unknown.output;
  EXPECT_NE(unknown.output.find("unknown model 'qwen9-1t'"), std::string::npos) << unknown.output;
  auto quant = test::run({test::agifarm_cli(), "synth", "shape", "--model", "qwen3-8b", "--quant", "Q9_K",
                          "-o", dir + "/x.gguf"});
  EXPECT_EQ(quant.exit_code, 2) << quant.output;
  EXPECT_NE(quant.output.find("Q9_K"), std::string::npos) << quant.output;
  {
    std::ofstream bad(dir + "/bad.yaml");
    bad << "models:\n  - id: a\n    nme: typo\n";
  }
  auto cat = test::run({test::agifarm_cli(), "synth", "shape", "--catalogue", dir + "/bad.yaml", "--model",
                        "a", "-o", dir + "/x.gguf"});
  EXPECT_EQ(cat.exit_code, 2) << cat.output;
  EXPECT_NE(cat.output.find(dir + "/bad.yaml:3:5: unknown key 'nme'"), std::string::npos) << cat.output;
  EXPECT_FALSE(fs::exists(dir + "/x.gguf"));
  auto list = test::run({test::agifarm_cli(), "synth", "list"});
  EXPECT_EQ(list.exit_code, 0) << list.output;
  EXPECT_NE(list.output.find("qwen3-235b-a22b"), std::string::npos) << list.output;
  fs::remove_all(dir);
}

// ---- the real llama-quantize ----

std::uint16_t to_half_bits(std::uint64_t& state) {
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  const auto sign = static_cast<std::uint16_t>((state >> 63) << 15);
  const auto exponent = static_cast<std::uint16_t>(8 + (state >> 40) % 6);  // 2^-7 .. 2^-2
  const auto mantissa = static_cast<std::uint16_t>(state & 0x3ff);
  return static_cast<std::uint16_t>(sign | (exponent << 10) | mantissa);
}

// Our F16 layout of `m` with random weights (norms 1.0), as the converter would write it.
void write_f16_model(const model_entry& m, const std::string& path) {
  auto in = make_shape(m, quant_mix::f16);
  ASSERT_TRUE(in.ok()) << in.err().message;
  std::uint64_t seed = 0x9e3779b97f4a7c15ull;
  auto st =
      gguf::write_file(path, *in, [&](std::size_t, const gguf::tensor_def& def, std::span<std::byte> out) {
        if (def.type == k_f32) {
          const float one = 1.0f;
          for (std::size_t i = 0; i + 4 <= out.size(); i += 4) std::memcpy(out.data() + i, &one, 4);
        } else if (def.type != k_f16) {
          std::fill(out.begin(), out.end(), std::byte{0});  // pre-quantized (MXFP4) blocks: zeros are valid
        } else {
          for (std::size_t i = 0; i + 2 <= out.size(); i += 2) {
            const std::uint16_t h = to_half_bits(seed);
            std::memcpy(out.data() + i, &h, 2);
          }
        }
      });
  ASSERT_TRUE(st.ok()) << st.err().message;
}

// `options` go before the file names (e.g. --tensor-type overrides).
void expect_quantize_matches(const model_entry& m, const std::string& dir,
                             std::vector<quant_mix> mixes = {quant_mix::q4_k_m, quant_mix::q8_0},
                             const std::vector<std::string>& options = {}) {
  const std::string src = dir + "/" + m.id + "-F16.gguf";
  write_f16_model(m, src);
  for (auto mix : mixes) {
    SCOPED_TRACE(m.id + " " + std::string(to_string(mix)));
    const std::string out = dir + "/" + m.id + "-" + std::string(to_string(mix)) + ".gguf";
    std::vector<std::string> argv{test::llama_bin() + "/llama-quantize"};
    argv.insert(argv.end(), options.begin(), options.end());
    argv.insert(argv.end(), {src, out, std::string(to_string(mix)), "2"});
    auto r = test::run(argv, std::chrono::seconds(300));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto q = gguf::read_file(out);
    ASSERT_TRUE(q.ok()) << q.err().message;
    auto expected = shape_tensors(m, mix);
    ASSERT_TRUE(expected.ok()) << expected.err().message;
    ASSERT_EQ(q->tensors.size(), expected->size());
    for (std::size_t i = 0; i < expected->size(); ++i) {
      const auto& got = q->tensors[i];
      const auto& want = (*expected)[i];
      EXPECT_EQ(got.name, want.name) << i;
      EXPECT_EQ(got.shape, want.shape) << want.name;
      EXPECT_EQ(type_name(got.type), type_name(want.type)) << want.name;
    }
    EXPECT_EQ(q->get_uint("general.file_type"), info(mix).llama_ftype);
    // same header keys as our shape file writes (llama-quantize copies them and sets the two below)
    auto ours = make_shape(m, mix);
    ASSERT_TRUE(ours.ok());
    for (const auto& kv : ours->metadata) {
      EXPECT_NE(q->find(kv.key), nullptr) << kv.key;
    }
    EXPECT_EQ(q->metadata.size(), ours->metadata.size());
    fs::remove(out);
  }
  fs::remove(src);
}

model_entry small_model(std::string id, std::string arch) {
  model_entry m;
  m.id = std::move(id);
  m.name = m.id;
  m.arch = std::move(arch);
  m.vocab = m.arch == "llama" ? "llama-bpe" : "qwen2";
  m.n_layer = 8;  // use_more_bits differs across blocks: 0, 3, 6, 7 get more bits
  m.n_embd = 256;
  m.n_ff = 512;
  m.n_head = 4;
  m.n_head_kv = 2;
  m.head_dim = 64;
  m.n_vocab = m.arch == "llama" ? 128256 : 151936;
  m.context_length = 4096;
  m.rope_theta = 1e6;
  m.rms_eps = 1e-6;
  return m;
}

TEST(shape_llama, llama_quantize_lays_out_dense_qwen3_like_our_shapes) {
  auto m = small_model("small-qwen3", "qwen3");
  m.qk_norm = true;
  m.tied_embeddings = true;
  expect_quantize_matches(m, test::temp_dir("shape-quantize-qwen3"));
}

TEST(shape_llama, llama_quantize_lays_out_qwen3moe_like_our_shapes) {
  auto m = small_model("small-qwen3moe", "qwen3moe");
  m.qk_norm = true;
  m.n_expert = 8;  // also exercises the 8-expert rules (attn_v/attn_k Q8_0, attn_output Q5_K)
  m.n_expert_used = 2;
  m.n_ff_exp = 256;
  expect_quantize_matches(m, test::temp_dir("shape-quantize-qwen3moe"));
}

// gpt-oss's experts come MXFP4 from the converter. MXFP4_MOE (the published mix) copies them; a K-quant
// keeps them only with an override (plain llama-quantize refuses to requantize them), which is how the
// published K-quant files are made and what our shapes assume.
TEST(shape_llama, llama_quantize_lays_out_gpt_oss_like_our_shapes) {
  auto m = small_model("small-gpt-oss", "gpt-oss");
  m.vocab = "llama-bpe";
  m.n_vocab = 128256;
  m.n_expert = 4;
  m.n_expert_used = 2;
  m.n_ff_exp = 256;
  m.sliding_window = 128;
  m.attention_bias = true;
  m.rms_eps = 1e-5;
  m.expert_source_type = "MXFP4";
  const std::string dir = test::temp_dir("shape-quantize-gpt-oss");
  expect_quantize_matches(m, dir, {quant_mix::mxfp4_moe});
  expect_quantize_matches(m, dir, {quant_mix::q4_k_m}, {"--tensor-type", "_exps=mxfp4"});
}

// MLA's 3-D attn_k_b / attn_v_b, leading dense blocks, shared experts and the router bias.
TEST(shape_llama, llama_quantize_lays_out_deepseek2_like_our_shapes) {
  auto m = small_model("small-deepseek2", "deepseek2");
  m.vocab = "deepseek-llm";
  m.n_vocab = 102400;
  m.n_head = 4;
  m.n_head_kv = 4;
  m.n_expert = 8;
  m.n_expert_used = 2;
  m.n_ff_exp = 256;
  m.n_expert_shared = 1;
  m.n_layer_dense_lead = 1;
  m.expert_gating = "sigmoid";
  m.expert_probs_bias = true;
  m.q_lora_rank = 128;
  m.kv_lora_rank = 64;
  m.qk_nope_head_dim = 64;
  m.qk_rope_head_dim = 32;
  m.v_head_dim = 64;
  expect_quantize_matches(m, test::temp_dir("shape-quantize-deepseek2"));
}

TEST(shape_llama, llama_quantize_lays_out_llama_like_our_shapes) {
  auto m = small_model("small-llama", "llama");
  m.rope_freqs = true;
  m.rope_theta = 500000;
  m.rms_eps = 1e-5;
  expect_quantize_matches(m, test::temp_dir("shape-quantize-llama"));
}

}  // namespace
}  // namespace agifarm::synth
