// parse_fit_output: kept apart from the process code so the fuzz build compiles it alone.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

#include "fit/fit.hpp"

namespace agifarm::fit {

namespace {
constexpr std::uint64_t k_mib = 1024ull * 1024ull;
}  // namespace

result<fit_breakdown> parse_fit_output(std::string_view output, int n_devices) {
  fit_breakdown b;
  b.devices.resize(static_cast<std::size_t>(std::max(0, n_devices)));
  for (int i = 0; i < n_devices; ++i) b.devices[i].name = fmt::format("RPC{}", i);
  bool in_table = false, any_host = false;
  std::size_t line_no = 0, pos = 0;
  while (pos <= output.size()) {
    std::size_t end = output.find('\n', pos);
    if (end == std::string_view::npos) end = output.size();
    std::string_view line = output.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    constexpr std::string_view k_row = "common_memory_breakdown_print: |   - ";
    const auto at = line.find(k_row);
    if (at == std::string_view::npos) {
      if (in_table && line.find("common_memory_breakdown_print") == std::string_view::npos) break;
      if (end == output.size()) break;
      continue;
    }
    in_table = true;
    std::string_view rest = line.substr(at + k_row.size());
    const auto name_end = rest.find_first_of(" (|");
    const std::string name(rest.substr(0, name_end));
    // "| total = free + (self = model + context + compute) + unaccounted" for devices, "| self = ..." for the
    // host
    const auto bar = rest.find('|');
    if (bar == std::string_view::npos)
      return make_error(fmt::format("llama-fit-params output line {}: no '|' in a breakdown row", line_no));
    const auto paren = rest.find('(', bar);
    std::string nums(paren != std::string_view::npos ? rest.substr(paren + 1) : rest.substr(bar + 1));
    long self = 0, model = 0, context = 0, compute = 0;
    if (std::sscanf(nums.c_str(), " %ld = %ld + %ld + %ld", &self, &model, &context, &compute) != 4 ||
        model < 0 || context < 0 || compute < 0)
      return make_error(
          fmt::format("llama-fit-params output line {}: cannot read 'self = model + context + compute' of {}",
                      line_no, name));
    plan::device_memory* row = &b.host;
    if (name.rfind("RPC", 0) == 0) {
      int idx = -1;
      if (std::sscanf(name.c_str() + 3, "%d", &idx) != 1 || idx < 0 || idx >= n_devices)
        return make_error(
            fmt::format("llama-fit-params output line {}: device {} is not one of the {} asked for", line_no,
                        name, n_devices));
      row = &b.devices[idx];
    } else {
      any_host = true;
    }
    row->model_bytes += static_cast<std::uint64_t>(model) * k_mib;
    row->context_bytes += static_cast<std::uint64_t>(context) * k_mib;
    row->compute_bytes += static_cast<std::uint64_t>(compute) * k_mib;
    row->total_bytes = row->model_bytes + row->context_bytes + row->compute_bytes;
  }
  if (!in_table)
    return make_error("llama-fit-params printed no memory breakdown (common_memory_breakdown_print)");
  if (!any_host) return make_error("llama-fit-params' memory breakdown has no Host row");
  return b;
}

}  // namespace agifarm::fit
