/*
 * Wharf's pause program: PID 1 of an awsvpc task's pause container, which holds the task's
 * network namespace while the task's containers come and go. It does nothing but wait:
 * children it inherits (none, normally) are reaped so they never linger as zombies, and
 * SIGTERM or SIGINT end it at once with status 0, so stopping the task is never delayed by
 * a stop timeout. Built statically by build.rs and imported into Docker as wharf/pause.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void leave(int signal_number) {
    (void)signal_number;
    _exit(0);
}

static void reap(int signal_number) {
    (void)signal_number;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction action = {0};
    action.sa_handler = leave;
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    action.sa_handler = reap;
    action.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    sigaction(SIGCHLD, &action, NULL);
    for (;;) {
        pause();
    }
    return 0;
}
