#include "emit/emit.hpp"

namespace agifarm::emit {

namespace {

// "https://huggingface.co/Qwen/Qwen3-8B" -> "Qwen/Qwen3-8B"; a URL of another site gives "".
std::string hf_id(const std::string& url) {
  for (const char* prefix :
       {"https://huggingface.co/", "http://huggingface.co/", "https://hf.co/", "hf.co/", "huggingface.co/"})
    if (url.rfind(prefix, 0) == 0) {
      std::string id = url.substr(std::string(prefix).size());
      while (!id.empty() && id.back() == '/') id.pop_back();
      return id;
    }
  if (url.find("://") != std::string::npos) return {};
  return url;
}

}  // namespace

emit_input input_from_plan(const plan::plan_document& doc, std::string plan_json) {
  emit_input in;
  for (const auto& n : doc.inventory.nodes) {
    node_info ni{n.name, n.address, {}, n.cpu_cores, n.ram_bytes};
    for (const auto& g : n.gpus)
      if (g.vendor != "none") ni.gpus.push_back({g.index, g.vendor, g.name, g.vram_bytes, ""});
    in.nodes.push_back(std::move(ni));
  }
  for (const auto& m : doc.models) {
    model_info mi;
    mi.name = m.name;
    mi.file = m.file;
    mi.hf_repo = hf_id(m.hf_repo);
    mi.architecture = m.architecture;
    mi.n_params = m.n_params;
    mi.n_layers = static_cast<int>(m.n_layers);
    mi.n_experts = static_cast<int>(m.n_experts);
    in.models.push_back(std::move(mi));
  }
  in.deployment = doc.chosen;
  in.plan_json = std::move(plan_json);
  return in;
}

result<emit_input> input_from_plan_text(std::string_view text) {
  auto doc = plan::parse_plan_document(text);
  if (!doc) return doc.err();
  return input_from_plan(*doc, std::string(text));
}

}  // namespace agifarm::emit
