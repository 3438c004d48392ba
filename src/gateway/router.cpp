#include "gateway/router.hpp"

#include <boost/json.hpp>

namespace agifarm::gateway {

router::router(const config& c) {
  for (std::size_t i = 0; i < c.pools.size(); ++i) {
    pools_.push_back({c.pools[i].name, c.pools[i].aliases});
    by_name_.emplace(c.pools[i].name, i);
  }
  for (std::size_t i = 0; i < c.pools.size(); ++i)
    for (const auto& a : c.pools[i].aliases)
      by_name_.emplace(a, i);  // pool names win (validate forbids clashes)
}

std::optional<std::size_t> router::find(std::string_view model) const {
  if (model.empty()) {
    if (pools_.size() == 1) return 0;
    return std::nullopt;
  }
  auto it = by_name_.find(std::string(model));
  if (it == by_name_.end()) return std::nullopt;
  return it->second;
}

std::string router::unknown_model_message(std::string_view model) const {
  std::string m = model.empty() ? std::string("The request names no 'model' and there are several.")
                                : "The model '" + std::string(model.substr(0, 256)) + "' does not exist.";
  m += " Available: ";
  for (std::size_t i = 0; i < pools_.size(); ++i) {
    if (i) m += ", ";
    m += pools_[i].name;
    if (!pools_[i].aliases.empty()) {
      m += " (aliases: ";
      for (std::size_t j = 0; j < pools_[i].aliases.size(); ++j) m += (j ? ", " : "") + pools_[i].aliases[j];
      m += ")";
    }
  }
  return m;
}

std::string router::models_json() const {
  namespace json = boost::json;
  json::array data;
  auto add = [&](const std::string& id, const std::string& root) {
    json::object o;
    o["id"] = id;
    o["object"] = "model";
    o["created"] = 0;
    o["owned_by"] = "agifarm";
    o["root"] = root;
    data.push_back(std::move(o));
  };
  for (const auto& p : pools_) add(p.name, p.name);
  for (const auto& p : pools_)
    for (const auto& a : p.aliases) add(a, p.name);
  json::object out;
  out["object"] = "list";
  out["data"] = std::move(data);
  return json::serialize(out);
}

}  // namespace agifarm::gateway
