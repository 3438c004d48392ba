// script: the bash skeleton shared by the llama and vllm targets — a node script with
// `start` (dependencies first, each waited ready with a deadline), `stop` (SIGTERM to each process group,
// SIGKILL after STOP_TIMEOUT) and `status`, pid files and logs under STATE_DIR. Internal to emit.
#pragma once

#include <string>
#include <vector>

namespace agifarm::emit::detail {

struct script_process {
  std::string name;     // unique on the node
  std::string comment;  // lines starting with '#', each ending in '\n'
  std::string prelude;  // shell lines run just before the exec (e.g. loading the key), each ending in '\n'
  std::string command;  // the shell command the process runs (exec'ed), already quoted
  std::string ready;    // shell condition: the process answers
  std::string wait_remote;  // shell commands run before starting it (e.g. wait_tcp ...), may be empty
};

struct script_spec {
  std::string title;                      // the first comment line (what the script is), ending in '\n'
  std::string header;                     // comment lines after the usage lines
  std::vector<std::string> settings;      // VAR="${VAR:-default}" lines
  std::vector<script_process> processes;  // start order
  std::vector<std::string> comms;  // /proc/PID/comm names of the processes (pid reuse check; empty: none)
  std::string functions;           // extra shell functions (for ready / wait_remote conditions)
  std::string before_start;        // shell lines run first by `start`
  std::string after_stop;          // shell lines run last by `stop`
  std::string usage_name;          // the script's file name
};

std::string process_script(const script_spec& spec);

// A valid shell identifier made of a name.
std::string shell_ident(const std::string& name);

}  // namespace agifarm::emit::detail
