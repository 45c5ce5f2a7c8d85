#include "Ptxas.h"

#include "DiskCache.h"
#include "Log.h"

#include <fmt/format.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <mutex>
#include <spawn.h>
#include <sstream>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

extern char **environ;

namespace nsajit::rt {

namespace {

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

bool writeFile(const std::string &path, const std::string &data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  return static_cast<bool>(out.flush());
}

// A private directory for one run's files, removed with everything in it.
struct ScratchDir {
  std::string path;
  std::vector<std::string> files;
  ScratchDir() {
    const char *tmp = std::getenv("TMPDIR");
    std::string pattern = fmt::format("{}/nsajit-ptxas-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()))
      path = buf.data();
  }
  std::string file(const char *name) {
    files.push_back(path + "/" + name);
    return files.back();
  }
  ~ScratchDir() {
    for (const std::string &f : files)
      ::unlink(f.c_str());
    if (!path.empty())
      ::rmdir(path.c_str());
  }
};

constexpr int kFailedToRun = -1, kTimedOut = -2;

// Runs argv[0] with stdin from /dev/null and stdout + stderr into `logPath`; returns
// its exit status, kFailedToRun (with `error` set) when it could not run or was killed,
// or kTimedOut (`error` set) when it ran past `timeoutSeconds` and was killed.
int run(const std::vector<std::string> &argv, const std::string &logPath, std::string &error,
        double timeoutSeconds = 60) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, logPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char *> args;
  for (const std::string &a : argv)
    args.push_back(const_cast<char *>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, argv[0].c_str(), &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    error = fmt::format("cannot run {}: {}", argv[0], std::strerror(rc));
    return kFailedToRun;
  }
  // Poll (every 2 ms: an assembly takes 50-900 ms) so that a hung ptxas cannot hang the load.
  const auto start = std::chrono::steady_clock::now();
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid)
      break;
    if (r < 0 && errno != EINTR) {
      error = fmt::format("waiting for {} failed: {}", argv[0], std::strerror(errno));
      return kFailedToRun;
    }
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeoutSeconds) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      error = fmt::format("{} ran longer than {} s and was stopped (NSAJIT_PTXAS_TIMEOUT_S)", argv[0], timeoutSeconds);
      return kTimedOut;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  error = fmt::format("{} was killed by signal {}", argv[0], WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  return kFailedToRun;
}

bool executable(const std::string &path) {
  struct stat st;
  return !path.empty() && ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

std::string lastLineWith(const std::string &text, const char *needle) {
  std::istringstream in(text);
  std::string line, found;
  while (std::getline(in, line))
    if (line.find(needle) != std::string::npos)
      found = line;
  return found;
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r'))
    s.pop_back();
  return s;
}

// The ptxas to use, or "" (with the reason logged).
std::string findPtxas() {
  if (const char *e = std::getenv("NSAJIT_PTXAS"); e && *e) {
    std::string v = e;
    if (v == "off" || v == "0" || v == "none")
      return "";
    if (executable(v))
      return v;
    logWarningOnce(fmt::format("NSAJIT_PTXAS = '{}' is not an executable file: kernels go through the driver's "
                               "JIT, one at a time (set it to a ptxas, or 'off')",
                               v));
    return "";
  }
  std::vector<std::string> candidates;
  if (const char *home = std::getenv("CUDA_HOME"); home && *home)
    candidates.push_back(std::string(home) + "/bin/ptxas");
  candidates.push_back("/usr/local/cuda/bin/ptxas");
  if (const char *path = std::getenv("PATH")) {
    std::istringstream dirs(path);
    for (std::string dir; std::getline(dirs, dir, ':');)
      if (!dir.empty())
        candidates.push_back(dir + "/ptxas");
  }
  for (const std::string &c : candidates)
    if (executable(c))
      return c;
  return "";
}

// The disk cache key under which the version of the ptxas at `path` is kept:
// the file's identity (device, inode, size, modification and change times, to
// the nanosecond), so a ptxas replaced or updated in place gets a new key; ""
// when it cannot be read.
std::string versionKey(const std::string &path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    return "";
  return fmt::format("ptxas --version of {} | dev {} ino {} size {} mtime {}.{:09} ctime {}.{:09}", path,
                     static_cast<unsigned long long>(st.st_dev), static_cast<unsigned long long>(st.st_ino),
                     static_cast<long long>(st.st_size), static_cast<long long>(st.st_mtim.tv_sec),
                     static_cast<long>(st.st_mtim.tv_nsec), static_cast<long long>(st.st_ctim.tv_sec),
                     static_cast<long>(st.st_ctim.tv_nsec));
}

// The version line of the ptxas at `path` ("Cuda compilation tools, release
// ..."), or "" with `error` set. Read from the disk cache where an earlier
// process stored it: running ptxas --version started a child process in every
// process's first cached kernel load (18-33 ms on the build host, 0.7 ms from
// the cache; the paper configuration's 21 cached kernels loaded in 10.1 ms on
// the H100 host with it, bench/results/2026-11-27-h100-session17/s17run5).
std::string ptxasVersion(const std::string &path, std::string &error) {
  const std::string key = versionKey(path);
  std::shared_ptr<DiskCache> disk = DiskCache::global();
  if (!key.empty())
    if (std::optional<std::string> stored = disk->load(key))
      if (stored->find("release") != std::string::npos && stored->find('\n') == std::string::npos)
        return *stored;
  ScratchDir dir;
  if (dir.path.empty()) {
    error = "cannot create a scratch directory for ptxas (TMPDIR)";
    return "";
  }
  std::string log = dir.file("version.log");
  int rc = run({path, "--version"}, log, error);
  std::string version = trimmed(lastLineWith(readFile(log), "release"));
  if (rc != 0 || version.empty()) {
    error = fmt::format("{} --version failed ({})", path, rc < 0 ? error : fmt::format("exit {}", rc));
    return "";
  }
  if (!key.empty())
    disk->store(key, version);
  return version;
}

std::mutex gMutex;
std::shared_ptr<const Ptxas> gPtxas;
bool gLookedUp = false;

} // namespace

std::shared_ptr<const Ptxas> Ptxas::get() {
  std::lock_guard<std::mutex> lock(gMutex);
  if (gLookedUp)
    return gPtxas && !gPtxas->disabled_.load() ? gPtxas : nullptr;
  gLookedUp = true;
  std::string path = findPtxas();
  if (path.empty()) {
    logInfo("no ptxas found (NSAJIT_PTXAS, CUDA_HOME, /usr/local/cuda, PATH): kernels go through the driver's JIT");
    return nullptr;
  }
  std::string error;
  std::string version = ptxasVersion(path, error);
  if (version.empty()) {
    logWarningOnce(fmt::format("{}: kernels go through the driver's JIT", error));
    return nullptr;
  }
  double timeout = 300;
  if (const char *e = std::getenv("NSAJIT_PTXAS_TIMEOUT_S"); e && *e) {
    char *end = nullptr;
    double v = std::strtod(e, &end);
    if (end && *end == '\0' && v > 0)
      timeout = v;
    else
      logWarningOnce(fmt::format("NSAJIT_PTXAS_TIMEOUT_S = '{}' is not a positive number of seconds: using {}", e,
                                 timeout));
  }
  gPtxas = std::make_shared<const Ptxas>(path, version, timeout);
  logInfo(fmt::format("kernels are assembled by {} ({})", path, version));
  return gPtxas;
}

void Ptxas::disable(const std::string &why) const {
  if (!disabled_.exchange(true))
    logWarning(fmt::format("{}: kernels go through the driver's JIT from now on", why));
}

void Ptxas::resetForTesting() {
  std::lock_guard<std::mutex> lock(gMutex);
  gPtxas.reset();
  gLookedUp = false;
}

std::optional<std::string> Ptxas::assemble(const std::string &ptx, const std::string &arch,
                                           std::string &error) const {
  ScratchDir dir;
  if (dir.path.empty()) {
    error = fmt::format("cannot create a scratch directory: {}", std::strerror(errno));
    return std::nullopt;
  }
  std::string in = dir.file("kernel.ptx"), out = dir.file("kernel.cubin"), log = dir.file("ptxas.log");
  if (!writeFile(in, ptx)) {
    error = fmt::format("cannot write {}", in);
    return std::nullopt;
  }
  int rc = run({path_, "-arch=" + arch, "-O3", in, "-o", out}, log, error, timeoutSeconds_);
  if (rc == kTimedOut)
    disable(error); // a ptxas that hangs once would stall every later kernel as long
  if (rc != 0) {
    if (rc > 0)
      error = fmt::format("{} -arch={} exited with {}: {}", path_, arch, rc, trimmed(readFile(log)));
    return std::nullopt;
  }
  std::string cubin = readFile(out);
  if (cubin.empty()) {
    error = fmt::format("{} -arch={} wrote no machine code", path_, arch);
    return std::nullopt;
  }
  return cubin;
}

} // namespace nsajit::rt
