/* wl_tree DIR [N] | --self-test [DIR] | --self-test-corrupt [DIR]
 *
 * A process tree of N tasks (default 210, live, stopped and zombie counted; at least the fixed
 * shape below, 174) with every kind of process identity a restore must bring back:
 *   root                      its own session when started by `cr run`
 *   chain-1 .. chain-50       a chain 50 deep; chain-20 calls setsid, chain-30 makes its own
 *                             group inside that session; the N - 174 filler leaves hang off the
 *                             chain nodes, round robin
 *   wide                      its own group, 100 children: every 10th from 0 calls setsid (the
 *                             first of them has two children, one of which leads a group in that
 *                             session), k%10==1 leads a group, 2 and 3 join that sibling's group,
 *                             4 joins the root's group, the rest stay in wide's group
 *   lgroup                    parent of a leaderless group: its child lgroup-leader made the
 *                             group and exited (reaped), lgroup-member-1..3 live on in it
 *   zparent                   11 zombies, not reaped until the check: exit statuses 0..9 (the one
 *                             with status 7 led its own group, 8 its own session) and one killed
 *                             by SIGTERM
 *   stopped                   its own group, stopped by SIGSTOP
 *   adopter                   calls setsid, forks adopted-1 (stays in its group), adopted-2
 *                             (own group) and adopted-3 (joins adopted-2's group), then exits
 *                             and is reaped: the three are re-parented to the root (a child
 *                             subreaper) and live on in a session and an orphaned group whose
 *                             leader is gone
 * Every task writes DIR/tasks/IDX ("pid ppid pgid sid idx kind role") once its identity is
 * final; the root writes DIR/ready when all are there and the stopped task is stopped. After
 * DIR/go every live task checks getpid/getppid/getpgrp/getsid against its record (the root's
 * ppid excepted: it changes with whoever waits for it), its set of children (zombies included)
 * and that it has nothing unexpected to reap, and writes DIR/check/IDX. zparent checks its
 * zombies in /proc, then reaps them and checks each status; lgroup checks that no task holds the
 * leader's pid while the group lives on; the root checks that the stopped task is still 'T'
 * before it sends SIGCONT. The root then collects every report, cross-checks each live task's
 * /proc/PID/stat, kills the tree, writes DIR/result and exits 0 (1 on any difference).
 * --self-test-corrupt skews one task's record after it is written: the check must fail. */
#include "wl_check.h"

#include <dirent.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define WL_TREE_MAX 4096
#define WL_CHAIN 50
#define WL_WIDE 100
#define WL_ZOMBIES 11
#define WL_FIXED_TASKS 174 /* every node below but the filler leaves and the two exited tasks */

enum kind { k_live, k_stopped, k_zombie, k_exited };
static const char* const k_kind_names[] = {"live", "stopped", "zombie", "exited"};
enum action { a_none, a_setsid, a_own_group, a_join };
enum special { s_none, s_lgroup, s_leader, s_zparent, s_zombie_exit, s_zombie_killed, s_adopter, s_adopted };

struct node {
    int parent;
    enum kind kind;
    enum action action;
    int join;     /* a_join: the node whose group to join (a sibling, or the root) */
    enum special special;
    int status;   /* s_zombie_exit: the exit status */
    char role[28];
};

struct record {
    pid_t pid, ppid, pgid, sid;
};

static struct node g_nodes[WL_TREE_MAX];
static int g_count;
static pid_t g_pids[WL_TREE_MAX]; /* filled in by each parent for its children, and by the root */
static const char* g_dir;
static int g_self;                /* this task's node */
static struct record g_rec;       /* this task's identity as recorded */
static int g_leader_release = -1; /* lgroup: write end of the pipe the leader waits on */
static int g_corrupt;

static int add(int parent, enum kind kind, enum action action, const char* fmt, int n) {
    if (g_count >= WL_TREE_MAX) {
        fprintf(stderr, "wl_tree: more than %d tasks\n", WL_TREE_MAX);
        exit(2);
    }
    struct node* nd = &g_nodes[g_count];
    nd->parent = parent;
    nd->kind = kind;
    nd->action = action;
    snprintf(nd->role, sizeof nd->role, fmt, n);
    return g_count++;
}

static void build_plan(int n_tasks) {
    int root = add(-1, k_live, a_none, "root", 0);
    int chain[WL_CHAIN + 1];
    chain[0] = root;
    for (int i = 1; i <= WL_CHAIN; ++i)
        chain[i] = add(chain[i - 1], k_live, i == 20 ? a_setsid : i == 30 ? a_own_group : a_none, "chain-%d", i);
    int wide = add(root, k_live, a_own_group, "wide", 0);
    for (int k = 0; k < WL_WIDE; ++k) {
        int m = k % 10;
        enum action a = m == 0 ? a_setsid : m == 1 ? a_own_group : m <= 4 ? a_join : a_none;
        int w = add(wide, k_live, a, "wide-%d", k);
        if (m == 2 || m == 3) g_nodes[w].join = w - (m - 1);
        if (m == 4) g_nodes[w].join = root;
        if (k == 0) {
            add(w, k_live, a_none, "wide-0-member", 0);
            add(w, k_live, a_own_group, "wide-0-group", 0);
        }
    }
    int lgroup = add(root, k_live, a_none, "lgroup", 0);
    g_nodes[lgroup].special = s_lgroup;
    int leader = add(lgroup, k_exited, a_own_group, "lgroup-leader", 0);
    g_nodes[leader].special = s_leader;
    for (int i = 1; i <= 3; ++i) g_nodes[add(lgroup, k_live, a_join, "lgroup-member-%d", i)].join = leader;
    int zparent = add(root, k_live, a_none, "zparent", 0);
    g_nodes[zparent].special = s_zparent;
    for (int s = 0; s < WL_ZOMBIES; ++s) {
        enum action a = s == 7 ? a_own_group : s == 8 ? a_setsid : a_none;
        int z = add(zparent, k_zombie, a, "zombie-%d", s);
        g_nodes[z].special = s < 10 ? s_zombie_exit : s_zombie_killed;
        g_nodes[z].status = s;
    }
    add(root, k_stopped, a_own_group, "stopped", 0);
    int adopter = add(root, k_exited, a_setsid, "adopter", 0);
    g_nodes[adopter].special = s_adopter;
    g_nodes[add(adopter, k_live, a_none, "adopted-1", 0)].special = s_adopted;
    int a2 = add(adopter, k_live, a_own_group, "adopted-2", 0);
    g_nodes[a2].special = s_adopted;
    int a3 = add(adopter, k_live, a_join, "adopted-3", 0);
    g_nodes[a3].special = s_adopted;
    g_nodes[a3].join = a2;
    for (int i = 0; i < n_tasks - WL_FIXED_TASKS; ++i) add(chain[1 + i % WL_CHAIN], k_live, a_none, "leaf-%d", i);
}

static int is_live(int i) { return g_nodes[i].kind == k_live || g_nodes[i].kind == k_stopped; }

/* The node whose task is i's parent once the tree is set up: the adopted belong to the root. */
static int parent_now(int i) { return g_nodes[i].special == s_adopted ? 0 : g_nodes[i].parent; }

static void dir_path(char* out, size_t size, const char* sub, int idx) {
    char name[64];
    snprintf(name, sizeof name, "%s/%d", sub, idx);
    wl_path(out, size, g_dir, name);
}

/* DIR/SUB/IDX, written through a rename like every control file. */
static int write_in(const char* sub, int idx, const char* text) {
    char subdir[PATH_MAX], name[32];
    wl_path(subdir, sizeof subdir, g_dir, sub);
    snprintf(name, sizeof name, "%d", idx);
    return wl_write_file(subdir, name, text);
}

static void die(const char* what) {
    fprintf(stderr, "wl_tree: %s (pid %d): setup: %s: %s\n", g_nodes[g_self].role, (int)getpid(), what,
            strerror(errno));
    _exit(2);
}

static void write_record(void) {
    g_rec = (struct record){getpid(), getppid(), getpgrp(), getsid(0)};
    char text[160];
    snprintf(text, sizeof text, "%d %d %d %d %d %s %s\n", (int)g_rec.pid, (int)g_rec.ppid, (int)g_rec.pgid,
             (int)g_rec.sid, g_self, k_kind_names[g_nodes[g_self].kind], g_nodes[g_self].role);
    if (write_in("tasks", g_self, text) != 0) die("write record");
    if (g_corrupt && strcmp(g_nodes[g_self].role, "wide-5") == 0) g_rec.pgid += 1;
}

static int read_record(int idx, struct record* r) {
    char path[PATH_MAX];
    dir_path(path, sizeof path, "tasks", idx);
    FILE* f = fopen(path, "re");
    if (!f) return -1;
    int pid, ppid, pgid, sid;
    int n = fscanf(f, "%d %d %d %d", &pid, &ppid, &pgid, &sid);
    fclose(f);
    if (n != 4) return -1;
    *r = (struct record){pid, ppid, pgid, sid};
    return 0;
}

static void task_main(void) __attribute__((noreturn));

static void spawn(int idx) {
    const struct node* nd = &g_nodes[idx];
    /* The group to join: a sibling's (its pid) or the root's (whatever group the root is in). */
    pid_t join_pgid = nd->action != a_join ? 0 : nd->join == 0 ? getpgid(g_pids[0]) : g_pids[nd->join];
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        if (g_leader_release >= 0) close(g_leader_release), g_leader_release = -1;
        g_self = idx;
        if (nd->action == a_setsid && setsid() < 0) die("setsid");
        if (nd->action == a_own_group && setpgid(0, 0) != 0) die("setpgid(0, 0)");
        if (nd->action == a_join && setpgid(0, join_pgid) != 0 && getpgrp() != join_pgid) die("setpgid (join)");
        task_main();
    }
    g_pids[idx] = pid;
    if (nd->action == a_own_group) setpgid(pid, pid);
    if (nd->action == a_join) setpgid(pid, join_pgid);
}

static void wait_file(const char* sub, int idx, int timeout_ms) {
    char path[PATH_MAX];
    dir_path(path, sizeof path, sub, idx);
    for (int waited = 0; !wl_exists(path); waited += 5) {
        if (waited >= timeout_ms) {
            errno = ETIMEDOUT;
            die(path);
        }
        wl_sleep_ms(5);
    }
}

/* The leader of lgroup's group: recorded, then it waits for its members and exits. */
static void leader_main(int release_fd) __attribute__((noreturn));
static void leader_main(int release_fd) {
    write_record();
    char c;
    while (read(release_fd, &c, 1) != 0) {
    }
    _exit(0);
}

static void zombie_main(void) __attribute__((noreturn));
static void zombie_main(void) {
    write_record();
    if (g_nodes[g_self].special == s_zombie_killed) {
        signal(SIGTERM, SIG_DFL);
        raise(SIGTERM);
    }
    _exit(g_nodes[g_self].status);
}

static void spawn_children(void) {
    int release[2] = {-1, -1};
    int leader = -1;
    for (int c = g_self + 1; c < g_count; ++c) {
        if (g_nodes[c].parent != g_self) continue;
        if (g_nodes[c].special == s_leader) {
            if (pipe(release) != 0) die("pipe");
            leader = c;
            fflush(NULL);
            pid_t pid = fork();
            if (pid < 0) die("fork");
            if (pid == 0) {
                close(release[1]);
                g_self = c;
                if (setpgid(0, 0) != 0) die("setpgid(0, 0)");
                leader_main(release[0]);
            }
            close(release[0]);
            g_pids[c] = pid;
            setpgid(pid, pid);
            g_leader_release = release[1];
            continue;
        }
        spawn(c);
    }
    for (int c = g_self + 1; c < g_count; ++c) {
        if (g_nodes[c].parent != g_self || g_nodes[c].special != s_adopter) continue;
        int st;
        if (waitpid(g_pids[c], &st, 0) != g_pids[c]) die("waitpid (adopter)");
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            errno = 0;
            die("adopter did not exit with status 0");
        }
    }
    if (leader >= 0) {
        /* Every member joined from this side already: the group outlives its leader. */
        wait_file("tasks", leader, 10000);
        close(g_leader_release);
        g_leader_release = -1;
        int st;
        if (waitpid(g_pids[leader], &st, 0) != g_pids[leader]) die("waitpid (group leader)");
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            errno = 0;
            die("group leader did not exit with status 0");
        }
    }
}

/* zparent: each zombie has exited with what it should, and none is reaped. */
static void confirm_zombies(void) {
    for (int c = g_self + 1; c < g_count; ++c) {
        if (g_nodes[c].parent != g_self || g_nodes[c].kind != k_zombie) continue;
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_PID, (id_t)g_pids[c], &si, WEXITED | WNOWAIT) != 0) die("waitid (zombie)");
        int killed = g_nodes[c].special == s_zombie_killed;
        if (si.si_code != (killed ? CLD_KILLED : CLD_EXITED) || si.si_status != (killed ? SIGTERM : g_nodes[c].status)) {
            errno = 0;
            die("zombie ended with an unexpected status");
        }
    }
}

/* ---- checks, after go ---- */

static void describe_pid(pid_t pid, char* out, size_t size) {
    struct wl_stat st;
    if (wl_read_stat(pid, 0, &st) != 0) snprintf(out, size, "gone");
    else snprintf(out, size, "state %c ppid %d pgrp %d sid %d", st.state, (int)st.ppid, (int)st.pgrp, (int)st.session);
}

/* The children the kernel lists (zombies included) are exactly the planned ones. */
static void check_children(struct wl_report* r) {
    char path[64], buf[16384];
    snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)getpid());
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0) close(fd);
    if (n < 0) {
        wl_report_add(r, "cannot read %s: %s", path, strerror(errno));
        return;
    }
    buf[n] = '\0';
    static pid_t seen[WL_TREE_MAX];
    int nseen = 0;
    for (char* p = buf; *p && nseen < WL_TREE_MAX;) {
        char* end;
        long v = strtol(p, &end, 10);
        if (end == p) break;
        seen[nseen++] = (pid_t)v;
        p = end;
    }
    for (int c = g_self + 1; c < g_count; ++c) {
        if (parent_now(c) != g_self || g_nodes[c].kind == k_exited) continue;
        int found = 0;
        for (int i = 0; i < nseen; ++i)
            if (seen[i] == g_pids[c]) found = 1, seen[i] = 0;
        if (!found) {
            char what[96];
            describe_pid(g_pids[c], what, sizeof what);
            wl_report_add(r, "child %s (pid %d) is not among its children (%s)", g_nodes[c].role, (int)g_pids[c], what);
        }
    }
    for (int i = 0; i < nseen; ++i) {
        if (seen[i] == 0) continue;
        char what[96];
        describe_pid(seen[i], what, sizeof what);
        wl_report_add(r, "unexpected child pid %d (%s)", (int)seen[i], what);
    }
}

static void check_zombies(struct wl_report* r) {
    for (int c = g_self + 1; c < g_count; ++c) {
        if (g_nodes[c].parent != g_self || g_nodes[c].kind != k_zombie) continue;
        const char* role = g_nodes[c].role;
        pid_t z = g_pids[c];
        struct record rec;
        struct wl_stat st;
        if (read_record(c, &rec) != 0) wl_report_add(r, "%s: record unreadable", role);
        else if (wl_read_stat(z, 0, &st) != 0) wl_report_add(r, "%s (pid %d): no /proc entry before it is reaped", role, (int)z);
        else if (st.state != 'Z' || st.ppid != getpid() || st.pgrp != rec.pgid || st.session != rec.sid)
            wl_report_add(r, "%s (pid %d) before reaping: expected state Z ppid %d pgrp %d sid %d, found state %c ppid %d pgrp %d sid %d",
                          role, (int)z, (int)getpid(), (int)rec.pgid, (int)rec.sid, st.state, (int)st.ppid, (int)st.pgrp,
                          (int)st.session);
        int status = 0;
        pid_t got = waitpid(z, &status, WNOHANG);
        if (got != z) {
            wl_report_add(r, "%s (pid %d): waitpid returned %d (%s), expected the zombie", role, (int)z, (int)got,
                          got < 0 ? strerror(errno) : got == 0 ? "still running" : "another pid");
            continue;
        }
        if (g_nodes[c].special == s_zombie_killed) {
            if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGTERM || WCOREDUMP(status))
                wl_report_add(r, "%s: expected death by SIGTERM without core, wait status %#x", role, status);
        } else if (!WIFEXITED(status) || WEXITSTATUS(status) != g_nodes[c].status) {
            wl_report_add(r, "%s: expected exit status %d, wait status %#x", role, g_nodes[c].status, status);
        }
    }
}

/* lgroup and the root: the pid of an exited leader names a group with members but no task. */
static void check_leaderless(struct wl_report* r) {
    for (int c = g_self + 1; c < g_count; ++c) {
        if (g_nodes[c].parent != g_self || (g_nodes[c].special != s_leader && g_nodes[c].special != s_adopter)) continue;
        pid_t l = g_pids[c];
        if (kill(l, 0) == 0 || errno != ESRCH) {
            char what[96];
            describe_pid(l, what, sizeof what);
            wl_report_add(r, "group leader pid %d exited before the dump but a task has its pid (%s)", (int)l, what);
        }
        if (kill(-l, 0) != 0) wl_report_add(r, "process group %d (leaderless) is gone: %s", (int)l, strerror(errno));
    }
}

/* Nothing to reap unless planned (zombies are reaped just before): a helper left by a restore
 * would show up here. */
static void check_nothing_to_reap(struct wl_report* r) {
    int status;
    pid_t got;
    while ((got = waitpid(-1, &status, WNOHANG | __WALL)) > 0)
        wl_report_add(r, "reaped an unexpected child pid %d (wait status %#x)", (int)got, status);
}

static void check_task(struct wl_report* r) {
    pid_t pid = getpid(), ppid = getppid(), pgid = getpgrp(), sid = getsid(0);
    if (pid != g_rec.pid) wl_report_add(r, "getpid: expected %d, found %d", (int)g_rec.pid, (int)pid);
    if (g_self != 0 && ppid != g_rec.ppid) wl_report_add(r, "getppid: expected %d, found %d", (int)g_rec.ppid, (int)ppid);
    if (pgid != g_rec.pgid) wl_report_add(r, "getpgrp: expected %d, found %d", (int)g_rec.pgid, (int)pgid);
    if (sid != g_rec.sid) wl_report_add(r, "getsid: expected %d, found %d", (int)g_rec.sid, (int)sid);
    check_children(r);
    if (g_nodes[g_self].special == s_zparent) check_zombies(r);
    if (g_nodes[g_self].special == s_lgroup || g_self == 0) check_leaderless(r);
    check_nothing_to_reap(r);
}

/* ---- the root ---- */

/* Every live task that recorded itself; after a failed setup, that is all there is to find. */
static void kill_tree(void) {
    for (int i = 1; i < g_count; ++i) {
        struct record rec;
        if (is_live(i) && read_record(i, &rec) == 0 && rec.pid > 0) kill(rec.pid, SIGKILL);
    }
}

/* Every task recorded (identities final, zombies dead), the stopped one stopped. */
static int wait_setup(void) {
    int64_t deadline = wl_mono_ns() + 30 * 1000000000ll;
    for (int i = 1; i < g_count; ++i) {
        struct record rec;
        while (read_record(i, &rec) != 0) {
            if (wl_mono_ns() > deadline) {
                fprintf(stderr, "wl_tree: setup: %s did not record itself within 30 s\n", g_nodes[i].role);
                return -1;
            }
            wl_sleep_ms(5);
        }
        g_pids[i] = rec.pid;
    }
    for (int i = 1; i < g_count; ++i) {
        if (g_nodes[i].kind != k_stopped) continue;
        struct wl_stat st;
        while (wl_read_stat(g_pids[i], 0, &st) != 0 || st.state != 'T') {
            if (wl_mono_ns() > deadline) {
                fprintf(stderr, "wl_tree: setup: %s (pid %d) did not stop\n", g_nodes[i].role, (int)g_pids[i]);
                return -1;
            }
            wl_sleep_ms(5);
        }
    }
    return 0;
}

static void check_stopped(struct wl_report* r) {
    for (int i = 1; i < g_count; ++i) {
        if (g_nodes[i].kind != k_stopped) continue;
        struct wl_stat st;
        if (wl_read_stat(g_pids[i], 0, &st) != 0) wl_report_add(r, "%s (pid %d): gone", g_nodes[i].role, (int)g_pids[i]);
        else if (st.state != 'T')
            wl_report_add(r, "%s (pid %d): expected state T (stopped) before SIGCONT, found %c", g_nodes[i].role,
                          (int)g_pids[i], st.state);
        kill(g_pids[i], SIGCONT);
    }
}

/* Prints a task's report; returns its number of differences. */
static unsigned collect(int i, int64_t deadline) {
    char path[PATH_MAX], text[4096], who[64];
    dir_path(path, sizeof path, "check", i);
    snprintf(who, sizeof who, "wl_tree: %s (pid %d)", g_nodes[i].role, (int)g_pids[i]);
    while (!wl_exists(path) && wl_mono_ns() < deadline) wl_sleep_ms(10);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        char what[96];
        describe_pid(g_pids[i], what, sizeof what);
        fprintf(stderr, "%s: did not report its check (%s)\n", who, what);
        return 1;
    }
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    text[n > 0 ? n : 0] = '\0';
    if (strcmp(text, "ok\n") == 0) return 0;
    struct wl_report r = {.len = 0};
    for (char* line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) wl_report_add(&r, "%s", line);
    wl_report_print(who, &r);
    return r.count ? r.count : 1;
}

/* Outside view of a live task: its /proc/PID/stat against its record. */
static unsigned cross_check(int i) {
    struct record rec;
    struct wl_stat st;
    if (read_record(i, &rec) != 0 || wl_read_stat(g_pids[i], 0, &st) != 0) return 0; /* reported by collect */
    if (st.ppid == rec.ppid && st.pgrp == rec.pgid && st.session == rec.sid && st.state != 'Z') return 0;
    fprintf(stderr, "wl_tree: %s (pid %d): /proc says state %c ppid %d pgrp %d sid %d, recorded ppid %d pgid %d sid %d\n",
            g_nodes[i].role, (int)g_pids[i], st.state, (int)st.ppid, (int)st.pgrp, (int)st.session, (int)rec.ppid,
            (int)rec.pgid, (int)rec.sid);
    return 1;
}

static int root_run(int self_test) {
    if (wait_setup() != 0) {
        kill_tree();
        return 2;
    }
    char text[64];
    snprintf(text, sizeof text, "%d\n", (int)getpid());
    if (wl_write_file(g_dir, "ready", text) != 0) wl_die("wl_tree", "write ready");
    int tasks = 0;
    for (int i = 0; i < g_count; ++i) tasks += g_nodes[i].kind != k_exited;
    printf("wl_tree: ready, pid %d, %d tasks\n", (int)getpid(), tasks);
    fflush(stdout);
    if (self_test && wl_write_file(g_dir, "go", "") != 0) wl_die("wl_tree", "write go");
    wl_wait_go(g_dir, "wl_tree", 20);

    struct wl_report r = {.len = 0};
    check_stopped(&r);
    check_task(&r);
    char who[64];
    snprintf(who, sizeof who, "wl_tree: root (pid %d)", (int)getpid());
    wl_report_print(who, &r);
    unsigned differences = r.count;
    int64_t deadline = wl_mono_ns() + 30 * 1000000000ll;
    for (int i = 1; i < g_count; ++i)
        if (is_live(i)) differences += collect(i, deadline);
    for (int i = 1; i < g_count; ++i)
        if (is_live(i)) differences += cross_check(i);
    kill_tree();
    return wl_verdict(g_dir, "wl_tree", differences);
}

static void task_main(void) {
    g_rec = (struct record){0, 0, 0, 0};
    if (g_nodes[g_self].special == s_zombie_exit || g_nodes[g_self].special == s_zombie_killed) zombie_main();
    spawn_children();
    if (g_nodes[g_self].special == s_zparent) confirm_zombies();
    if (g_nodes[g_self].special == s_adopter) {
        write_record();
        _exit(0);
    }
    if (g_nodes[g_self].special == s_adopted) {
        /* Recorded once re-parented: the adopter exits right after forking its children. */
        int64_t deadline = wl_mono_ns() + 10 * 1000000000ll;
        while (getppid() != g_pids[0]) {
            if (wl_mono_ns() > deadline) {
                errno = ETIMEDOUT;
                die("not re-parented to the root");
            }
            wl_sleep_ms(2);
        }
    }
    write_record();
    if (g_nodes[g_self].kind == k_stopped) raise(SIGSTOP);
    wl_wait_go(g_dir, "wl_tree", 100);
    struct wl_report r = {.len = 0};
    check_task(&r);
    if (write_in("check", g_self, r.count == 0 ? "ok\n" : r.text) != 0) die("write check");
    for (;;) { /* the root ends the tree */
        if (!wl_exists(g_dir)) _exit(3);
        wl_sleep_ms(500);
    }
}

static void make_dirs(void) {
    char path[PATH_MAX];
    wl_path(path, sizeof path, g_dir, "tasks");
    if (mkdir(path, 0700) != 0 && errno != EEXIST) wl_die("wl_tree", path);
    wl_path(path, sizeof path, g_dir, "check");
    if (mkdir(path, 0700) != 0 && errno != EEXIST) wl_die("wl_tree", path);
}

static void remove_dir(void) {
    static const char* const subs[] = {"tasks", "check"};
    char path[PATH_MAX];
    for (int s = 0; s < 2; ++s) {
        for (int i = 0; i < g_count; ++i) {
            dir_path(path, sizeof path, subs[s], i);
            unlink(path);
        }
        wl_path(path, sizeof path, g_dir, subs[s]);
        rmdir(path);
    }
    static const char* const names[] = {"ready", "go", "result"};
    for (int i = 0; i < 3; ++i) {
        wl_path(path, sizeof path, g_dir, names[i]);
        unlink(path);
    }
    rmdir(g_dir);
}

int main(int argc, char** argv) {
    int self_test = 0, argi = 1;
    if (argi < argc && strcmp(argv[argi], "--self-test") == 0) self_test = 1, argi++;
    else if (argi < argc && strcmp(argv[argi], "--self-test-corrupt") == 0) self_test = g_corrupt = 1, argi++;
    static char tmpdir[] = "/tmp/wl_tree.XXXXXX";
    int own_dir = 0, n_tasks = 210;
    if (argi < argc) {
        g_dir = argv[argi++];
    } else if (self_test) {
        if (!mkdtemp(tmpdir)) wl_die("wl_tree", "mkdtemp");
        g_dir = tmpdir;
        own_dir = 1;
    } else {
        fprintf(stderr, "usage: wl_tree DIR [N] | --self-test [DIR] | --self-test-corrupt [DIR]\n");
        return 2;
    }
    if (argi < argc) n_tasks = atoi(argv[argi]);
    if (n_tasks < WL_FIXED_TASKS || n_tasks > WL_TREE_MAX - 1) {
        fprintf(stderr, "wl_tree: N must be between %d and %d\n", WL_FIXED_TASKS, WL_TREE_MAX - 1);
        return 2;
    }
    build_plan(n_tasks);
    make_dirs();
    g_self = 0;
    g_pids[0] = getpid();
    /* Orphans of the tree come back to the root, as under a service manager or a container's init. */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) wl_die("wl_tree", "PR_SET_CHILD_SUBREAPER");
    spawn_children();
    write_record();
    int status = root_run(self_test);
    if (own_dir) remove_dir();
    return status;
}
