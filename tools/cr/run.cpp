#include "commands.hpp"
#include "options.hpp"

#include <cr/sdk/log.hpp>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace cr::cli {

namespace {

// In the child: new session, stdin /dev/null, stdout and stderr to the log, then exec.
[[noreturn]] void exec_detached(const std::string& log, std::vector<char*>& args, int error_pipe) {
    int err = 0;
    if (setsid() < 0) err = errno;
    int in = open("/dev/null", O_RDONLY);
    int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in < 0 || out < 0) err = errno;
    if (!err && (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)) err = errno;
    if (!err) {
        if (in > 2) close(in);
        if (out > 2) close(out);
        execvp(args[0], args.data());
        err = errno;
    }
    (void)!write(error_pipe, &err, sizeof err);
    _exit(127);
}

}  // namespace

int run_main(int argc, char** argv) {
    po::options_description desc("options");
    std::string log = "/dev/null";
    std::vector<std::string> command;
    desc.add_options()
        ("help,h", "show this help")
        ("log", po::value<std::string>(&log), "file for the command's stdout and stderr (appended)")
        ("command", po::value<std::vector<std::string>>(&command), "command and arguments");
    po::positional_options_description pos;
    pos.add("command", -1);
    po::variables_map vm;
    if (!parse(argc, argv, desc, vm, "usage: cr run [--log FILE] -- CMD [ARGS...]", &pos)) return 0;
    if (command.empty()) return fail("run", "no command given (usage: cr run [--log FILE] -- CMD [ARGS...])");
    std::vector<char*> args;
    for (auto& c : command) args.push_back(c.data());
    args.push_back(nullptr);

    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return fail("run", strf("pipe: %s", std::strerror(errno)));
    pid_t pid = fork();
    if (pid < 0) return fail("run", strf("fork: %s", std::strerror(errno)));
    if (pid == 0) exec_detached(log, args, p[1]);
    close(p[1]);
    int err = 0;
    ssize_t n = read(p[0], &err, sizeof err);
    close(p[0]);
    if (n == static_cast<ssize_t>(sizeof err)) {
        waitpid(pid, nullptr, 0);
        return fail("run", strf("%s: %s", command[0].c_str(), std::strerror(err)));
    }
    std::printf("%d\n", pid);
    return 0;
}

}  // namespace cr::cli
