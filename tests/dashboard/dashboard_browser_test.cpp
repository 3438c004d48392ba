// Integration: the dashboard of a running demo farm (`agifarm up`, embedded default: two llama-servers on
// the tiny model) in a real browser — headless Debian chromium driven by playwright-core (both installed
// by scripts/setup.sh). browser_check.cjs checks every backend and pool appears with its state, measured
// memory is shown, a request moves the charts, the back button, a killed backend turns red and then green
// again, a narrow window; the screenshot is left in build/test-work/dashboard.png (a CI artifact).
#include <gtest/gtest.h>

#include <filesystem>

#include "support/support.hpp"

namespace agifarm {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

TEST(dashboard_browser, demo_farm_in_headless_chromium) {
  const std::string playwright = AGIFARM_PLAYWRIGHT_DIR;
  ASSERT_TRUE(fs::exists(playwright + "/package.json")) << playwright << " missing: run scripts/setup.sh";
  ASSERT_TRUE(fs::exists("/usr/bin/chromium")) << "chromium missing: run scripts/setup.sh";
  const std::string dir = test::temp_dir("dashboard-browser");
  const int port = test::free_port();
  struct farm_down {
    std::string dir;
    ~farm_down() { test::run({test::agifarm_cli(), "down", "--state-dir", dir, "--timeout", "20"}, 60s); }
  } down{dir};
  auto up = test::run({test::agifarm_cli(), "up", "--detach", "--state-dir", dir, "--listen",
                       "127.0.0.1:" + std::to_string(port)},
                      120s);
  ASSERT_EQ(up.exit_code, 0) << up.output;
  const std::string shot = test::work_dir() + "/dashboard.png";
  fs::remove(shot);
  auto r = test::run(
      {"/usr/bin/env", "node", std::string(AGIFARM_SOURCE_DIR) + "/tests/dashboard/browser_check.cjs",
       playwright, std::to_string(port), shot},
      120s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const char* check : {"ok backend", "ok pool", "ok measured memory", "ok a request moved the charts",
                            "ok backend detail and back button", "ok killed backend red",
                            "ok restarted backend green", "ok narrow window", "ok no page errors"})
    EXPECT_NE(r.output.find(check), std::string::npos) << check << "\n" << r.output;
  ASSERT_TRUE(fs::exists(shot)) << r.output;
  EXPECT_GT(fs::file_size(shot), 10000u);
}

}  // namespace
}  // namespace agifarm
