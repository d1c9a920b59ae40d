/* statefile_app DIR
 *
 * An application that publishes its state in a file named by EXAMPLE_STATE_FILE: a token made
 * at start, kept in memory, that clients read from the file. Writes DIR/ready, waits for DIR/go,
 * then checks that the published file still says what it published and writes DIR/result
 * ("ok" or "fail: ..."); exits 0 on ok, 1 otherwise. After a restore on a machine where the file
 * is gone, only the example.statefile handler can make the check pass. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void put(const char* path, const char* text) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE* f = fopen(tmp, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "statefile_app: write %s: %s\n", path, strerror(errno));
        exit(2);
    }
}

static int exists(const char* dir, const char* name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

int main(int argc, char** argv) {
    const char* state = getenv("EXAMPLE_STATE_FILE");
    if (argc != 2 || !state) {
        fprintf(stderr, "usage: EXAMPLE_STATE_FILE=PATH statefile_app DIR\n");
        return 2;
    }
    const char* dir = argv[1];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char token[128];
    snprintf(token, sizeof token, "token=%d-%ld-%ld\n", getpid(), (long)now.tv_sec, now.tv_nsec);
    put(state, token);
    chmod(state, 0640);

    char path[4096];
    snprintf(path, sizeof path, "%s/ready", dir);
    put(path, "ready\n");
    while (!exists(dir, "go")) usleep(20000);

    char seen[256] = "";
    FILE* f = fopen(state, "r");
    size_t n = f ? fread(seen, 1, sizeof seen - 1, f) : 0;
    if (f) fclose(f);
    seen[n] = '\0';
    struct stat st;
    int mode_ok = stat(state, &st) == 0 && (st.st_mode & 07777) == 0640;
    char result[512];
    if (!f)
        snprintf(result, sizeof result, "fail: %s is gone\n", state);
    else if (strcmp(seen, token) != 0)
        snprintf(result, sizeof result, "fail: %s says '%s', published '%s'\n", state, seen, token);
    else if (!mode_ok)
        snprintf(result, sizeof result, "fail: %s has mode %o, published 0640\n", state, st.st_mode & 07777);
    else
        snprintf(result, sizeof result, "ok\n");
    snprintf(path, sizeof path, "%s/result", dir);
    put(path, result);
    printf("statefile_app: %s", result);
    return strcmp(result, "ok\n") == 0 ? 0 : 1;
}
