// write_files: never overwrites without force, writes nothing when one file exists, sets modes.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "emit_test_util.hpp"

namespace agifarm::emit::test {
namespace {
namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::path(AGIFARM_BINARY_DIR) / "test-work" / "emit-writer" / name;
  fs::remove_all(d);
  return d;
}

TEST(WriteFiles, WritesFilesAndSubdirectoriesWithModes) {
  fs::path d = fresh_dir("modes");
  files f{{"a.sh", "#!/bin/sh\n", true}, {"sub/b.txt", "b\n", false}};
  ASSERT_TRUE(write_files(d.string(), f, false).ok());
  EXPECT_EQ(read_text((d / "a.sh").string()), "#!/bin/sh\n");
  EXPECT_EQ(read_text((d / "sub/b.txt").string()), "b\n");
  EXPECT_NE(fs::status(d / "a.sh").permissions() & fs::perms::owner_exec, fs::perms::none);
  EXPECT_EQ(fs::status(d / "sub/b.txt").permissions() & fs::perms::owner_exec, fs::perms::none);
}

TEST(WriteFiles, RefusesToOverwriteWithoutForceAndWritesNothing) {
  fs::path d = fresh_dir("force");
  ASSERT_TRUE(write_files(d.string(), {{"b.txt", "old\n", false}}, false).ok());
  files f{{"a.txt", "new a\n", false}, {"b.txt", "new b\n", false}};
  auto s = write_files(d.string(), f, false);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.err().message.find("b.txt already exists; use --force"), std::string::npos) << s.err().message;
  EXPECT_FALSE(fs::exists(d / "a.txt"));
  EXPECT_EQ(read_text((d / "b.txt").string()), "old\n");
  ASSERT_TRUE(write_files(d.string(), f, true).ok());
  EXPECT_EQ(read_text((d / "b.txt").string()), "new b\n");
}

TEST(WriteFiles, RefusesPathsOutsideTheDirectory) {
  fs::path d = fresh_dir("escape");
  EXPECT_FALSE(write_files(d.string(), {{"../x.txt", "x", false}}, false).ok());
  EXPECT_FALSE(write_files(d.string(), {{"/tmp/x.txt", "x", false}}, false).ok());
}

TEST(WriteFiles, ReportsADirectoryThatCannotBeCreated) {
  fs::path d = fresh_dir("blocked");
  fs::create_directories(d);
  ASSERT_TRUE(write_files(d.string(), {{"file", "x", false}}, false).ok());
  auto s =
      write_files((d / "file").string(), {{"a.txt", "x", false}}, false);  // a file where a directory must go
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.err().message.find("cannot create"), std::string::npos) << s.err().message;
}

}  // namespace
}  // namespace agifarm::emit::test
