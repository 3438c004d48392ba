// Bad plans give errors that name the backend / node / pool and the problem; nothing crashes.
#include <gtest/gtest.h>

#include "emit_test_util.hpp"

namespace agifarm::emit::test {
namespace {

std::string first_error(const emit_input& in) {
  for (const auto& t : target_names()) {
    auto r = emit_target(t, in, emit_options{});
    if (r.ok()) return "no error from " + t;
    // Every target checks the plan the same way.
    std::string msg = r.err().message;
    for (const auto& u : target_names()) {
      auto r2 = emit_target(u, in, emit_options{});
      EXPECT_FALSE(r2.ok()) << u;
      if (!r2.ok()) {
        EXPECT_EQ(r2.err().message, msg) << u;
      }
    }
    return msg;
  }
  return "";
}

TEST(EmitErrors, NamesWhatIsWrong) {
  emit_input base = load_plan("three-nodes");
  {
    auto in = base;
    in.deployment.backends.clear();
    EXPECT_NE(first_error(in).find("no backends"), std::string::npos);
  }
  {
    auto in = base;
    in.deployment.backends[0].port = 0;
    EXPECT_EQ(first_error(in),
              "plan: ggml-rpc-server 'rpc-work-gpu0' has no port; llama-server's --rpc must name it");
  }
  {
    auto in = base;
    in.deployment.backends[3].depends_on.push_back("ghost");
    EXPECT_EQ(first_error(in),
              "plan: backend 'qwen3-235b-a22b-shard' depends on 'ghost', which is not in the deployment");
  }
  {
    auto in = base;
    in.deployment.backends[0].depends_on.push_back("qwen3-235b-a22b-shard");
    EXPECT_NE(first_error(in).find("cycle"), std::string::npos);
  }
  {
    auto in = base;
    in.deployment.backends[1].node = "attic";
    EXPECT_EQ(first_error(in),
              "plan: backend 'rpc-work-gpu1' runs on node 'attic', which the inventory does not list");
  }
  {
    auto in = base;
    in.deployment.backends[2].gpus = {5};
    EXPECT_EQ(first_error(in),
              "plan: backend 'rpc-old-gpu0' uses GPU 5 of node 'old', which has no such GPU");
  }
  {
    auto in = base;
    in.deployment.backends[1].port = 50052;
    EXPECT_NE(first_error(in).find("port 50052 is used twice on node 'work'"), std::string::npos);
  }
  {
    auto in = base;
    in.deployment.backends[2].host = "0.0.0.0";
    EXPECT_NE(first_error(in).find("ggml-rpc-server 'rpc-old-gpu0' binds to all interfaces"),
              std::string::npos);
  }
  {
    auto in = base;
    in.deployment.backends[2].port = 50099;
    EXPECT_EQ(first_error(in),
              "plan: llama-server 'qwen3-235b-a22b-shard' depends on ggml-rpc-server 'rpc-old-gpu0' at "
              "192.168.1.12:50099, which its --rpc does not list");
  }
  {
    auto in = base;
    in.deployment.backends[2].host = "127.0.0.1";
    for (auto& a : in.deployment.backends[3].args)
      if (a.find("192.168.1.12:50052") != std::string::npos)
        a.replace(a.find("192.168.1.12"), 12, "127.0.0.1");
    EXPECT_EQ(first_error(in),
              "plan: ggml-rpc-server 'rpc-old-gpu0' on node 'old' binds to 127.0.0.1, which llama-server "
              "'qwen3-235b-a22b-shard' on node 'big' cannot reach");
  }
  {
    auto in = base;
    in.deployment.pools[0].backends.push_back("nobody");
    EXPECT_EQ(first_error(in),
              "plan: pool 'qwen3-235b-a22b' names backend 'nobody', which is not in the deployment");
  }
  {
    auto in = base;
    in.deployment.backends.push_back(in.deployment.backends[0]);
    EXPECT_EQ(first_error(in), "plan: backend 'rpc-work-gpu0' is listed twice");
  }
}

TEST(EmitErrors, UnknownTargetAndBadPlanText) {
  auto r = emit_target("k8s", load_plan("one-gpu"), emit_options{});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.err().message.find("unknown target 'k8s'"), std::string::npos);
  auto bad = input_from_plan_text(
      "{\"version\": 1, \"deployment\": {\"backends\": [{\"port\": 99999, \"name\": \"x\"}]}}");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.err().exit_code, 2);
  EXPECT_NE(bad.err().message.find("deployment.backends[0].port"), std::string::npos) << bad.err().message;
  EXPECT_FALSE(input_from_plan_text("not json").ok());
}

TEST(EmitErrors, PortsLeftAtZeroAreAssignedFromTheBasePort) {
  emit_input in = load_plan("eight-gpu");
  for (auto& b : in.deployment.backends) b.port = 0;
  in.deployment.backends[2].port = 9001;
  emit_options opt;
  opt.base_port = 9000;
  auto out = emit_llama(in, opt);
  ASSERT_TRUE(out.ok());
  const std::string& s = (*out)[0].content;
  for (int port : {9000, 9001, 9002, 9003, 9004})
    EXPECT_NE(s.find("--port " + std::to_string(port)), std::string::npos) << port;
}

}  // namespace
}  // namespace agifarm::emit::test
